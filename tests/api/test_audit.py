"""The audit log: an entry per mutation in the same transaction (gone with a failed one), refused calls
audited, filters and paging for admins, and a hash chain whose verifier finds edited and deleted entries."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import sqlalchemy as sa
from conftest import Edge, Factory, Stubs, expect_failure
from google.protobuf import field_mask_pb2
from smooth.core.v1 import audit_log_pb2, audit_log_pb2_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb

from agent.grpc_client import authorized_channel
from server.domain.entities import UserRole
from server.domain.identity import AuditEntry
from server.store import migrate
from server.store.repository import Store
from server.store.tables import audit_log
from server.usecases import audit
from server.usecases.app import build
from server.usecases.entities import Caller


async def _entries(edge: Edge, **filters: object) -> list[audit_log_pb2.AuditLogEntry]:
    stub = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    out, token = [], ""
    while True:
        page = await stub.ListAuditLogs(audit_log_pb2.ListAuditLogsRequest(page_size=7, page_token=token, **filters))
        out.extend(page.entries)
        token = page.next_page_token
        if not token:
            return out


async def test_every_mutation_is_audited_with_before_and_after(edge: Edge, make: Factory, stubs: Stubs) -> None:
    item = await make.item()
    await stubs.items.UpdateToolItem(
        item_pb.UpdateToolItemRequest(
            tool_item=item_pb.ToolItem(id=item.id, version=1, description="reground"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            request_id="audit-upd-1",
        )
    )
    await stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=item.id, version=2))
    entries = await _entries(edge, entity_id=item.id)
    assert [(e.action, e.entity_version) for e in entries] == [
        ("tool_item.create", 1),
        ("tool_item.update", 2),
        ("tool_item.delete", 2),
    ]
    create, update, delete = entries
    assert not create.HasField("before") and create.after["name"] == item.name
    assert update.before["description"] == "" and update.after["description"] == "reground"
    assert update.request_id == "audit-upd-1"
    assert delete.before["version"] == 2 and not delete.HasField("after")
    assert {e.actor_id for e in entries} == {item.owner_id} and all(e.api_key_id for e in entries)
    assert all(e.peer.startswith("ipv4:127.0.0.1") for e in entries) and all(e.outcome == "OK" for e in entries)
    assert update.prev_hash == create.hash and delete.prev_hash == update.hash


async def test_failed_mutations_leave_no_audit_entry(edge: Edge, make: Factory, stubs: Stubs) -> None:
    item = await make.item()
    before = len(await _entries(edge, entity_type="tool_item"))
    stale = item_pb.UpdateToolItemRequest(
        tool_item=item_pb.ToolItem(id=item.id, version=9, description="x"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
    )
    assert (await expect_failure(stubs.items.UpdateToolItem(stale))).code == grpc.StatusCode.ABORTED
    invalid = item_pb.UpdateToolItemRequest(
        tool_item=item_pb.ToolItem(id=item.id, version=1, name=""), update_mask=field_mask_pb2.FieldMask(paths=["name"])
    )
    assert (await expect_failure(stubs.items.UpdateToolItem(invalid))).code == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await _entries(edge, entity_type="tool_item")) == before


async def test_audit_entry_rolls_back_with_its_transaction(edge: Edge) -> None:
    marker = f"rollback-{uuid.uuid4().hex[:8]}"

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with edge.store.write() as tx:
            await audit.append(tx, AuditEntry(occurred_at=datetime.now(UTC), action="test.write", detail=marker))
            raise Boom
    assert not [e for e in await _entries(edge, action="test.write") if e.detail == marker]


async def test_refused_calls_are_audited(edge: Edge) -> None:
    async with authorized_channel(edge.address, None) as anonymous:
        await expect_failure(Stubs(anonymous).items.ListToolItems(item_pb.ListToolItemsRequest()))
    viewer_id, viewer_secret = await edge.user_with_key(UserRole.VIEWER)
    async with authorized_channel(edge.address, viewer_secret) as channel:
        await expect_failure(Factory(Stubs(channel)).item())
    unauth = await _entries(edge, action="auth.unauthenticated")
    assert any(e.entity_id == "/smooth.core.v1.ToolItemService/ListToolItems" and not e.actor_id for e in unauth)
    denied = await _entries(edge, action="auth.permission_denied", actor_id=str(viewer_id))
    assert denied and denied[-1].entity_id == "/smooth.core.v1.ToolItemService/CreateToolItem"
    assert denied[-1].outcome == "PERMISSION_DENIED" and "write" in denied[-1].detail


async def test_filters_by_actor_entity_and_time(edge: Edge) -> None:
    op_id, op_secret = await edge.user_with_key(UserRole.OPERATOR)
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with authorized_channel(edge.address, op_secret) as channel:
        made = [await Factory(Stubs(channel)).item() for _ in range(3)]
    mine = await _entries(edge, actor_id=str(op_id), entity_type="tool_item")
    assert [e.entity_id for e in mine] == [m.id for m in made]
    request = audit_log_pb2.ListAuditLogsRequest(actor_id=str(op_id))
    request.start_time.FromDatetime(start)
    request.end_time.FromDatetime(start - timedelta(seconds=5))
    empty = await audit_log_pb2_grpc.AuditLogServiceStub(edge.channel).ListAuditLogs(request)
    assert not empty.entries
    seqs = [e.sequence for e in await _entries(edge)]
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    async with authorized_channel(edge.address, op_secret) as channel:
        err = await expect_failure(
            audit_log_pb2_grpc.AuditLogServiceStub(channel).ListAuditLogs(audit_log_pb2.ListAuditLogsRequest())
        )
        assert err.code == grpc.StatusCode.PERMISSION_DENIED


async def _store_with_history(path: Path) -> Store:
    store = Store(str(path))
    await store.__aenter__()
    await migrate.upgrade(store.engine)
    use_cases = build(store)
    await use_cases.api_keys.bootstrap(email="a@b.cd", role=UserRole.ADMIN)
    items = use_cases.entities["tool_item"]
    for i in range(4):
        from server.domain.entities import ToolType

        await items.create({"name": f"i{i}", "tool_type": ToolType.OTHER}, entity_id=None, caller=Caller(peer="t"))
    return store


@pytest.mark.parametrize("tamper", ["edit", "delete"])
async def test_chain_verifier_finds_edited_and_deleted_entries(tmp_path: Path, tamper: str) -> None:
    store = await _store_with_history(tmp_path / "a.db")
    try:
        service = build(store).audit
        result = await service.verify()
        assert result.ok and result.checked >= 6
        async with store.engine.begin() as conn:
            if tamper == "edit":
                await conn.execute(audit_log.update().where(audit_log.c.seq == 4).values(detail="nothing to see"))
            else:
                await conn.execute(audit_log.delete().where(audit_log.c.seq == 4))
        broken = await service.verify()
        assert not broken.ok and broken.broken_seq == (4 if tamper == "edit" else 5) and broken.checked == 3
        assert ("altered" if tamper == "edit" else "missing") in broken.reason
    finally:
        await store.__aexit__(None, None, None)
    cli = subprocess.run(
        [sys.executable, "-m", "agent.cli", "audit", "verify", "--db", str(tmp_path / "a.db")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 1 and "BROKEN at entry" in cli.stdout


async def test_deleting_the_newest_entries_is_detected(tmp_path: Path) -> None:
    """The chain head is kept apart: deleting the newest entries shows, and their numbers are never reused."""
    store = await _store_with_history(tmp_path / "b.db")
    try:
        async with store.engine.begin() as conn:
            last = (await conn.execute(sa.select(sa.func.max(audit_log.c.seq)))).scalar_one()
            await conn.execute(audit_log.delete().where(audit_log.c.seq == last))
        result = await build(store).audit.verify()
        assert not result.ok and result.broken_seq == last and "newest entries were deleted" in result.reason
        async with store.write() as tx:
            await audit.append(tx, AuditEntry(occurred_at=datetime.now(UTC), action="test.after"))
        async with store.engine.begin() as conn:
            newest = (await conn.execute(sa.select(sa.func.max(audit_log.c.seq)))).scalar_one()
        assert newest == last + 1
        result = await build(store).audit.verify()
        assert not result.ok and result.broken_seq == last + 1 and "missing" in result.reason
    finally:
        await store.__aexit__(None, None, None)
