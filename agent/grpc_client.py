"""Client side of our own API: channels that send `authorization: Bearer <key>` on every call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


class _Bearer:
    def __init__(self, secret: str) -> None:
        self._header = ("authorization", f"Bearer {secret}")

    def _with_key(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = [*(details.metadata or []), self._header]
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


# One class per call type: grpc.aio files an interceptor under the first interceptor type it is an instance of, so
# one class implementing several would only ever see unary calls.
class _BearerUnary(_Bearer, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _BearerServerStream(_Bearer, grpc.aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_stream(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return await continuation(self._with_key(details), request)


class _BearerStream(_Bearer, grpc.aio.StreamStreamClientInterceptor):  # type: ignore[misc]
    async def intercept_stream_stream(self, continuation: Callable[..., Any], details: Any, requests: Any) -> Any:
        return await continuation(self._with_key(details), requests)


def authorized_channel(
    target: str, secret: str | None, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """A channel to `target` (TLS when `credentials` are given) that authenticates with `secret`."""
    interceptors = [_BearerUnary(secret), _BearerServerStream(secret), _BearerStream(secret)] if secret else None
    if credentials is not None:
        return grpc.aio.secure_channel(target, credentials, interceptors=interceptors)
    return grpc.aio.insecure_channel(target, interceptors=interceptors)
