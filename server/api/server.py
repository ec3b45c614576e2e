"""The gRPC server: entity services, health (grpc.health.v1) and reflection, as an async context manager."""

from __future__ import annotations

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.api.interceptors import ErrorsAndLogsInterceptor
from server.api.services import entity_servicers
from server.usecases.entities import EntityService

log = structlog.get_logger("smooth_edge.server")


class GrpcServer:
    """`async with GrpcServer(services, "127.0.0.1:0") as srv:` serves on `srv.port` until the block ends."""

    def __init__(
        self,
        services: dict[str, EntityService],
        listen: str,
        *,
        reflection_enabled: bool = True,
        shutdown_grace_s: float = 10.0,
    ) -> None:
        self._services = services
        self._listen = listen
        self._reflection = reflection_enabled
        self._grace = shutdown_grace_s
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer() if hasattr(health, "aio") else health.HealthServicer()
        self.port = 0

    async def __aenter__(self) -> GrpcServer:
        server = grpc.aio.server(
            interceptors=[ErrorsAndLogsInterceptor()],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        servicers = entity_servicers(self._services)
        server.add_generic_rpc_handlers([s.handlers() for s in servicers])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        names = [s.descriptor.full_name for s in servicers]
        if self._reflection:
            reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        self.port = server.add_insecure_port(self._listen)
        if self.port == 0:
            raise OSError(f"cannot listen on {self._listen}: is the address valid and the port free?")
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self._set_health(name, serving=True)
        log.info("server.started", listen=self._listen, port=self.port, services=names)
        return self

    async def _set_health(self, name: str, *, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        result = self.health.set(name, status)
        if result is not None:
            await result

    async def wait(self) -> None:
        if self._server is not None:
            await self._server.wait_for_termination()

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is None:
            return
        await self._set_health("", serving=False)
        log.info("server.stopping", grace_s=self._grace)
        await self._server.stop(self._grace)
        self._server = None
        log.info("server.stopped")
