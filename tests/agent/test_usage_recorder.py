"""The collector's group commit (UsageRecorder): many machines' events written in one transaction with the same
rules as one write, a bad request failing alone, cancellation never leaving a machine's saved state behind what
was committed, and T numbers without a preset kept until one appears. Real SQLite files and a real PostgreSQL
database; the tracker is driven with explicit timestamps and the recorder's clock is injected."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import fresh_pg_database

from agent.collector.tracker import Tracker
from server.domain.collector import UsageClosed
from server.domain.entities import ToolInstanceStatus, ToolType, ToolUsage
from server.domain.errors import InvalidArgument
from server.store import migrate
from server.store.repository import Store
from server.store.tables import changes
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now
from server.usecases.usage_recording import ATTACH_WINDOW, UsageRecorder

SYSTEM = Caller(peer="test")
T0 = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)


@asynccontextmanager
async def recorder_store(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    machines: list[str],
    clock: Callable[[], datetime] = utc_now,
) -> AsyncIterator[tuple[Store, UseCases]]:
    """A migrated store with presets T1 and T2 on every machine in `machines`; the use cases run on `clock`."""
    if backend == "postgres":
        async with fresh_pg_database(request.getfixturevalue("pg_url")) as url, Store(url) as store:
            yield await _seed(store, machines, clock)
    else:
        async with Store(str(tmp_path / "edge.db")) as store:
            yield await _seed(store, machines, clock)


async def _seed(store: Store, machines: list[str], clock: Callable[[], datetime]) -> tuple[Store, UseCases]:
    await migrate.upgrade(store.engine)
    uc = build(store, clock)
    item = await uc.entities["tool_item"].create(
        {"name": "mill", "tool_type": ToolType.END_MILL, "geometry": {"DC": 10, "NOF": 4, "OAL": 70}},
        entity_id=None,
        caller=SYSTEM,
    )
    for machine_id in machines:
        for number in (1, 2):
            instance = await uc.entities["tool_instance"].create(
                {
                    "tool_item_id": item.id,
                    "serial_number": f"{machine_id}-T{number}",
                    "status": ToolInstanceStatus.AVAILABLE,
                },
                entity_id=None,
                caller=SYSTEM,
            )
            await uc.entities["tool_preset"].create(
                {
                    "name": f"T{number}",
                    "tool_instance_id": instance.id,
                    "machine_id": machine_id,
                    "parameters": {"tool_number": number},
                },
                entity_id=None,
                caller=SYSTEM,
            )
    return store, uc


async def _usages(uc: UseCases) -> list[ToolUsage]:
    page = await uc.entities["tool_usage"].list(page_size=1000, page_token="", filter_text="", order_by="start_time")
    return [u for u in page.items if isinstance(u, ToolUsage)]


async def _write_tx_ids(store: Store) -> set[uuid.UUID]:
    async with store.read() as tx:
        rows = await tx._execute(sa.select(changes.c.tx_id).where(changes.c.entity_type == "tool_usage").distinct())
        return {r[0] for r in rows.all()}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_many_machines_are_written_in_one_transaction_with_every_rule(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    machines = [f"M{i:02d}" for i in range(20)]
    async with recorder_store(request, backend, tmp_path, machines) as (store, uc):
        trackers = [*machines, "NOPRESET"]

        async def submit(tracker: Tracker, steps: list[int], at: datetime) -> list[Any]:
            events = []
            for offset, number in enumerate(steps):
                events += tracker.tool(number, at + timedelta(seconds=offset))
            return await uc.recorder.apply(tracker.machine_id, events, tracker.state.to_json())

        opened = {m: Tracker(m) for m in trackers}
        await asyncio.gather(
            *(uc.recorder.apply(m, t.reconnected(1, True, 5000.0, T0), t.state.to_json()) for m, t in opened.items())
        )
        # Then T1 -> T2 -> T1 -> T2 in one request per machine (a usage opened and closed within one batch), all
        # machines at once.
        before = await _write_tx_ids(store)
        results = await asyncio.gather(*(submit(t, [2, 1, 2], T0 + timedelta(minutes=1)) for t in opened.values()))
        after = await _write_tx_ids(store)
        # Group commit: 21 requests of 6 events each, in batches of whole requests up to MAX_BATCH_EVENTS events
        # (a batch is bounded: on SQLite it holds the event loop while it runs).
        per_batch = -(-uc.recorder.MAX_BATCH_EVENTS // 6)
        assert len(after - before) == -(-len(opened) // per_batch), "machines' writes share transactions"

        for machine_id, written in zip(opened, results, strict=True):
            # close T1, open+close T2, open+close T1, open T2: 6 writes per machine with presets, none without
            assert len(written) == (0 if machine_id == "NOPRESET" else 6)
        usages = await _usages(uc)
        by_machine: dict[str, list[ToolUsage]] = {}
        for usage in usages:
            by_machine.setdefault(usage.machine_id, []).append(usage)
        assert sorted(by_machine) == machines
        for machine_id in machines:
            stays = sorted(by_machine[machine_id], key=lambda u: u.start_time)
            assert [u.usage_metrics["tool_number"] for u in stays] == [1, 2, 1, 2]
            assert [u.end_time is not None for u in stays] == [True, True, True, False]
            assert [u.version for u in stays] == [2, 2, 2, 1]
            assert stays[1].usage_metrics["time_in_spindle_s"] == 1.0
        # The T number without a preset is kept, not lost.
        async with store.read() as tx:
            unmatched = await tx.unmatched(machine_id="NOPRESET")
        assert [(r["tool_number"], r["end_time"] is not None) for r in unmatched] == [
            (1, True),
            (2, True),
            (1, True),
            (2, False),
        ]
        # Saved state is each machine's newest, and the audit chain is whole.
        for machine_id, tracker in opened.items():
            saved = await uc.recorder.load_state(machine_id)
            assert saved == tracker.state.to_json()
        assert (await uc.audit.verify()).ok
        # Replaying the same requests (a crash before the tracker learnt of the commit) writes nothing new.
        count = len(usages)
        replay = Tracker("M00")
        replay.reconnected(1, True, 5000.0, T0)
        await submit(replay, [2, 1, 2], T0 + timedelta(minutes=1))
        assert len(await _usages(uc)) == count


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_a_bad_request_fails_alone(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> None:
    machines = ["A", "B", "C"]
    async with recorder_store(request, backend, tmp_path, machines) as (_store, uc):
        trackers = {m: Tracker(m) for m in machines}
        opening = {m: t.reconnected(1, False, 0.0, T0) for m, t in trackers.items()}
        await asyncio.gather(*(uc.recorder.apply(m, opening[m], trackers[m].state.to_json()) for m in machines))
        closes = {m: trackers[m].tool(0, T0 + timedelta(seconds=30)) for m in machines}
        bad = closes["B"][0]
        assert isinstance(bad, UsageClosed)
        closes["B"] = [UsageClosed(bad.usage_id, bad.tool_number, bad.start, bad.end, bad.program, {"parts": -1})]
        results = await asyncio.gather(
            *(uc.recorder.apply(m, closes[m], trackers[m].state.to_json()) for m in machines), return_exceptions=True
        )
        assert isinstance(results[1], InvalidArgument)
        assert "usage_metrics.parts" in {v.field for v in results[1].violations}
        assert [len(r) for r in results if isinstance(r, list)] == [1, 1]
        closed = {u.machine_id: u.end_time is not None for u in await _usages(uc)}
        assert closed == {"A": True, "B": False, "C": True}
        # B's state was not saved: its saved state still has the usage open.
        saved = await uc.recorder.load_state("B")
        assert saved is not None and saved["tool"] == 1


async def _recorder_state(recorder: UsageRecorder, *, writing: bool, queued: int) -> None:
    """Wait (10 s at most) until the recorder's writer is busy (or not) with `queued` requests waiting behind it.

    The writer task and the queue are the recorder's own (private) state: no public call tells them, and a sleep
    would only guess.
    """
    for _ in range(1000):
        busy = recorder._writer is not None and not recorder._writer.done()
        if busy == writing and len(recorder._queue) == queued:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the recorder's writer never was {'busy' if writing else 'idle'} with {queued} queued")


async def test_cancellation_withdraws_what_was_not_taken_and_reports_what_was_committed(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with recorder_store(request, "sqlite", tmp_path, ["A", "B"]) as (_store, uc):
        a, b = Tracker("A"), Tracker("B")
        blocker = sqlite3.connect(tmp_path / "edge.db", timeout=30)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database: the recorder's batch waits
        committed: list[list[Any]] = []
        try:
            task_a = asyncio.create_task(
                uc.recorder.apply("A", a.reconnected(1, False, 0.0, T0), a.state.to_json(), on_commit=committed.append)
            )
            await _recorder_state(uc.recorder, writing=True, queued=0)  # the writer took A and waits for the database
            task_b = asyncio.create_task(uc.recorder.apply("B", b.reconnected(1, False, 0.0, T0), b.state.to_json()))
            await _recorder_state(uc.recorder, writing=True, queued=1)  # B waits behind A
            task_b.cancel()  # not taken yet: withdrawn, never written
            task_a.cancel()  # taken: waits for the outcome, then re-raises
            for _ in range(10):  # let both cancellations be delivered: B ends, A keeps waiting for its outcome
                await asyncio.sleep(0)
            assert task_b.done() and not task_a.done()
        finally:
            blocker.rollback()
            blocker.close()
        with pytest.raises(asyncio.CancelledError):
            await task_a
        with pytest.raises(asyncio.CancelledError):
            await task_b
        assert len(committed) == 1 and len(committed[0]) == 1  # A's usage was written and A was told so
        assert {u.machine_id for u in await _usages(uc)} == {"A"}
        assert await uc.recorder.load_state("B") is None
        assert await uc.recorder.load_state("A") == a.state.to_json()


async def test_an_unknown_t_number_is_kept_and_attached_when_its_preset_appears(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    now = T0 + timedelta(hours=1)  # the recorder's clock reads `now`, which the test moves
    async with recorder_store(request, "sqlite", tmp_path, ["M1"], clock=lambda: now) as (_store, uc):
        t = Tracker("M1")
        events = t.reconnected(0, False, None, T0)
        events += t.tool(9, T0 + timedelta(seconds=10))  # no preset says what T9 is on M1
        events += t.tool(8, T0 + timedelta(seconds=40))  # nor T8
        events += t.tool(1, T0 + timedelta(seconds=70))
        written = await uc.recorder.apply("M1", events, t.state.to_json())
        assert len(written) == 1  # T1 opened; T9 and T8 are kept aside
        [m1] = await uc.recorder.statuses({})
        assert [(u.tool_number, u.intervals, u.first_seen, u.last_seen) for u in m1.unmatched] == [
            (8, 1, T0 + timedelta(seconds=40), T0 + timedelta(seconds=70)),
            (9, 1, T0 + timedelta(seconds=10), T0 + timedelta(seconds=40)),
        ]
        assert [u.usage_metrics["tool_number"] for u in await _usages(uc)] == [1]

        async def preset(number: int) -> uuid.UUID:
            item = await uc.entities["tool_item"].create(
                {"name": f"late T{number}", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
            )
            instance = await uc.entities["tool_instance"].create(
                {"tool_item_id": item.id, "serial_number": f"M1-T{number}", "status": ToolInstanceStatus.AVAILABLE},
                entity_id=None,
                caller=SYSTEM,
            )
            await uc.entities["tool_preset"].create(
                {
                    "name": f"T{number}",
                    "tool_instance_id": instance.id,
                    "machine_id": "M1",
                    "parameters": {"tool_number": number},
                },
                entity_id=None,
                caller=SYSTEM,
            )
            return instance.id

        t9 = await preset(9)  # an hour later: T9's stay becomes its usage
        late = [u for u in await _usages(uc) if u.usage_metrics["tool_number"] == 9]
        assert [(u.tool_instance_id, u.start_time, u.end_time) for u in late] == [
            (t9, T0 + timedelta(seconds=10), T0 + timedelta(seconds=40))
        ]
        assert late[0].usage_metrics["x-attached_late"] is True
        now = T0 + timedelta(seconds=70) + ATTACH_WINDOW + timedelta(seconds=1)
        await preset(8)  # too late: T8 may have meant another tool back then; it stays listed for an operator
        assert 8 not in {u.usage_metrics["tool_number"] for u in await _usages(uc)}
        [m1] = await uc.recorder.statuses({})
        assert [u.tool_number for u in m1.unmatched] == [8]


async def test_the_queue_depth_counts_machines_waiting_for_a_batch(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """`depth` (in the agent's write-queue metric): machines' requests queued and not yet taken by the writer."""
    machines = [f"Q{i}" for i in range(5)]
    async with recorder_store(request, "sqlite", tmp_path, machines) as (_store, uc):
        assert uc.recorder.depth == 0
        trackers = [Tracker(m) for m in machines]
        waiting = [
            asyncio.create_task(uc.recorder.apply(t.machine_id, t.reconnected(1, True, 5000.0, T0), t.state.to_json()))
            for t in trackers
        ]
        await asyncio.sleep(0)  # each request is queued; the writer they started has not run yet
        assert uc.recorder.depth == 5
        await asyncio.gather(*waiting)
        assert uc.recorder.depth == 0
