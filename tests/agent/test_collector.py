"""The OPC UA collector against real asyncua servers (the simulator), one end-to-end test per profile (cnc and
umati here, sinumerik and custom in test_collector_profiles.py), and failures that cannot hide. Restarts of the
controller and of the agent (SIGKILL) and the timing model are in test_collector_timing.py.

The tracker's timing rules are tested in test_tracker.py with explicit timestamps. Here the simulated
controllers stamp their values with a clock the test moves (ControllerClock), so the times and durations the
collector records follow from the steps, not from how fast a loaded machine ran the test; steps are ordered by
waiting on real state (the store, the collector's status) with a deadline, never by sleeping."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import free_port
from google.protobuf.timestamp_pb2 import Timestamp
from smooth.core.v1 import tool_usage_pb2

from agent.collector import session
from agent.collector.collector import Collector
from agent.config import CollectorConfig, MachineConfig
from agent.simulator.server import CncSimulator, SimMachine
from agent.simulator.timeline import Step
from agent.supervisor import Backoff, Supervisor
from agent.usage_tail import describe
from server.domain import failpoints
from server.domain.entities import ToolInstanceStatus, ToolType, ToolUsage
from server.store import engine, migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now
from server.usecases.usage_recording import UsageRecorder

SYSTEM = Caller(peer="test")
_CLI = [sys.executable, "-m", "agent.cli"]


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something true; fail after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class ControllerClock:
    """A simulated controller's clock, moved only by the test. It runs an hour ahead of ours: the collector's own
    keep-alive reads (the server's CurrentTime, our clock) then never overtake the steps' times, and the tracker
    runs on the controller's SourceTimestamps alone."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)

    def __call__(self) -> datetime:
        return self.now

    def fresh_start(self) -> datetime:
        """A base time later than anything stamped so far (simulators are shared by a module's tests)."""
        self.now += timedelta(minutes=1)
        return self.now


async def play(
    sim: CncSimulator, clock: ControllerClock, name: str, base: datetime, script: list[tuple[float, Step]]
) -> None:
    """Apply each step as the controller's clock reads `base` + its offset in seconds."""
    for offset, step in script:
        clock.now = base + timedelta(seconds=offset)
        await sim.apply(name, step)


@pytest.fixture(scope="module")
def clock() -> ControllerClock:
    return ControllerClock()


async def serve(clock: ControllerClock, *machines: SimMachine) -> AsyncIterator[CncSimulator]:
    """A module's simulator (one per module: a server takes seconds to start) on the controller's clock."""
    async with CncSimulator(list(machines), f"opc.tcp://127.0.0.1:{free_port()}/sim/", clock=clock) as simulator:
        yield simulator


@pytest.fixture(scope="module")
async def sim(clock: ControllerClock) -> AsyncIterator[CncSimulator]:
    async for simulator in serve(
        clock, SimMachine("M1", "cnc", []), SimMachine("M2", "cnc", []), SimMachine("U1", "umati", [], tools=6)
    ):
        yield simulator


def machine(sim: CncSimulator, name: str, **overrides: Any) -> MachineConfig:
    index = [m.name for m in sim.machines].index(name) + 1
    profile = next(m.profile for m in sim.machines if m.name == name)
    fields: dict[str, Any] = dict(
        machine_id=name,
        endpoint=sim.endpoint,
        profile=profile,
        channel=f"Channel{index}" if profile == "cnc" else "",
        spindle=f"Spindle{index}" if profile == "cnc" else "",
        machine=name if profile == "umati" else "",
        publishing_interval_ms=50,
        # Generous: a loaded test machine must not look like a dead link (that would mark usages interrupted).
        watchdog_s=10,
        reconnect_max_s=0.5,
    )
    fields.update(overrides)
    return MachineConfig(**fields)


async def store_with_presets(
    path: Path, machine_id: str, tool_numbers: list[int]
) -> tuple[Store, UseCases, dict[int, Any]]:
    store = Store(str(path))
    await store.__aenter__()
    await migrate.upgrade(store.engine)
    uc = build(store)
    item = await uc.entities["tool_item"].create(
        {"name": "mill", "tool_type": ToolType.END_MILL, "geometry": {"DC": 10, "NOF": 4, "OAL": 70}},
        entity_id=None,
        caller=SYSTEM,
    )
    instances = {}
    for number in tool_numbers:
        instances[number] = await add_preset(uc, item.id, machine_id, number)
    return store, uc, instances


async def add_preset(uc: UseCases, item_id: Any, machine_id: str, number: int) -> Any:
    instance = await uc.entities["tool_instance"].create(
        {
            "tool_item_id": item_id,
            "serial_number": f"{machine_id}-T{number}-{os.urandom(3).hex()}",
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
    return instance


async def usages(store: Store, machine_id: str) -> list[ToolUsage]:
    uc = build(store)
    result = await uc.entities["tool_usage"].list(
        page_size=1000, page_token="", filter_text=f'machine_id = "{machine_id}"', order_by="start_time"
    )
    return [u for u in result.items if isinstance(u, ToolUsage)]


def stays(store: Store, machine_id: str, count: int, *, closed: int) -> Callable[[], Awaitable[list[ToolUsage] | None]]:
    """A check for `eventually`: the machine's usages once there are `count` of them, the first `closed` ended."""

    async def check() -> list[ToolUsage] | None:
        found = await usages(store, machine_id)
        done = len(found) == count and all(u.end_time is not None for u in found[:closed])
        return found if done else None

    return check


async def reset(sim: CncSimulator, name: str) -> None:
    await sim.apply(name, Step(0, tool=0, speed_rpm=0.0, program="", program_running=False, operation_mode=2))


async def connected(collector: Collector, machine_id: str) -> None:
    async def check() -> bool:
        return collector.live_statuses()[machine_id].connected

    await eventually(check, what=f"{machine_id} connected")


async def test_cnc_profile(sim: CncSimulator, clock: ControllerClock, tmp_path: Path) -> None:
    await reset(sim, "M1")  # AUTOMATIC, no tool, no program
    store, uc, instances = await store_with_presets(tmp_path / "cnc.db", "M1", [1, 2])
    try:
        # A long publishing interval: the quick T2 -> T1 -> T0 at the end arrives within one publish response,
        # grouped by monitored item, and must be neither collapsed nor reordered.
        config = machine(sim, "M1", publishing_interval_ms=500)
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, "M1")
            base = clock.fresh_start()
            await play(
                sim,
                clock,
                "M1",
                base,
                [
                    (0.5, Step(0, program="O1")),
                    (1.0, Step(0, tool=1)),
                    (1.5, Step(0, program_running=True)),  # cycle 1
                    (2.0, Step(0, program_running=False)),
                    (2.5, Step(0, operation_mode=1)),  # MDA
                    (3.0, Step(0, program_running=True)),  # cycle 2
                    (3.5, Step(0, speed_rpm=6000.0)),  # the spindle's ActStatus turns InTargetArea with it
                    (5.0, Step(0, speed_rpm=0.0)),
                    (6.0, Step(0, tool=2)),  # the program still runs: no start, no cycle for T2
                    (7.0, Step(0, tool=1)),
                    (7.001, Step(0, tool=0)),
                ],
            )
            first, second, third = await eventually(stays(store, "M1", 3, closed=3), what="three closed usages")

        def at(seconds: float) -> datetime:
            return base + timedelta(seconds=seconds)

        assert [u.tool_instance_id for u in (first, second, third)] == [
            instances[1].id,
            instances[2].id,
            instances[1].id,
        ]
        assert (first.start_time, first.end_time, first.program_name) == (at(1), at(6), "O1")
        assert first.usage_metrics == {
            "source": "COLLECTOR",
            "tool_number": 1,
            "time_in_spindle_s": 5.0,
            "spindle_runtime_s": 1.5,
            "max_speed_rpm": 6000.0,
            "programs": ["O1"],
            "cycles": 2,
            "operation_modes": ["AUTOMATIC", "MDA"],
        }
        assert (second.start_time, second.end_time) == (at(6), at(7))
        assert second.usage_metrics["spindle_runtime_s"] == 0 and second.usage_metrics["cycles"] == 0
        assert second.usage_metrics["operation_modes"] == ["MDA"]
        assert (third.start_time, third.end_time, third.usage_metrics["tool_number"]) == (at(7), at(7.001), 1)
        assert len({first.id, second.id, third.id}) == 3
    finally:
        await store.__aexit__(None, None, None)


async def test_umati_profile(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "TOOL_BROWSE_S", 0.2)
    store, uc, _ = await store_with_presets(tmp_path / "umati.db", "U1", [3, 5, 11])
    try:
        async with Collector(CollectorConfig((machine(sim, "U1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "U1")
            base = clock.fresh_start()
            await play(
                sim,
                clock,
                "U1",
                base,
                [
                    (1.0, Step(0, tool=3)),  # the active tool is the one whose LastUsage changed last
                    (1.5, Step(0, program="PART-A", program_running=True)),  # OperationDuration counts from here
                    (2.0, Step(0, speed_rpm=1.0)),  # IsRotating
                    (3.0, Step(0, speed_rpm=0.0, parts=2)),
                    (4.0, Step(0, program_running=False)),
                    (5.0, Step(0, tool=5)),
                ],
            )
            # T11 is loaded into the magazine after the agent connected: it is found by browsing, and its
            # LastUsage, read when it is subscribed, says when it came in.
            await sim.add_tool("U1", 11)
            await play(sim, clock, "U1", base, [(6.0, Step(0, tool=11))])
            t3, t5, t11 = await eventually(stays(store, "U1", 3, closed=2), what="T3, T5 closed and T11 open")
        assert (t3.start_time, t3.end_time) == (base + timedelta(seconds=1), base + timedelta(seconds=5))
        assert t3.usage_metrics == {
            "source": "COLLECTOR",
            "tool_number": 3,
            "time_in_spindle_s": 4.0,
            "spindle_runtime_s": 1.0,  # umati reports rotation, not speed: no max_speed_rpm (issue 10, case 6)
            "programs": ["PART-A"],
            "parts": 2,
            "cycles": 1,
            "operation_modes": ["AUTOMATIC"],
            "operation_s": 2.5,
        }
        assert t5.usage_metrics["tool_number"] == 5 and t5.usage_metrics["time_in_spindle_s"] == 1.0
        assert t11.usage_metrics["tool_number"] == 11 and t11.start_time == base + timedelta(seconds=6)
        assert t11.end_time is None and "interrupted" not in t11.usage_metrics
    finally:
        await store.__aexit__(None, None, None)


async def test_a_final_save_that_fails_is_logged_with_what_was_not_saved(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(session, "HEARTBEAT_S", 3600.0)  # only the final save would write the last state
    monkeypatch.setattr(engine, "BUSY_TIMEOUT_MS", 200)  # the locked database refuses the save quickly
    await reset(sim, "M2")
    db = tmp_path / "save.db"
    store, uc, _ = await store_with_presets(db, "M2", [1])
    blocker = sqlite3.connect(db, timeout=30)
    try:
        with structlog.testing.capture_logs() as logs:
            async with Collector(CollectorConfig((machine(sim, "M2"),)), uc.recorder, utc_now) as collector:
                await connected(collector, "M2")
                base = clock.fresh_start()
                await play(sim, clock, "M2", base, [(1.0, Step(0, tool=1))])
                await eventually(stays(store, "M2", 1, closed=0), what="T1 open")
                await play(sim, clock, "M2", base, [(2.0, Step(0, speed_rpm=3000.0))])

                async def spindle_seen() -> bool:
                    return collector.live_statuses()["M2"].last_data_at == base + timedelta(seconds=2)

                await eventually(spindle_seen, what="the spindle start applied")
                blocker.execute("BEGIN IMMEDIATE")  # another writer holds the database as the agent stops
        blocker.rollback()
        [failed] = [e for e in logs if e["event"] == "collector.final_save_failed"]
        assert failed["log_level"] == "error" and failed["machine_id"] == "M2"
        assert failed["observed_until"] == (base + timedelta(seconds=2)).isoformat()
        assert failed["saved_until"] == (base + timedelta(seconds=1)).isoformat()
        assert failed["open_tool_number"] == 1 and "unavailable" in failed["error"]
        saved = await uc.recorder.load_state("M2")
        assert saved is not None and saved["last_seen"] == (base + timedelta(seconds=1)).isoformat()
    finally:
        blocker.close()
        await store.__aexit__(None, None, None)


class _BrokenRecorder(UsageRecorder):
    """A recorder with a bug: every write raises what no caller expects."""

    async def apply(self, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("a bug in the recorder")


async def test_an_unexpected_error_is_logged_and_the_session_restarted_not_retried_as_an_outage(
    sim: CncSimulator, tmp_path: Path
) -> None:
    """Issue 14, item 3: a bug is not an outage (no reconnect loop, not a failed attempt) and not a silently dead
    machine either: the supervisor logs it with its traceback and runs the session again after a backoff."""
    await reset(sim, "M2")
    store, uc, _ = await store_with_presets(tmp_path / "bug.db", "M2", [1])
    recorder = _BrokenRecorder(store, uc.entities["tool_usage"], utc_now)
    supervisor = Supervisor(backoff=Backoff(first_s=0.05, max_s=0.1))
    try:
        with structlog.testing.capture_logs() as logs:
            async with Collector(CollectorConfig((machine(sim, "M2"),)), recorder, utc_now, supervisor) as collector:

                async def crashed_twice() -> bool:
                    return supervisor.restarts.get(("collector", "M2"), 0) >= 2

                await eventually(crashed_twice, what="the session to be restarted and fail again")
                error = collector.live_statuses()["M2"].last_error
                assert "unexpected error" in error and "restarting" in error and "KeyError" in error
                assert collector.live_statuses()["M2"].failed_attempts == 0  # not retried as an outage
        crashed = [e for e in logs if e["event"] == "collector.crashed"]
        assert len(crashed) >= 2 and crashed[0]["task"] == "M2" and crashed[0]["log_level"] == "error"
        assert isinstance(crashed[0]["exc_info"], KeyError) and crashed[0]["action"] == "restarting"
        assert [e for e in logs if e["event"] == "collector.restarted" and e["task"] == "M2"]
        assert not [e for e in logs if e["event"] == "collector.disconnected"]
    finally:
        await store.__aexit__(None, None, None)


async def test_a_session_killed_by_a_fault_is_restarted_and_collects(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    await reset(sim, "M1")
    store, uc, _ = await store_with_presets(tmp_path / "fault.db", "M1", [1])
    supervisor = Supervisor(backoff=Backoff(first_s=0.05))
    failpoints.arm("collector-session=raise")
    try:
        with structlog.testing.capture_logs() as logs:
            async with Collector(CollectorConfig((machine(sim, "M1"),)), uc.recorder, utc_now, supervisor) as collector:
                await connected(collector, "M1")
                await play(sim, clock, "M1", clock.fresh_start(), [(1.0, Step(0, tool=1))])
                await eventually(stays(store, "M1", 1, closed=0), what="T1 recorded after the restart")
                assert collector.counts()["M1"].usages_opened == 1
        (crashed,) = [e for e in logs if e["event"] == "collector.crashed"]
        assert isinstance(crashed["exc_info"], failpoints.InjectedFault) and crashed["task"] == "M1"
        assert [e["restarts"] for e in logs if e["event"] == "collector.restarted"] == [1]
    finally:
        failpoints.disarm("collector-session")
        await store.__aexit__(None, None, None)


def test_usage_tail_shows_a_speed_only_where_the_machine_reports_one() -> None:
    def closed(metrics: dict[str, Any]) -> tool_usage_pb2.ToolUsage:
        usage = tool_usage_pb2.ToolUsage(
            machine_id="U1", start_time=Timestamp(seconds=0), end_time=Timestamp(seconds=4)
        )
        usage.usage_metrics.update({"tool_number": 3, "time_in_spindle_s": 4.0, "spindle_runtime_s": 1.0, **metrics})
        return usage

    assert describe(closed({})).endswith("in spindle 4.0 s, running 1.0 s")  # umati: no speed, no "max 0 rpm"
    assert describe(closed({"max_speed_rpm": 6000.0, "parts": 2})).endswith("running 1.0 s, max 6000 rpm, 2 parts")
