"""A push that mixes plain creates with a delete and a tool set is applied in order and whole: the runs of plain
changes take the bulk path, what is left is applied change by change between them. Real central on PostgreSQL,
real gRPC."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from pushing import central, new_item, sync_key, wire
from smooth.core.v1 import common_pb2, sync_pb2, sync_pb2_grpc

from agent.grpc_client import authorized_channel
from server.domain.entities import ToolInstance, ToolSet
from server.domain.registry import KINDS
from server.store import migrate
from server.usecases.entities import utc_now

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the module's fixture


async def test_creates_around_a_delete_and_a_tool_set_all_apply_in_order(central: object) -> None:
    origin = uuid.uuid4()
    doomed = new_item("deleted in the middle")
    before = [new_item(f"before {i}") for i in range(150)]
    after = [new_item(f"after {i}") for i in range(150)]
    now = utc_now()
    tool_set = ToolSet(id=uuid.uuid4(), name="set", created_at=now, updated_at=now, version=1)
    changes = [wire(1, doomed)]
    changes += [wire(2 + i, item) for i, item in enumerate(before)]
    changes.append(wire(200, doomed, common_pb2.CHANGE_OPERATION_DELETE))
    changes.append(wire(201, tool_set))
    changes += [wire(300 + i, item) for i, item in enumerate(after)]
    renamed = dataclasses.replace(before[0], name="renamed after the delete", version=2)
    changes.append(wire(500, renamed, common_pb2.CHANGE_OPERATION_UPDATE))
    async with authorized_channel(central.address, await sync_key(central)) as channel:  # type: ignore[attr-defined]
        response = await sync_pb2_grpc.SyncServiceStub(channel).PushChanges(
            sync_pb2.PushChangesRequest(
                origin_id=str(origin), after_seq=0, changes=changes, schema_version=migrate.head_revision()
            )
        )
    assert response.acked_seq == 500 and not response.rejected
    async with central.store.read() as tx:  # type: ignore[attr-defined]
        items = await tx.get_many(KINDS["tool_item"], [i.id for i in [doomed, *before, *after]])
        history = await tx.revisions(KINDS["tool_item"], doomed.id, 0, 10)
        sets = await tx.get_many(KINDS["tool_set"], [tool_set.id])
        first = await tx.get(KINDS["tool_item"], before[0].id)
    assert set(items) == {i.id for i in [*before, *after]}, "every create applied, the deleted one gone"
    assert [r.operation for r in history] == ["CREATE", "DELETE"]
    assert set(sets) == {tool_set.id}
    assert first is not None and first.version == 2 and getattr(first, "name", "") == "renamed after the delete"


async def test_a_run_of_deletes_applies_whole_and_a_referenced_one_is_rejected_alone(central: object) -> None:
    origin = uuid.uuid4()
    items = [new_item(f"to delete {i}") for i in range(100)]
    held = new_item("held by an instance")
    now = utc_now()
    instance = ToolInstance(
        id=uuid.uuid4(), tool_item_id=held.id, serial_number=f"SN-{uuid.uuid4().hex[:8]}", created_at=now,
        updated_at=now, version=1,
    )  # fmt: skip
    creates = [wire(1 + i, item) for i, item in enumerate([*items, held])] + [wire(200, instance)]
    deletes = [wire(300 + i, item, common_pb2.CHANGE_OPERATION_DELETE) for i, item in enumerate(items[:50])]
    deletes.append(wire(400, held, common_pb2.CHANGE_OPERATION_DELETE))
    deletes += [wire(401 + i, item, common_pb2.CHANGE_OPERATION_DELETE) for i, item in enumerate(items[50:])]
    async with authorized_channel(central.address, await sync_key(central)) as channel:  # type: ignore[attr-defined]
        stub = sync_pb2_grpc.SyncServiceStub(channel)
        first = await stub.PushChanges(
            sync_pb2.PushChangesRequest(
                origin_id=str(origin), after_seq=0, changes=creates, schema_version=migrate.head_revision()
            )
        )
        assert first.acked_seq == 200 and not first.rejected
        second = await stub.PushChanges(
            sync_pb2.PushChangesRequest(
                origin_id=str(origin), after_seq=200, changes=deletes, schema_version=migrate.head_revision()
            )
        )
    assert second.acked_seq == deletes[-1].seq
    assert [r.seq for r in second.rejected] == [400] and "STILL_REFERENCED" in second.rejected[0].reason
    async with central.store.read() as tx:  # type: ignore[attr-defined]
        left = await tx.get_many(KINDS["tool_item"], [i.id for i in [*items, held]])
        history = await tx.revisions(KINDS["tool_item"], items[0].id, 0, 10)
    assert set(left) == {held.id}, "every unreferenced delete applied; the referenced item stays"
    assert [r.operation for r in history] == ["CREATE", "DELETE"]
