"""Pushing hand-made changes to a real central (PostgreSQL, gRPC) for the replication tests."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import Edge, fresh_pg_database, start_edge
from smooth.core.v1 import common_pb2, sync_pb2, sync_pb2_grpc

from agent.grpc_client import authorized_channel
from server.domain.entities import ToolItem, ToolType, UserRole, Versioned
from server.domain.registry import KIND_BY_CLASS
from server.domain.schema import compact_json, to_json
from server.store import migrate
from server.usecases.entities import Caller, utc_now

SYSTEM = Caller(peer="test")


@pytest.fixture(scope="module")
async def central(pg_url: str) -> AsyncIterator[Edge]:
    async with fresh_pg_database(pg_url) as url:
        async for edge in start_edge(url, central=True):
            yield edge


async def sync_key(central: Edge) -> str:
    user, _, _ = await central.use_cases.api_keys.bootstrap(
        email=f"edge-{uuid.uuid4().hex[:6]}@sync.example", role=UserRole.ADMIN
    )
    _, secret = await central.use_cases.api_keys.create(
        user_id=user.id, name="replicator", scopes=["sync"], expires_at=None, caller=SYSTEM
    )
    return secret


def wire(seq: int, entity: Versioned, operation: int = common_pb2.CHANGE_OPERATION_CREATE) -> sync_pb2.Change:
    change = sync_pb2.Change(
        seq=seq,
        tx_id=str(uuid.uuid4()),
        entity_type=KIND_BY_CLASS[type(entity)].name,
        entity_id=str(entity.id),
        version=entity.version,
        operation=operation,
        data_json=compact_json(to_json(entity)),
    )
    change.change_time.FromDatetime(utc_now())
    return change


def new_item(name: str = "push item") -> ToolItem:
    now = utc_now()
    return ToolItem(id=uuid.uuid4(), name=name, tool_type=ToolType.OTHER, created_at=now, updated_at=now, version=1)


async def push_between_valid(central: Edge, bad: sync_pb2.Change) -> sync_pb2.PushChangesResponse:
    """Pushes [valid create, bad, valid create] from a new origin; checks the valid ones were applied."""
    before, after = new_item("before the bad one"), new_item("after the bad one")
    bad.seq = 2
    async with authorized_channel(central.address, await sync_key(central)) as channel:
        response = await sync_pb2_grpc.SyncServiceStub(channel).PushChanges(
            sync_pb2.PushChangesRequest(
                origin_id=str(uuid.uuid4()),
                after_seq=0,
                changes=[wire(1, before), bad, wire(3, after)],
                schema_version=migrate.head_revision(),
            )
        )
    assert response.acked_seq == 3
    assert [r.seq for r in response.rejected] == [2], response.rejected
    async with central.store.read() as tx:
        found = await tx.get_many(KIND_BY_CLASS[ToolItem], [before.id, after.id])
    assert set(found) == {before.id, after.id}, "the valid changes around a rejected one are applied"
    return response
