"""Server interceptors: errors mapped to rich gRPC status in one place, and one structured log line per RPC."""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc_status import rpc_status

from server.api.errors import grpc_code, to_status
from server.domain.errors import InvalidArgument, SmoothError

log = structlog.get_logger("smooth_edge.rpc")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class ErrorsAndLogsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Maps domain errors to status + details; anything unexpected becomes INTERNAL with an error id."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        return grpc.unary_unary_rpc_method_handler(
            _wrap(method, handler.unary_unary),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )


class _Undecodable:
    """Stands in for a request whose bytes are not a valid message, so the caller gets INVALID_ARGUMENT."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _tolerant(deserialize: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserialize is None:
        return None

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # DecodeError, invalid UTF-8 in a string field, ...
            return _Undecodable(exc)

    return parse


def _wrap(method: str, inner: Behavior) -> Behavior:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            if isinstance(request, _Undecodable):
                raise InvalidArgument(
                    f"the request is not a valid protobuf message for {method}: {request.error}",
                    reason="MALFORMED_REQUEST",
                )
            return await inner(request, context)
        except SmoothError as err:
            code = grpc_code(err)
            await context.abort_with_status(rpc_status.to_status(to_status(err)))
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            error_id = uuid.uuid4().hex[:12]
            log.exception("rpc.internal_error", method=method, error_id=error_id)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error {error_id}; the server log has the details")
        finally:
            log.info(
                "rpc",
                method=method,
                code=code.name,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                peer=context.peer(),
            )

    return behavior
