"""Thin servicers for SyncService (central) and ReplicationService (edge status), and the wire form of a
change record, shared with the replicator's client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import grpc
from smooth.core.v1 import sync_pb2, sync_pb2_grpc

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.domain.entities import Revision
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.schema import compact_json
from server.usecases.replication.central import SyncApplier
from server.wire import change_from_proto, change_to_proto


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
