"""Replication edge -> central on real PostgreSQL: a push converges entity by entity, a central outage with
thousands of writes on the edge converges once central is back, duplicate / overlapping / gapped / reordered
deliveries change nothing they should not, rejections never block, and two edges share one central."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Edge, expect_failure, free_port, fresh_pg_database, start_edge, struct
from smooth.core.v1 import sync_pb2, sync_pb2_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb
from test_replicator import eventually, reaches

from agent.grpc_client import authorized_channel
from agent.replicator.replicator import ReplicatorSettings
from agent.replicator.status import ReplicatorState
from agent.runtime import replicating
from server.domain.entities import Revision, ToolType, UserRole
from server.domain.registry import KINDS
from server.domain.schema import to_json
from server.store import migrate
from server.usecases.entities import Caller, utc_now
from server.wire import change_to_proto

pytestmark = pytest.mark.postgres
SYSTEM = Caller(peer="test")


@pytest.fixture
async def central(pg_url: str) -> AsyncIterator[Edge]:
    async with fresh_pg_database(pg_url) as url:
        async for edge in start_edge(url, central=True):
            yield edge


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in start_edge(str(tmp_path / "edge.db")):
        yield e


async def sync_key(central: Edge) -> str:
    user, _, _ = await central.use_cases.api_keys.bootstrap(
        email=f"edge-{uuid.uuid4().hex[:6]}@sync.local", role=UserRole.ADMIN
    )
    _, secret = await central.use_cases.api_keys.create(
        user_id=user.id, name="replicator", scopes=["sync"], expires_at=None, caller=SYSTEM
    )
    return secret


def settings(target: str, key: str) -> ReplicatorSettings:
    return ReplicatorSettings(
        central=target, key=key, interval_s=0.2, max_backoff_s=0.5, schema_version=migrate.head_revision()
    )


async def snapshot(e: Edge) -> dict[str, dict[str, Any]]:
    """Every entity of the store by kind and id, as JSON (what must be equal on both sides)."""
    out: dict[str, dict[str, Any]] = {}
    for name in KINDS:
        rows: dict[str, Any] = {}
        token = ""
        while True:
            page = await e.use_cases.entities[name].list(page_size=1000, page_token=token, filter_text="", order_by="")
            rows.update({str(x.id): to_json(x) for x in page.items})
            token = page.next_page_token
            if not token:
                break
        out[name] = rows
    return out


def assert_replicated(edge_rows: dict[str, dict[str, Any]], central_rows: dict[str, dict[str, Any]]) -> None:
    for kind, rows in edge_rows.items():
        for entity_id, data in rows.items():
            assert central_rows[kind].get(entity_id) == data, f"{kind} {entity_id} differs on central"


async def shop_activity(edge: Edge, n: int = 3) -> None:
    """A bit of everything: creates, updates with masks, member changes, deletes."""
    from google.protobuf import field_mask_pb2

    for i in range(n):
        item = await edge.make.item()
        instance = await edge.make.instance(tool_item_id=item.id)
        preset = await edge.make.preset(tool_instance_id=instance.id)
        await edge.make.usage(tool_instance_id=instance.id, usage_metrics=struct({"parts": i}))
        tool_set = await edge.make.tool_set(tool_instance_ids=[instance.id], tool_preset_ids=[preset.id])
        await edge.stubs.items.UpdateToolItem(
            item_pb.UpdateToolItemRequest(
                tool_item=item_pb.ToolItem(id=item.id, version=1, description=f"rev {i}"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        )
        doomed = await edge.make.item()
        await edge.stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=doomed.id, version=1))
        del tool_set


async def test_push_converges_entity_by_entity(edge: Edge, central: Edge) -> None:
    await shop_activity(edge)
    async with replicating(edge.store, settings(central.address, await sync_key(central)), utc_now) as replicator:
        await replicator.flush()
        status = await replicator.status()
    assert status.backlog == 0 and status.acked_seq == status.last_local_seq > 0 and status.rejected == 0
    assert_replicated(await snapshot(edge), await snapshot(central))
    # The deleted item is gone on central too, and central keeps the edge's history with its origin.
    history = await central.use_cases.entities["tool_item"].list(
        page_size=1000, page_token="", filter_text="", order_by=""
    )
    edge_items = (await snapshot(edge))["tool_item"]
    assert {str(i.id) for i in history.items} >= set(edge_items)


async def test_central_down_then_back_converges(edge: Edge, pg_url: str) -> None:
    port = free_port()
    address = f"127.0.0.1:{port}"
    items = edge.use_cases.entities["tool_item"]
    async with fresh_pg_database(pg_url) as url:
        # The key must exist on central before it starts: make central's store first, then serve it later.
        first = start_edge(url, central=True)
        key = await sync_key(await anext(first))
        await first.aclose()
        async with replicating(edge.store, settings(address, key), utc_now) as replicator:
            edge.store.on_commit.append(replicator.notify)
            for i in range(1500):
                await items.create({"name": f"offline {i}", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM)
            status = await reaches(replicator, lambda s: s.state is ReplicatorState.RETRYING, "retrying")
            assert status.backlog >= 1500 and not status.connected
            assert status.last_error.startswith("transient: UNAVAILABLE")
            again = start_edge(url, central=True, listen=address)
            central = await anext(again)
            try:
                await reaches(replicator, lambda s: s.backlog == 0, "the drain")
                assert_replicated(await snapshot(edge), await snapshot(central))
            finally:
                edge.store.on_commit.remove(replicator.notify)
                await again.aclose()


async def _push(
    central: Edge, key: str, origin: uuid.UUID, after: int, changes: list[Revision], schema: str = ""
) -> Any:
    async with authorized_channel(central.address, key) as channel:
        request = sync_pb2.PushChangesRequest(
            origin_id=str(origin),
            after_seq=after,
            changes=[change_to_proto(c) for c in changes],
            schema_version=schema or migrate.head_revision(),
        )
        return await sync_pb2_grpc.SyncServiceStub(channel).PushChanges(request)


async def test_duplicate_overlapping_gapped_and_reordered_deliveries(edge: Edge, central: Edge) -> None:
    for _ in range(20):
        await edge.make.item()
    async with edge.store.read() as tx:
        log = await tx.local_changes(0, 1000)
    key = await sync_key(central)
    origin = uuid.uuid4()
    first = await _push(central, key, origin, 0, log[:10])
    assert first.acked_seq == log[9].sequence
    again = await _push(central, key, origin, 0, log[:10])  # repeated delivery
    assert again.acked_seq == log[9].sequence
    overlap = await _push(central, key, origin, log[4].sequence, log[5:15])  # overlapping delivery
    assert overlap.acked_seq == log[14].sequence
    err = await expect_failure(_push(central, key, origin, log[16].sequence, log[17:]))  # a gap
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "SEQUENCE_GAP"
    assert err.metadata["watermark"] == str(log[14].sequence)
    err = await expect_failure(_push(central, key, origin, log[14].sequence, [log[16], log[15]]))  # reordered
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    done = await _push(central, key, origin, log[14].sequence, log[15:])
    assert done.acked_seq == log[-1].sequence
    # Every change applied exactly once: one central change record per edge change.
    async with central.store.read() as tx:
        applied = [
            r
            for kind in ("tool_item", "user")
            for e in log
            if e.entity_type == kind
            for r in await tx.revisions(KINDS[kind], e.entity_id, 0, 100)
        ]
    assert len(applied) == len({(r.entity_id, r.version, r.operation) for r in applied})
    err = await expect_failure(_push(central, key, origin, log[-1].sequence, [], schema="9999"))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "SCHEMA_AHEAD"


async def test_a_rejected_change_does_not_block_the_ones_after_it(edge: Edge, central: Edge) -> None:
    good = await edge.make.item()
    async with edge.store.read() as tx:
        log = await tx.local_changes(0, 1000)
    template = log[-1]  # a valid tool_item change to derive a bad one and a later good one from
    bad_id, later_id = uuid.uuid4(), uuid.uuid4()
    bad = replace(
        template,
        sequence=template.sequence + 1,
        entity_id=bad_id,
        snapshot={**template.snapshot, "id": str(bad_id), "name": ""},
    )
    later = replace(
        template,
        sequence=template.sequence + 2,
        entity_id=later_id,
        snapshot={**template.snapshot, "id": str(later_id), "name": "after the bad one"},
    )
    response = await _push(central, await sync_key(central), uuid.uuid4(), 0, [*log, bad, later])
    assert response.acked_seq == later.sequence
    assert [r.seq for r in response.rejected] == [bad.sequence] and "name" in response.rejected[0].reason
    on_central = await snapshot(central)
    assert str(later_id) in on_central["tool_item"] and str(good.id) in on_central["tool_item"]
    assert str(bad_id) not in on_central["tool_item"]


async def test_two_edges_into_one_central(tmp_path: Path, central: Edge) -> None:
    key = await sync_key(central)
    async for a in start_edge(str(tmp_path / "a.db")):
        async for b in start_edge(str(tmp_path / "b.db")):
            await shop_activity(a, 2)
            await shop_activity(b, 2)
            async with (
                replicating(a.store, settings(central.address, key), utc_now) as ra,
                replicating(b.store, settings(central.address, key), utc_now) as rb,
            ):
                assert ra.origin_id != rb.origin_id
                await asyncio.gather(ra.flush(), rb.flush())
            on_central = await snapshot(central)
            assert_replicated(await snapshot(a), on_central)
            assert_replicated(await snapshot(b), on_central)
            break
        break


async def test_pull_brings_central_changes_down_without_echoing_the_edges_own(edge: Edge, central: Edge) -> None:
    await shop_activity(edge, 1)
    catalog = await central.make.item(
        name="Central catalog drill",
        tool_type=item_pb.TOOL_TYPE_DRILL,
        geometry=struct({"DC": 8, "SIG": 140, "OAL": 90}),
    )
    key = await sync_key(central)
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        # A round ends after the pull: everything central had when it began is here.
        await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "a finished round")
        cursor = replicator.pulled_cursor
    got = await edge.use_cases.entities["tool_item"].get(uuid.UUID(catalog.id))
    assert got.version == catalog.version and got.name == "Central catalog drill"  # type: ignore[attr-defined]
    async with edge.store.read() as tx:
        local = await tx.local_changes(0, 10_000)
        everything = await tx.changes_after(0, 10_000)
    pulled_changes = [c for c in everything if c.origin_id is not None]
    # Nothing the edge made came back to it: the pulled ones are central's (its admin, the catalog item).
    assert {c.entity_id for c in pulled_changes}.isdisjoint({c.entity_id for c in local})
    assert uuid.UUID(catalog.id) in {c.entity_id for c in pulled_changes}
    # A restart continues from the saved cursor: nothing is applied twice.
    async with replicating(edge.store, settings(central.address, key), utc_now) as again:
        await reaches(again, lambda s: s.state is ReplicatorState.IDLE, "a finished round")
        assert again.pulled_cursor in (0, cursor)
    async with edge.store.read() as tx:
        assert len(await tx.changes_after(0, 10_000)) == len(everything)


async def test_concurrent_edits_are_decided_by_ownership_with_one_conflict_record_each(
    edge: Edge, central: Edge
) -> None:
    from google.protobuf import field_mask_pb2, timestamp_pb2
    from smooth.core.v1 import sync_pb2 as spb
    from smooth.core.v1 import tool_instance_pb2 as inst_pb
    from smooth.core.v1 import tool_usage_pb2 as usage_pb

    item = await edge.make.item()
    instance = await edge.make.instance(tool_item_id=item.id)
    # A closed usage: an open one would move the instance IN_USE (a version of its own) before the edits below.
    ended = timestamp_pb2.Timestamp()
    ended.GetCurrentTime()
    started = timestamp_pb2.Timestamp(seconds=ended.seconds - 600)
    usage = await edge.make.usage(tool_instance_id=instance.id, start_time=started, end_time=ended)
    key = await sync_key(central)
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        await replicator.flush()

    def mask(*paths: str) -> field_mask_pb2.FieldMask:
        return field_mask_pb2.FieldMask(paths=list(paths))

    # Both sides change the same three entities from version 1.
    for stubs, who in ((central.stubs, "C"), (edge.stubs, "E")):
        await stubs.items.UpdateToolItem(
            item_pb.UpdateToolItemRequest(
                tool_item=item_pb.ToolItem(id=item.id, version=1, description=who), update_mask=mask("description")
            )
        )
        await stubs.usages.UpdateToolUsage(
            usage_pb.UpdateToolUsageRequest(
                tool_usage=usage_pb.ToolUsage(id=usage.id, version=1, notes=who), update_mask=mask("notes")
            )
        )
    await central.stubs.instances.UpdateToolInstance(
        inst_pb.UpdateToolInstanceRequest(
            tool_instance=inst_pb.ToolInstance(id=instance.id, version=1, serial_number=f"{instance.serial_number}-C"),
            update_mask=mask("serial_number"),
        )
    )
    await edge.stubs.instances.UpdateToolInstance(
        inst_pb.UpdateToolInstanceRequest(
            tool_instance=inst_pb.ToolInstance(
                id=instance.id, version=1, measurements=struct({"LF": {"value": 70.02}})
            ),
            update_mask=mask("measurements"),
        )
    )
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        await replicator.flush()

        async def decided() -> bool:  # the decisions come back down with the pull
            got = await edge.stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))
            return got.version == 3

        await eventually(decided, what="central's decisions on the edge")
    expected = {
        "item": ("C", "CENTRAL"),
        "usage": ("E", "EDGE"),
    }
    for side in (central, edge):
        got_item = await side.stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))
        got_usage = await side.stubs.usages.GetToolUsage(usage_pb.GetToolUsageRequest(id=usage.id))
        got_instance = await side.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance.id))
        assert (got_item.description, got_item.version) == (expected["item"][0], 3)
        assert (got_usage.notes, got_usage.version) == (expected["usage"][0], 3)
        assert got_instance.serial_number.endswith("-C") and got_instance.measurements["LF"]["value"] == 70.02
        assert got_instance.version == 3
    async with authorized_channel(central.address, central.admin_secret) as channel:
        listed = await sync_pb2_grpc.SyncServiceStub(channel).ListConflicts(spb.ListConflictsRequest())
    winners = {c.entity_id: c.winner for c in listed.conflicts}
    assert winners == {item.id: "CENTRAL", usage.id: "EDGE", instance.id: "MERGED"}
    item_conflict = next(c for c in listed.conflicts if c.entity_id == item.id)
    assert '"description": "E"' in item_conflict.edge_data_json and item_conflict.resolved_version == 3


async def test_a_cursor_older_than_central_keeps_leads_to_a_full_resync(edge: Edge, central: Edge) -> None:
    import sqlalchemy as sa

    from server.store.tables import changes

    first = [await central.make.item(name=f"catalog {i}") for i in range(3)]
    mine = await edge.make.item(name="edge's own")
    key = await sync_key(central)

    async def names() -> set[str]:
        return {d["name"] for d in (await snapshot(edge))["tool_item"].values()}

    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "a finished round")
        assert {i.name for i in first} <= await names()
    # Meanwhile on central: new items, one deleted, and the history before them pruned (retention).
    later = [await central.make.item(name=f"later {i}") for i in range(2)]
    await central.stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=first[0].id, version=1))
    async with central.store.write() as tx:
        newest = (await tx._conn.execute(sa.select(sa.func.max(changes.c.seq)))).scalar_one()
        await tx._conn.execute(changes.delete().where(changes.c.seq < newest))
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        status = await reaches(
            replicator,
            lambda s: s.resyncs == 1 and s.state is ReplicatorState.IDLE and s.backlog == 0,
            "the full resync and the round after it",
        )
    assert not status.resyncing
    after = await names()
    assert {i.name for i in later} <= after, "new central items did not arrive"
    assert first[0].name not in after, "an item deleted on central survived the resync"
    assert {first[1].name, first[2].name, mine.name} <= after, "the resync lost something"


async def test_an_origin_belongs_to_its_sync_key_and_edges_cannot_change_central_users(
    edge: Edge, central: Edge
) -> None:
    await edge.make.item()
    async with edge.store.read() as tx:
        log = await tx.local_changes(0, 1000)
    origin = uuid.uuid4()
    owner_key, other_key = await sync_key(central), await sync_key(central)
    await _push(central, owner_key, origin, 0, log[:1])
    err = await expect_failure(_push(central, other_key, origin, log[0].sequence, log[1:]))
    assert err.code == grpc.StatusCode.PERMISSION_DENIED and err.reason == "ORIGIN_OF_ANOTHER_KEY"
    # A pushed change to a user central already has (its admin) is rejected, never applied.
    admin = (await central.use_cases.users.list(page_size=1, page_token="", filter_text="", order_by="")).items[0]
    demoted = replace(
        log[0],
        sequence=log[-1].sequence + 1,
        entity_type="user",
        entity_id=admin.id,
        snapshot={**to_json(admin), "role": "VIEWER", "is_active": False, "version": admin.version + 5},
    )
    response = await _push(central, owner_key, origin, log[0].sequence, [*log[1:], demoted])
    assert [r.seq for r in response.rejected] == [demoted.sequence]
    still = await central.use_cases.users.get(admin.id)
    assert still.role == UserRole.ADMIN and still.is_active  # type: ignore[attr-defined]


async def test_central_change_stream_carries_what_edges_push(edge: Edge, central: Edge) -> None:
    """The MES watching central sees each edge's changes as they arrive, in central's commit order, with the tool
    events read from them (issue 13: the change stream works on central too)."""
    from smooth.core.v1 import mes_pb2, mes_pb2_grpc
    from smooth.core.v1 import tool_usage_pb2 as usage_pb

    watch = mes_pb2_grpc.ChangeStreamServiceStub(central.channel).WatchChanges(
        mes_pb2.WatchChangesRequest(entity_types=["tool_usage", "tool_instance"])
    )
    first = await asyncio.wait_for(watch.read(), 15)
    assert first.HasField("bookmark")
    instance = await edge.make.instance()
    usage = await edge.make.usage(tool_instance_id=instance.id, machine_id="MILL-C")
    usage.end_time.GetCurrentTime()
    await edge.stubs.usages.UpdateToolUsage(usage_pb.UpdateToolUsageRequest(tool_usage=usage))
    async with replicating(edge.store, settings(central.address, await sync_key(central)), utc_now) as replicator:
        await replicator.flush()
    seen: list[mes_pb2.ChangeEvent] = []
    async with asyncio.timeout(15):
        while not any(e.type == mes_pb2.TOOL_EVENT_TYPE_USAGE_CLOSED for c in seen for e in c.events):
            message = await watch.read()
            assert message is not grpc.aio.EOF
            seen.extend(message.changes)
    watch.cancel()
    sequences = [c.sequence for c in seen]
    assert sequences == sorted(set(sequences))
    usage_events = [(c.entity_id, [e.type for e in c.events]) for c in seen if c.entity_type == "tool_usage"]
    assert usage_events == [
        (usage.id, [mes_pb2.TOOL_EVENT_TYPE_USAGE_OPENED]),
        (usage.id, [mes_pb2.TOOL_EVENT_TYPE_USAGE_CLOSED]),
    ]
    assert {c.entity_id for c in seen if c.entity_type == "tool_instance"} == {instance.id}
