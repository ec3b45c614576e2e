"""The gRPC server: entity, identity and audit services, health (grpc.health.v1: every API service, and the
agent's components through `set_serving`) and reflection, with authentication on every RPC and optional TLS /
mutual TLS, as an async context manager."""

from __future__ import annotations

import asyncio
import errno
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import structlog
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from smooth.core.v1 import sync_pb2

from server.api.collector_service import StatusSource, add_collector_servicer
from server.api.identity_services import add_identity_servicers
from server.api.interceptors import ReflectionMode, RpcObserver, Security, ServerInterceptor
from server.api.mes_service import add_mes_servicers
from server.api.services import entity_servicers
from server.api.sync_services import add_replication_servicer, add_sync_servicer
from server.usecases.app import UseCases

log = structlog.get_logger("smooth_edge.server")


async def _no_replication() -> sync_pb2.ReplicationStatus:
    return sync_pb2.ReplicationStatus()


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """PEM material. With `client_ca`, clients must present a certificate signed by it (mutual TLS)."""

    cert_chain: bytes
    private_key: bytes
    client_ca: bytes | None = None

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path | None = None) -> TlsConfig:
        try:
            return cls(cert.read_bytes(), key.read_bytes(), client_ca.read_bytes() if client_ca else None)
        except OSError as exc:
            raise OSError(f"cannot read TLS material: {exc}; check --tls-cert, --tls-key and --tls-client-ca") from exc

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.private_key, self.cert_chain)],
            root_certificates=self.client_ca,
            require_client_auth=self.client_ca is not None,
        )


class ListenError(OSError):
    """The server could not bind its address; the message says why, as far as the operating system tells."""

    def __init__(self, listen: str, reason: str) -> None:
        super().__init__(f"cannot listen on {listen}: {reason}")
        self.listen = listen


def _why_not_bound(listen: str) -> str | None:
    """Bind the address ourselves to learn why gRPC could not (it says only that it failed, and its core logs a
    line of its own), or None if it can be bound."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        return "not HOST:PORT"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host.strip("[]") or None, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except (OSError, OverflowError) as exc:
        return f"the host does not resolve ({exc})"
    try:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            probe.bind(address)
    except OSError as exc:
        reasons = {
            errno.EADDRINUSE: "the address is in use (another smooth-edge?)",
            errno.EADDRNOTAVAIL: "this machine has no such address",
            errno.EACCES: "permission denied (ports below 1024 need privileges)",
        }
        return reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return None


class GrpcServer:
    """`async with GrpcServer(use_cases, "127.0.0.1:0") as srv:` serves on `srv.port` until the block ends."""

    def __init__(
        self,
        use_cases: UseCases,
        listen: str,
        *,
        auth: bool = True,
        reflection_mode: ReflectionMode = "open",
        tls: TlsConfig | None = None,
        shutdown_grace_s: float = 10.0,
        machine_statuses: StatusSource | None = None,
        replication_status: Callable[[], Awaitable[sync_pb2.ReplicationStatus]] | None = None,
        stream_stall_s: float = 30.0,
        observe_rpc: RpcObserver | None = None,
    ) -> None:
        self._use_cases = use_cases
        self._machine_statuses = machine_statuses or (lambda: use_cases.recorder.statuses({}))
        self._replication_status = replication_status or _no_replication
        self._listen = listen
        self._security = Security(
            use_cases.authenticator if auth else None, use_cases.audit if auth else None, reflection_mode
        )
        self._reflection = reflection_mode
        self._tls = tls
        self._grace = shutdown_grace_s
        self._stream_stall_s = stream_stall_s  # a change stream whose client reads nothing this long is ended
        self._observe_rpc = observe_rpc  # told every finished call (metrics)
        self._server: grpc.aio.Server | None = None
        self.health = health.aio.HealthServicer()
        self.port = 0

    async def __aenter__(self) -> GrpcServer:
        server = grpc.aio.server(
            interceptors=[ServerInterceptor(self._security, self._observe_rpc)],
            options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", 16 * 1024 * 1024)],
        )
        servicers = entity_servicers(self._use_cases.entities, self._use_cases.measurements)
        server.add_generic_rpc_handlers([s.handlers() for s in servicers])
        names = [s.descriptor.full_name for s in servicers] + add_identity_servicers(server, self._use_cases)
        names.append(add_collector_servicer(server, self._machine_statuses))
        names.append(add_sync_servicer(server, self._use_cases.sync))
        names.append(add_replication_servicer(server, self._replication_status))
        names += add_mes_servicers(server, self._use_cases.mes, self._use_cases.changes, self._stream_stall_s)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        if self._reflection != "off":
            reflection.enable_server_reflection([*names, health.SERVICE_NAME, reflection.SERVICE_NAME], server)
        if not self._listen.startswith("unix:") and (reason := _why_not_bound(self._listen)) is not None:
            raise ListenError(self._listen, reason)
        try:
            if self._tls is not None:
                self.port = server.add_secure_port(self._listen, self._tls.credentials())
            else:
                self.port = server.add_insecure_port(self._listen)
        except RuntimeError as exc:  # grpc says only "Failed to bind to address"
            raise ListenError(self._listen, _why_not_bound(self._listen) or "gRPC could not bind it") from exc
        if self.port == 0:
            raise ListenError(self._listen, "gRPC could not bind it")
        await server.start()
        self._server = server
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info(
            "server.started",
            listen=self._listen,
            port=self.port,
            tls="mutual" if self._tls and self._tls.client_ca else ("server" if self._tls else "off"),
            auth=self._security.authenticator is not None,
            reflection=self._reflection,
            services=names,
        )
        if self._security.authenticator is None:
            log.warning("server.auth_disabled", note="every caller is trusted: use only for benchmarks")
        return self

    async def set_serving(self, service: str, serving: bool) -> None:
        """A component's health, under its service name (ignored once the server is shutting down)."""
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        await self.health.set(service, status)

    async def wait(self) -> None:
        """Until the server has stopped. Cancelling this wait leaves the server alone: grpc awaits its own
        "shutdown completed" future here, which a cancellation would cancel, breaking the server's later stop."""
        if self._server is not None:
            await asyncio.shield(self._server.wait_for_termination())

    async def __aexit__(self, *exc_info: object) -> None:
        if self._server is None:
            return
        await self.health.enter_graceful_shutdown()
        self._use_cases.changes.stop_watchers()  # change streams end now, not at the end of the grace period
        log.info("server.stopping", grace_s=self._grace)
        await self._server.stop(self._grace)
        self._server = None
        log.info("server.stopped")
