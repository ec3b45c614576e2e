"""Thin servicers for SyncService (central) and ReplicationService (edge status), and the wire form of a
change record, shared with the replicator's client."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import grpc
from smooth.core.v1 import common_pb2, sync_pb2, sync_pb2_grpc

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.domain.entities import ChangeOperation, Revision
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.schema import compact_json
from server.usecases.replication.central import SyncApplier

_OPERATIONS = {
    ChangeOperation.CREATE: common_pb2.CHANGE_OPERATION_CREATE,
    ChangeOperation.UPDATE: common_pb2.CHANGE_OPERATION_UPDATE,
    ChangeOperation.DELETE: common_pb2.CHANGE_OPERATION_DELETE,
}
_FROM_WIRE = {v: k for k, v in _OPERATIONS.items()}
_NIL = uuid.UUID(int=0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def change_to_proto(change: Revision) -> sync_pb2.Change:
    msg = sync_pb2.Change(
        seq=change.sequence,
        tx_id=str(change.tx_id or ""),
        entity_type=change.entity_type,
        entity_id=str(change.entity_id),
        version=change.version,
        operation=_OPERATIONS[ChangeOperation(change.operation)],
        data_json=change.snapshot_json or compact_json(change.snapshot),
        actor_id=str(change.actor_id or ""),
        request_id=change.request_id,
    )
    msg.change_time.FromDatetime(change.change_time)
    return msg


def change_from_proto(msg: sync_pb2.Change) -> Revision:
    """A pushed change. What is malformed about it (ids, operation, time, JSON) is kept as its `defect`, so the
    apply rejects that change alone and applies the rest of its batch."""
    defects: list[str] = []

    def parse(what: str, convert: Callable[[], Any], default: Any) -> Any:
        try:
            return convert()
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            defects.append(f"{what}: {str(exc)[:200] or type(exc).__name__}")
            return default

    data = parse("data_json", lambda: json.loads(msg.data_json), {})
    if not isinstance(data, dict):
        defects.append("data_json: must be a JSON object")
        data = {}
    return Revision(
        sequence=msg.seq,
        entity_type=msg.entity_type,
        entity_id=parse("entity_id", lambda: uuid.UUID(msg.entity_id), _NIL),
        version=msg.version,
        operation=parse("operation", lambda: _FROM_WIRE[msg.operation], ChangeOperation.UPDATE),
        change_time=parse("change_time", lambda: mapping.timestamp_to_datetime(msg.change_time), _EPOCH),
        actor_id=parse("actor_id", lambda: uuid.UUID(msg.actor_id) if msg.actor_id else None, None),
        request_id=msg.request_id,
        snapshot=data,
        tx_id=parse("tx_id", lambda: uuid.UUID(msg.tx_id) if msg.tx_id else None, None),
        snapshot_json=msg.data_json if not defects else "",
        defect="; ".join(defects),
    )


class SyncServicer(sync_pb2_grpc.SyncServiceServicer):  # type: ignore[misc]
    def __init__(self, applier: SyncApplier) -> None:
        self._applier = applier

    async def PushChanges(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.PushChangesResponse:
        call = CURRENT_CALL.get()
        origin = mapping.require_id(request.origin_id, "origin_id")
        batch: list[Revision] = []
        for i, c in enumerate(request.changes):
            if i and i % 500 == 0:
                await asyncio.sleep(0)  # a large batch: let a push being applied meanwhile go on
            batch.append(change_from_proto(c))
        acked, rejected = await self._applier.push(
            origin, request.after_seq, batch, request.schema_version, principal=call.principal, peer=call.peer
        )
        return sync_pb2.PushChangesResponse(
            acked_seq=acked,
            rejected=[
                sync_pb2.RejectedChange(
                    seq=r.seq, entity_type=r.entity_type, entity_id=str(r.entity_id), reason=r.reason
                )
                for r in rejected
            ],
        )

    async def PullChanges(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.PullChangesResponse:
        origin = mapping.require_id(request.origin_id, "origin_id")
        if request.after_seq < 0 or request.limit < 0:
            raise InvalidArgument.of([FieldViolation("after_seq", "must not be negative")])
        changes, cursor, more, central_id, resync = await self._applier.pull(
            origin, request.after_seq, request.limit, principal=CURRENT_CALL.get().principal
        )
        return sync_pb2.PullChangesResponse(
            changes=[change_to_proto(c) for c in changes],
            next_cursor=cursor,
            more=more,
            central_id=str(central_id),
            resync_required=resync,
        )

    async def GetSnapshot(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.GetSnapshotResponse:
        as_of, rows, token = await self._applier.snapshot(
            request.entity_type,
            page_size=request.page_size,
            page_token=request.page_token,
            principal=CURRENT_CALL.get().principal,
        )
        return sync_pb2.GetSnapshotResponse(
            as_of_seq=as_of, entities_json=[compact_json(r) for r in rows], next_page_token=token
        )

    async def ListConflicts(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.ListConflictsResponse:
        entity_id = mapping.require_id(request.entity_id, "entity_id") if request.entity_id else None
        rows, token = await self._applier.conflicts(
            entity_id, page_size=request.page_size, page_token=request.page_token
        )
        out = sync_pb2.ListConflictsResponse(next_page_token=token)
        for row in rows:
            conflict = out.conflicts.add(
                sequence=row["seq"],
                origin_id=str(row["origin_id"]),
                origin_seq=row["origin_seq"],
                entity_type=row["entity_type"],
                entity_id=str(row["entity_id"]),
                central_version=row["central_version"],
                edge_version=row["edge_version"],
                winner=row["winner"],
                resolved_version=row["resolved_version"],
                central_data_json=json.dumps(row["central_data"]),
                edge_data_json=json.dumps(row["edge_data"]),
                resolved_data_json=json.dumps(row["resolved_data"]) if row["resolved_data"] else "",
            )
            conflict.create_time.FromDatetime(row["created_at"])
        return out

    async def GetWatermark(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.Watermark:
        origin = mapping.require_id(request.origin_id, "origin_id")
        last = await self._applier.watermark(origin, CURRENT_CALL.get().principal)
        return sync_pb2.Watermark(origin_id=str(origin), last_seq=last)


class ReplicationServicer(sync_pb2_grpc.ReplicationServiceServicer):  # type: ignore[misc]
    def __init__(self, status: Callable[[], Any]) -> None:
        self._status = status

    async def GetReplicationStatus(self, request: Any, context: grpc.aio.ServicerContext) -> sync_pb2.ReplicationStatus:
        return await self._status()


def add_sync_servicer(server: grpc.aio.Server, applier: SyncApplier) -> str:
    sync_pb2_grpc.add_SyncServiceServicer_to_server(SyncServicer(applier), server)
    return str(sync_pb2.DESCRIPTOR.services_by_name["SyncService"].full_name)


def add_replication_servicer(server: grpc.aio.Server, status: Callable[[], Any]) -> str:
    sync_pb2_grpc.add_ReplicationServiceServicer_to_server(ReplicationServicer(status), server)
    return str(sync_pb2.DESCRIPTOR.services_by_name["ReplicationService"].full_name)
