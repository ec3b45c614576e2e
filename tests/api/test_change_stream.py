"""The change stream (issue 13) through the real gRPC API: tool events in commit order, filters, resume after the
client disconnects and after the server restarts (nothing missed, nothing twice), expired cursors (another
store's, one the store no longer keeps, one ahead of a store restored from an older copy) and a slow consumer
told so and resuming from its cursor. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Edge, failure, fresh_pg_database, start_edge, struct
from google.protobuf import duration_pb2, timestamp_pb2
from smooth.core.v1 import common_pb2, mes_pb2, mes_pb2_grpc
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_usage_pb2 as usage_pb

from server.domain.entities import ToolType
from server.usecases.entities import Caller

Msg = mes_pb2.WatchChangesResponse
FAST = duration_pb2.Duration(nanos=200_000_000)  # bookmarks every 0.2 s


def stream(edge: Edge, channel: grpc.aio.Channel | None = None, **request: Any) -> Any:
    """A WatchChanges call on the edge's admin channel, or on `channel` with the admin's key."""
    request.setdefault("bookmark_interval", FAST)
    if channel is None:
        return mes_pb2_grpc.ChangeStreamServiceStub(edge.channel).WatchChanges(mes_pb2.WatchChangesRequest(**request))
    key = [("authorization", f"Bearer {edge.admin_secret}")]
    return mes_pb2_grpc.ChangeStreamServiceStub(channel).WatchChanges(
        mes_pb2.WatchChangesRequest(**request), metadata=key
    )


async def read_until(call: Any, done: Callable[[list[Msg]], bool], timeout: float = 15) -> list[Msg]:
    got: list[Msg] = []
    async with asyncio.timeout(timeout):
        while not done(got):
            message = await call.read()
            assert message is not grpc.aio.EOF, "the stream ended"
            got.append(message)
    return got


def changes(messages: list[Msg]) -> list[mes_pb2.ChangeEvent]:
    return [c for m in messages for c in m.changes]


def events(messages: list[Msg]) -> list[tuple[str, int]]:
    return [(c.entity_type, e.type) for c in changes(messages) for e in c.events]


async def test_tool_events_in_commit_order_and_resume_after_a_disconnect(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 10, "prewarning": 5}}))
    instance = await edge.make.instance(tool_item_id=item.id)
    call = stream(edge, tool_instance_id=instance.id)
    (start,) = await read_until(call, lambda got: len(got) == 1)
    assert start.HasField("bookmark") and start.cursor  # a cursor at once, before anything happens

    usage = await edge.make.usage(tool_instance_id=instance.id, machine_id="MILL-7")
    usage.end_time.GetCurrentTime()
    usage.usage_metrics.update({"parts": 6})
    await edge.stubs.usages.UpdateToolUsage(usage_pb.UpdateToolUsageRequest(tool_usage=usage))
    await edge.stubs.instances.RecordMeasurement(
        inst_pb.RecordMeasurementRequest(
            tool_instance_id=instance.id,
            measurement_id=f"m-{uuid.uuid4().hex[:8]}",
            station_id="P1",
            measured_at=timestamp_pb2.Timestamp(seconds=int(time.time())),
            values={"DC": inst_pb.MeasuredValue(value=10.0)},
        )
    )
    t = mes_pb2
    wanted = [
        ("tool_usage", t.TOOL_EVENT_TYPE_USAGE_OPENED),
        ("tool_instance", t.TOOL_EVENT_TYPE_STATUS_CHANGED),  # AVAILABLE -> IN_USE
        ("tool_usage", t.TOOL_EVENT_TYPE_USAGE_CLOSED),
        ("tool_instance", t.TOOL_EVENT_TYPE_STATUS_CHANGED),  # IN_USE -> AVAILABLE
        ("tool_instance", t.TOOL_EVENT_TYPE_PREWARNING_REACHED),
        ("tool_measurement", t.TOOL_EVENT_TYPE_MEASURED),
    ]
    got = await read_until(call, lambda got: len(events(got)) >= len(wanted))
    call.cancel()
    assert events(got) == wanted
    seen = changes(got)
    sequences = [c.sequence for c in seen]
    assert sequences == sorted(set(sequences))  # commit order, each once
    status = [e for c in seen for e in c.events if e.type == t.TOOL_EVENT_TYPE_STATUS_CHANGED]
    assert [(e.from_status, e.to_status) for e in status] == [
        (inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE, inst_pb.TOOL_INSTANCE_STATUS_IN_USE),
        (inst_pb.TOOL_INSTANCE_STATUS_IN_USE, inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE),
    ]
    opened = seen[0]
    assert opened.entity_id == usage.id and opened.operation == common_pb2.CHANGE_OPERATION_CREATE
    assert opened.entity["machine_id"] == "MILL-7" and opened.events[0].machine_id == "MILL-7"
    assert [e.counters for c in seen for e in c.events if e.type == t.TOOL_EVENT_TYPE_PREWARNING_REACHED] == [["parts"]]

    # The client went away after the second change; resuming from its cursor gives exactly what followed.
    second = next(c for c in seen if c.sequence == sequences[1])
    resumed = stream(edge, tool_instance_id=instance.id, cursor=second.cursor)
    again = await read_until(resumed, lambda got: len(changes(got)) >= len(seen) - 2)
    resumed.cancel()
    assert [c.sequence for c in changes(again)] == sequences[2:]

    # A resume from the start's bookmark replays them all, once.
    from_start = stream(edge, tool_instance_id=instance.id, cursor=start.cursor)
    replay = await read_until(from_start, lambda got: len(changes(got)) >= len(seen))
    from_start.cancel()
    assert [c.sequence for c in changes(replay)] == sequences


async def test_filters_by_kind_and_machine_and_bookmarks_while_nothing_matches(edge: Edge) -> None:
    mill, lathe = f"M-{uuid.uuid4().hex[:6]}", f"L-{uuid.uuid4().hex[:6]}"
    on_mill = await edge.make.instance()
    await edge.make.preset(tool_instance_id=on_mill.id, machine_id=mill)
    call = stream(edge, machine_id=mill, entity_types=["tool_usage", "tool_instance"])
    await read_until(call, lambda got: len(got) == 1)
    await edge.make.usage(machine_id=lathe)  # another machine: not delivered
    await edge.make.item()  # another kind
    mine = await edge.make.usage(tool_instance_id=on_mill.id, machine_id=mill)
    got = await read_until(call, lambda got: any(c.entity_id == mine.id for c in changes(got)))
    delivered = changes(got)
    assert {c.entity_type for c in delivered} <= {"tool_usage", "tool_instance"}
    assert all(c.entity["machine_id"] == mill for c in delivered if c.entity_type == "tool_usage")
    # Instance changes of a tool preset on the mill come too (its status went IN_USE).
    more = await read_until(call, lambda got: any(m.HasField("bookmark") for m in got))
    call.cancel()
    instance_changes = [c for c in changes(got + more) if c.entity_type == "tool_instance"]
    assert [c.entity_id for c in instance_changes] == [on_mill.id]
    bookmark = next(m for m in more if m.HasField("bookmark"))
    assert bookmark.bookmark.sequence >= max(c.sequence for c in delivered)

    bad = stream(edge, entity_types=["tool_itme"], tool_instance_id="x")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await bad.read()
    problem = failure(refused.value)
    assert problem.code == grpc.StatusCode.INVALID_ARGUMENT
    assert set(problem.fields) == {"entity_types", "tool_instance_id"}


async def _expect_error(call: Any) -> Any:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async with asyncio.timeout(15):
            while True:
                if await call.read() is grpc.aio.EOF:
                    break
    return failure(info.value)


@asynccontextmanager
async def serving(db_url: str, **options: Any) -> AsyncIterator[Edge]:
    edges = start_edge(db_url, **options)
    try:
        yield await anext(edges)
    finally:
        await edges.aclose()


@pytest.fixture(params=["sqlite", "postgres"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield str(tmp_path / "edge.db")
        return
    async with fresh_pg_database(request.getfixturevalue("pg_url")) as url:
        yield url


async def test_resume_after_the_server_restarts_nothing_missed_nothing_twice(db_url: str) -> None:
    watcher = None
    try:
        async with serving(db_url) as edge:
            watcher = grpc.aio.insecure_channel(edge.address)  # the client's own channel outlives the server
            call = stream(edge, watcher)
            await read_until(call, lambda got: len(got) == 1)
            first = await edge.make.item()
            got = await read_until(call, lambda got: any(c.entity_id == first.id for c in changes(got)))
            last_cursor = [m for m in got if m.changes][-1].cursor
            seen = [c.sequence for c in changes(got)]
            stopping = asyncio.create_task(_expect_error(call))
        ended = await stopping  # the server told the watcher it was stopping
        assert (ended.code, ended.reason) == (grpc.StatusCode.UNAVAILABLE, "SHUTTING_DOWN")
    finally:
        if watcher is not None:
            await watcher.close()

    async with serving(db_url) as edge:
        # Written while the client was away, by the restarted server (a new admin is bootstrapped too).
        made = [await edge.make.item() for _ in range(3)]
        call = stream(edge, cursor=last_cursor)
        got = await read_until(call, lambda got: any(c.entity_id == made[-1].id for c in changes(got)))
        call.cancel()
        after = [c.sequence for c in changes(got)]
        assert not set(after) & set(seen)
        async with edge.store.read() as tx:
            _, everything = await tx.change_page(seen[-1], [], 1000)
        assert after == [c.sequence for c in everything if c.sequence <= after[-1]]
        assert {made[0].id, made[1].id, made[2].id} <= {c.entity_id for c in changes(got)}


async def test_cursors_from_another_store_or_older_than_kept_or_ahead_are_expired(tmp_path: Path) -> None:
    other_db, db = tmp_path / "other.db", tmp_path / "edge.db"
    async with serving(str(other_db)) as other:
        call = stream(other)
        (foreign,) = await read_until(call, lambda got: len(got) == 1)
        call.cancel()
    async with serving(str(db)) as edge:
        refused = await _expect_error(stream(edge, cursor=foreign.cursor))
        assert (refused.code, refused.reason) == (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED")
        assert "another store" in refused.message and "watch from now" in refused.message
        malformed = await _expect_error(stream(edge, cursor="not-a-cursor"))
        assert (malformed.code, malformed.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["cursor"])

        call = stream(edge)
        (old,) = await read_until(call, lambda got: len(got) == 1)
        call.cancel()
        for _ in range(3):
            await edge.make.item()
    # The log is compacted up to here (as a retention job would): the old cursor points before what is kept.
    with sqlite3.connect(db) as conn:
        conn.execute("DELETE FROM changes WHERE seq <= (SELECT max(seq) - 2 FROM changes)")
    async with serving(str(db)) as edge:
        expired = await _expect_error(stream(edge, cursor=old.cursor))
        assert (expired.code, expired.reason) == (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED")
        assert "no longer keeps" in expired.message and int(expired.metadata["oldest_sequence"]) > 0


async def test_a_restored_older_copy_refuses_a_cursor_ahead_of_it(tmp_path: Path) -> None:
    db, backup = tmp_path / "edge.db", tmp_path / "backup.db"
    async with serving(str(db)) as edge:
        call = stream(edge)  # the first watch names the store's change log
        await read_until(call, lambda got: len(got) == 1)
        call.cancel()
        await edge.make.item()
    with sqlite3.connect(db) as conn:  # a consistent copy of the stopped store
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        with sqlite3.connect(backup) as copy:
            conn.backup(copy)
    async with serving(str(db)) as edge:
        call = stream(edge)
        await read_until(call, lambda got: len(got) == 1)
        await edge.make.item()
        got = await read_until(call, lambda got: len(changes(got)) >= 1)
        call.cancel()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, db)
    async with serving(str(db)) as edge:
        ahead = await _expect_error(stream(edge, cursor=got[-1].cursor))
        assert (ahead.code, ahead.reason) == (grpc.StatusCode.OUT_OF_RANGE, "CURSOR_EXPIRED")
        assert "restored" in ahead.message


async def test_a_slow_consumer_is_told_and_resumes_from_its_cursor(tmp_path: Path) -> None:
    async with serving(str(tmp_path / "edge.db"), stream_stall_s=0.5) as edge:
        # A client with a small, fixed receive window, so a reader that stops reading stops the server's writes.
        options = [("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16 * 1024)]
        async with grpc.aio.insecure_channel(edge.address, options=options) as channel:
            call = stream(edge, channel)
            (start,) = await read_until(call, lambda got: len(got) == 1)
            items = edge.use_cases.entities["tool_item"]
            made = []
            for n in range(150):
                made.append(
                    await items.create(
                        {
                            "name": f"slow {n}",
                            "description": "d" * 1500,
                            "manufacturer": "Acme",
                            "part_number": f"PN-{uuid.uuid4().hex}",
                            "tool_type": ToolType.END_MILL,
                            "geometry": {"DC": 10, "NOF": 4, "OAL": 72},
                            "tags": [],
                        },
                        entity_id=None,
                        caller=Caller(),
                    )
                )
            await asyncio.sleep(2)  # the client reads nothing meanwhile
            received: list[Msg] = []
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async with asyncio.timeout(30):
                    while (message := await call.read()) is not grpc.aio.EOF:
                        received.append(message)
            slow = failure(info.value)
            assert (slow.code, slow.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOW_CONSUMER")
            assert "reconnect with the last cursor" in slow.message
        delivered = changes(received)
        assert len(delivered) < len(made)  # it was stopped part way
        resumed = stream(edge, cursor=(received or [start])[-1].cursor)
        rest = await read_until(resumed, lambda got: any(c.entity_id == str(made[-1].id) for c in changes(got)))
        resumed.cancel()
        ids = [c.entity_id for c in delivered + changes(rest)]
        assert ids == [str(m.id) for m in made]  # everything, once, in order


async def test_watchers_sharing_the_tail_and_watchers_behind_it_see_the_same_changes_once(edge: Edge) -> None:
    """Watchers that keep up share one decoded tail of the log; one behind it reads its own pages until it joins.
    With a tail of 10 changes and pages of 4: a watcher following live, one started later from the same cursor
    (behind the tail), and one from now, each get every change after its cursor once, in order, with the same
    tool events (the closes need the previous snapshot, carried across pages)."""
    from server.usecases.change_stream import ChangeStream, StreamItem, WatchFilter

    small = ChangeStream(edge.store, page=4, tail_kept=10, poll_s=0.05)
    origin = await small.start("")

    until = {"live": 1 << 62}  # where the followers stop: set once the writes are done

    async def follow(after: int, stop: str, got: list[StreamItem]) -> None:
        async for batch in small.watch(WatchFilter(), after, None, bookmark_s=0.2):
            got.extend(item for item in batch if item.change is not None)
            if batch[-1].sequence >= until[stop]:
                return

    async def open_and_close(instance_id: str) -> None:
        usage = await edge.make.usage(tool_instance_id=instance_id, machine_id="MILL-T")
        usage.end_time.GetCurrentTime()
        await edge.stubs.usages.UpdateToolUsage(usage_pb.UpdateToolUsageRequest(tool_usage=usage))

    instance = await edge.make.instance()
    live: list[StreamItem] = []
    live_task = asyncio.create_task(follow(origin, "live", live))
    for _ in range(8):  # usage CREATE, instance -> IN_USE, usage UPDATE (closed), instance -> AVAILABLE
        await open_and_close(instance.id)
    after_first = until["later"] = await small.start("")
    later: list[StreamItem] = []
    await asyncio.wait_for(follow(origin, "later", later), 15)
    from_now: list[StreamItem] = []
    now_task = asyncio.create_task(follow(after_first, "live", from_now))
    for _ in range(2):
        await open_and_close(instance.id)
    end = until["live"] = await small.start("")
    await asyncio.wait_for(asyncio.gather(live_task, now_task), 15)

    def seen(items: list[StreamItem]) -> list[tuple[int, str, list[str]]]:
        assert items and all(i.change is not None for i in items)
        return [(i.sequence, i.change.entity_type, [e.type.value for e in i.events]) for i in items]  # type: ignore[union-attr]

    everything = seen(live)
    sequences = [s for s, _, _ in everything]
    assert sequences == sorted(set(sequences)) and sequences[0] > origin and sequences[-1] == end
    async with edge.store.read() as tx:  # exactly the log's changes in the range, none skipped
        _, logged = await tx.change_page(origin, (), 1000)
    assert sequences == [c.sequence for c in logged if c.sequence <= end]
    assert seen(later) == [e for e in everything if e[0] <= after_first]
    assert seen(from_now) == [e for e in everything if e[0] > after_first]
    usage_events = [events for _, kind, events in everything if kind == "tool_usage"]
    assert usage_events == [["USAGE_OPENED"], ["USAGE_CLOSED"]] * 10
    status = [events for _, kind, events in everything if kind == "tool_instance" and events]
    assert status == [["STATUS_CHANGED"]] * 20
