"""The one server interceptor: authentication and scope checks on every RPC (default deny), domain errors
mapped to rich gRPC status in one place, refused calls audited, and one structured log line per RPC (which also
tells the metrics, through `RpcObserver`)."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

import grpc
import structlog
from grpc_status import rpc_status

from server.api.auth import OPEN_PREFIXES, REFLECTION_PREFIXES, authorize
from server.api.errors import grpc_code, to_status
from server.domain.errors import InvalidArgument, PermissionDenied, SmoothError, Unauthenticated
from server.domain.identity import Principal
from server.usecases.audit import AuditService
from server.usecases.identity import Authenticator

log = structlog.get_logger("smooth_edge.rpc")

Behavior = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]
RpcObserver = Callable[[str, str, float], None]  # (full method name, status code name, seconds) of each finished call
ReflectionMode = Literal["open", "authenticated", "off"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """What the servicers need to know about the call in progress."""

    principal: Principal | None
    peer: str


CURRENT_CALL: contextvars.ContextVar[CallContext] = contextvars.ContextVar(
    "smooth_current_call",
    default=CallContext(None, ""),  # noqa: B039 (a frozen dataclass: immutable)
)


class Security:
    """Authentication settings of a server. `authenticator=None` disables auth (benchmarks only)."""

    def __init__(
        self,
        authenticator: Authenticator | None,
        audit: AuditService | None,
        reflection: ReflectionMode = "open",
    ) -> None:
        self.authenticator = authenticator
        self.audit = audit
        self.reflection = reflection

    def needs_key(self, method: str) -> bool:
        if self.authenticator is None or method.startswith(OPEN_PREFIXES):
            return False
        return not (method.startswith(REFLECTION_PREFIXES) and self.reflection == "open")

    async def authenticate(self, method: str, context: grpc.aio.ServicerContext) -> Principal | None:
        if not self.needs_key(method):
            return None
        assert self.authenticator is not None
        return await self.authenticator.authenticate(_bearer(context))

    def authorize(self, method: str, principal: Principal | None) -> None:
        # Reflection (when it needs a key) accepts any valid key: it only describes the public contract.
        if principal is not None and not method.startswith(REFLECTION_PREFIXES):
            authorize(method, principal)


def _bearer(context: grpc.aio.ServicerContext) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key.lower() == "authorization":
            text = value.decode() if isinstance(value, bytes) else str(value)
            scheme, _, token = text.strip().partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


class ServerInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, security: Security, observe: RpcObserver | None = None) -> None:
        self._security = security
        self._observe = observe
        # The wrapped handler of each method, built on its first call: the servicers' handlers never change, and
        # building a handler and its closures for every call showed in a Get's profile (issue 11).
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # an unknown method: not kept (any name can be asked for)
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                _wrap_unary(method, handler.unary_unary, self._security, self._observe),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream is not None:
            # Server streaming (WatchChanges): like a unary call, errors raised mid-stream included.
            return grpc.unary_stream_rpc_method_handler(
                _wrap_server_stream(method, handler.unary_stream, self._security, self._observe),
                request_deserializer=_tolerant(handler.request_deserializer),
                response_serializer=handler.response_serializer,
            )
        if not self._security.needs_key(method):
            return handler
        # Bidirectional streaming (reflection when not open): authenticate, then stream as usual.
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                _wrap_stream(method, handler.stream_stream, self._security),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        raise RuntimeError(f"{method}: client-streaming methods are not served")


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


async def _internal_error(method: str, context: grpc.aio.ServicerContext) -> None:
    """An unexpected error: logged loudly with its traceback and an id, the caller told INTERNAL with that id."""
    error_id = uuid.uuid4().hex[:12]
    log.exception("rpc.internal_error", method=method, error_id=error_id)
    await context.abort(grpc.StatusCode.INTERNAL, f"internal error {error_id}; the server log has the details")


def _rpc_line(
    method: str, code: grpc.StatusCode, started: float, context: grpc.aio.ServicerContext, observe: RpcObserver | None
) -> None:
    """The one log line every call ends with, and the metrics' count and duration."""
    seconds = time.perf_counter() - started
    if log.is_enabled_for(logging.INFO):  # the fields are not gathered for a line that is dropped (issue 11)
        log.info("rpc", method=method, code=code.name, duration_ms=round(seconds * 1000, 3), peer=context.peer())
    if observe is not None:
        observe(method, code.name, seconds)


