"""The `CentralClient` over gRPC: central's SyncService, with the wire codec, and the one place on the edge that
maps a gRPC status back to our error tree (errors.py).

`async with GrpcCentralClient(target, key) as central:` opens the channel (constructing does no I/O); leaving
closes it, after the replicator has flushed.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from smooth.core.v1 import sync_pb2, sync_pb2_grpc

from agent.grpc_client import authorized_channel
from agent.replicator.central_client import PullPage, PushResult, RejectedChange, SnapshotPage
from agent.replicator.errors import CentralFailed, refined
from server.domain.entities import Revision
from server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    SmoothError,
    Unauthenticated,
    Unavailable,
)
from server.wire import change_from_proto, change_to_proto

R = TypeVar("R")

# gRPC status -> our error. Codes that say "not now" are Unavailable (transient); a code with no meaning of ours
# (INTERNAL, UNKNOWN, UNIMPLEMENTED, DATA_LOSS, ...) is CentralFailed.
_ERRORS: dict[grpc.StatusCode, type[SmoothError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.ABORTED: Aborted,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.RESOURCE_EXHAUSTED: Unavailable,
    grpc.StatusCode.CANCELLED: Unavailable,  # central cancels calls in flight when it shuts down
}


class GrpcCentralClient:
    def __init__(
        self,
        target: str,
        key: str,
        credentials: grpc.ChannelCredentials | None = None,
        *,
        timeout_s: float = 60.0,
        watermark_timeout_s: float = 10.0,
    ) -> None:
        self.target = target
        self._key = key
        self._credentials = credentials
        self._timeout_s = timeout_s
        self._watermark_timeout_s = watermark_timeout_s
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None

    async def __aenter__(self) -> GrpcCentralClient:
        if self._channel is not None:
            raise RuntimeError("a central client opens once (and is not reopened after close)")
        self._channel = authorized_channel(self.target, self._key, self._credentials)
        self._stub = sync_pb2_grpc.SyncServiceStub(self._channel)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._channel is not None:
            await self._channel.close()
        self._stub = None  # no reopening after close

    async def watermark(self, origin_id: uuid.UUID) -> int:
        request = sync_pb2.GetWatermarkRequest(origin_id=str(origin_id))
        answer = await self._call(self._rpc().GetWatermark, request, self._watermark_timeout_s)
        return int(answer.last_seq)

    async def push(
        self, origin_id: uuid.UUID, after_seq: int, changes: Sequence[Revision], schema_version: str
    ) -> PushResult:
        request = sync_pb2.PushChangesRequest(
            origin_id=str(origin_id),
            after_seq=after_seq,
            changes=[change_to_proto(c) for c in changes],
            schema_version=schema_version,
        )
        answer = await self._call(self._rpc().PushChanges, request, self._timeout_s)
        return PushResult(
            acked_seq=answer.acked_seq,
            rejected=[
                RejectedChange(r.seq, r.entity_type, _uuid(r.entity_id, "rejected.entity_id"), r.reason)
                for r in answer.rejected
            ],
        )

    async def pull(self, origin_id: uuid.UUID, after_seq: int, limit: int) -> PullPage:
        request = sync_pb2.PullChangesRequest(origin_id=str(origin_id), after_seq=after_seq, limit=limit)
        page = await self._call(self._rpc().PullChanges, request, self._timeout_s)
        return PullPage(
            changes=[change_from_proto(c) for c in page.changes],
            next_cursor=page.next_cursor,
            more=page.more,
            central_id=_uuid(page.central_id, "central_id"),
            resync_required=page.resync_required,
        )

    async def snapshot(
        self, origin_id: uuid.UUID, entity_type: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> SnapshotPage:
        request = sync_pb2.GetSnapshotRequest(
            origin_id=str(origin_id), entity_type=entity_type, page_size=page_size, page_token=page_token
        )
        page = await self._call(self._rpc().GetSnapshot, request, self._timeout_s)
        return SnapshotPage(
            as_of_seq=page.as_of_seq,
            rows=[_json_object(text, f"entities_json.{i}") for i, text in enumerate(page.entities_json)],
            next_page_token=page.next_page_token,
        )

    def _rpc(self) -> Any:
        if self._stub is None:
            raise RuntimeError("the central client is not open; use `async with GrpcCentralClient(...)`")
        return self._stub

    async def _call(self, rpc: Callable[..., Awaitable[R]], request: Any, deadline_s: float) -> R:
        try:
            return await rpc(request, timeout=deadline_s)
        except grpc.aio.AioRpcError as err:
            raise error_from_status(err) from err


def error_from_status(err: grpc.aio.AioRpcError) -> SmoothError:
    """A failed call as our error: the class from the code, reason, metadata and field violations from the
    google.rpc details central attached (server/api/errors.py writes them)."""
    code = err.code()
    reason, metadata, violations = "", {}, []
    try:
        status = rpc_status.from_call(err)
    except ValueError:  # details that contradict the call's own code or message: ignore them
        status = None
    for detail in status.details if status is not None else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
    cls = _ERRORS.get(code, CentralFailed)
    message = f"central answered {code.name}" + (f": {err.details()}" if err.details() else "")
    return refined(cls(message, reason=reason or code.name, violations=violations, metadata=metadata))


def _uuid(text: str, field: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise InvalidArgument.of([FieldViolation(field, f"central sent {text!r}, not a UUID")]) from None


def _json_object(text: str, field: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidArgument.of([FieldViolation(field, f"central sent malformed JSON: {exc!r}")]) from None
    if not isinstance(value, dict):
        raise InvalidArgument.of([FieldViolation(field, "central sent JSON that is not an object")])
    return value