async def _refused(
    security: Security, err: SmoothError, method: str, context: grpc.aio.ServicerContext, request: Any
) -> None:
    if security.audit is None or not isinstance(err, Unauthenticated | PermissionDenied):
        return
    await security.audit.record_refusal(
        outcome="UNAUTHENTICATED" if isinstance(err, Unauthenticated) else "PERMISSION_DENIED",
        method=method,
        detail=f"{err.reason}: {err.message}",
        peer=context.peer() or "",
        principal=CURRENT_CALL.get().principal,
        request_id=str(getattr(request, "request_id", "") or ""),
    )


def _wrap_unary(method: str, inner: Behavior, security: Security, observe: RpcObserver | None) -> Behavior:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        token = None
        try:
            # Who calls is settled before the request is looked at: strangers learn nothing from parse errors.
            principal = await security.authenticate(method, context)
            token = CURRENT_CALL.set(CallContext(principal, context.peer() or ""))
            security.authorize(method, principal)
            if isinstance(request, _Undecodable):
                raise InvalidArgument(
                    f"the request is not a valid protobuf message for {method}", reason="MALFORMED_REQUEST"
                )
            return await inner(request, context)
        except SmoothError as err:
            code = grpc_code(err)
            await _refused(security, err, method, context, request)
            await context.abort_with_status(rpc_status.to_status(to_status(err)))
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away (or its deadline passed) mid-call
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            await _internal_error(method, context)
        finally:
            if token is not None:
                CURRENT_CALL.reset(token)
            _rpc_line(method, code, started, context, observe)

    return behavior


def _wrap_stream(
    method: str, inner: Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]], security: Security
) -> Callable[[Any, grpc.aio.ServicerContext], AsyncIterator[Any]]:
    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        try:
            security.authorize(method, await security.authenticate(method, context))
        except SmoothError as err:
            log.info("rpc", method=method, code=grpc_code(err).name, peer=context.peer())
            await _refused(security, err, method, context, request)
            await context.abort_with_status(rpc_status.to_status(to_status(err)))
        async for response in inner(request, context):
            yield response

    return behavior


def _wrap_server_stream(
    method: str,
    inner: Callable[[Any, grpc.aio.ServicerContext], Any],
    security: Security,
    observe: RpcObserver | None,
) -> Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]:
    """A server-streaming method with what `_wrap_unary` gives a unary one: authentication and scopes, the caller
    in CURRENT_CALL (left set: each call runs in its own task), domain errors as rich status, one log line. The
    method writes with `context.write` (a coroutine) or yields its messages (an async generator)."""

    async def behavior(request: Any, context: grpc.aio.ServicerContext) -> None:
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        try:
            principal = await security.authenticate(method, context)
            CURRENT_CALL.set(CallContext(principal, context.peer() or ""))
            security.authorize(method, principal)
            if isinstance(request, _Undecodable):
                raise InvalidArgument(
                    f"the request is not a valid protobuf message for {method}", reason="MALFORMED_REQUEST"
                )
            result = inner(request, context)
            if hasattr(result, "__aiter__"):
                async for response in result:
                    await context.write(response)
            else:
                await result
        except SmoothError as err:
            code = grpc_code(err)
            await _refused(security, err, method, context, request)
            await context.abort_with_status(rpc_status.to_status(to_status(err)))
        except grpc.aio.AbortError:
            code = context.code() or grpc.StatusCode.UNKNOWN
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception:
            code = grpc.StatusCode.INTERNAL
            await _internal_error(method, context)
        finally:
            _rpc_line(method, code, started, context, observe)

    return behavior
