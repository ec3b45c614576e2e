"""The controller's own tool life beside ours (issue 12, item 5): a umati tool's ToolLife entries (OPC 40501-1
ToolLifeType) are read when its usage closes and stored as `x-controller_life_*` usage metrics.

End to end on a real asyncua server: the simulator counts its tools' ToolLife entries as a controller does (Time
while the spindle turns with the tool in, parts made with it, its loads), on a clock the test moves, so the
controller's figures follow from the steps."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
import structlog
from asyncua import ua
from test_collector import ControllerClock, connected, eventually, machine, play, serve, stays, store_with_presets

from agent.collector import session, tool_life
from agent.collector.collector import Collector
from agent.config import CollectorConfig
from agent.simulator.server import LIFE_PARTS, LIFE_TIME, LIFE_USAGES, CncSimulator, SimMachine, SimToolLife
from agent.simulator.timeline import Step
from server.domain.entities import ToolUsage
from server.usecases.entities import utc_now

T1_LIFE = (
    SimToolLife(LIFE_TIME, value=1.5, warning=2.0, limit=2.5),  # hours: 1.5 h used before the test
    SimToolLife(LIFE_USAGES, value=100, counting_up=False, start=100, limit=0),
    SimToolLife(LIFE_PARTS, value=10, limit=500),
)


@pytest.fixture(scope="module")
def clock() -> ControllerClock:
    return ControllerClock()


@pytest.fixture(scope="module")
async def sim(clock: ControllerClock) -> AsyncIterator[CncSimulator]:
    # T1 reports its life, T2 none; one machine per test, so each starts with the counters above.
    machines = [SimMachine(name, "umati", [], tools=2, tool_life={1: T1_LIFE}) for name in ("L1", "L2")]
    async for simulator in serve(clock, *machines):
        yield simulator


def controller_keys(usage: ToolUsage) -> dict[str, object]:
    return {k: v for k, v in usage.usage_metrics.items() if k.startswith("x-controller_life_")}


async def test_a_closed_usage_carries_the_controllers_tool_life_beside_ours(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    store, uc, _ = await store_with_presets(tmp_path / "life.db", "L1", [1, 2])
    try:
        async with Collector(CollectorConfig((machine(sim, "L1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "L1")
            base = clock.fresh_start()
            await play(
                sim,
                clock,
                "L1",
                base,
                [
                    (1.0, Step(0, tool=1)),
                    (1.2, Step(0, speed_rpm=1.0)),
                    (1.7, Step(0, speed_rpm=0.0, parts=1)),
                    (2.0, Step(0, tool=2)),
                ],
            )
            # The figures are read when the close is seen: the script goes on once it is recorded.
            await eventually(stays(store, "L1", 2, closed=1), what="T1 closed")
            await play(
                sim,
                clock,
                "L1",
                base,
                [(3.0, Step(0, tool=1)), (3.2, Step(0, speed_rpm=1.0)), (3.4, Step(0, speed_rpm=0.0))],
            )
            await eventually(stays(store, "L1", 3, closed=2), what="T2 closed")
            await play(sim, clock, "L1", base, [(4.0, Step(0, tool=2))])
            first, t2, second, _ = await eventually(stays(store, "L1", 4, closed=3), what="T1 closed again")
        # Ours as always; the controller's figures beside them (time in seconds, from its hours).
        assert first.usage_metrics["time_in_spindle_s"] == 1.0 and first.usage_metrics["spindle_runtime_s"] == 0.5
        assert first.usage_metrics["parts"] == 1
        assert controller_keys(first) == {
            "x-controller_life_time_s": 5400.5,
            "x-controller_life_time_warning_s": 7200.0,
            "x-controller_life_time_limit_s": 9000.0,
            "x-controller_life_time_up": True,
            "x-controller_life_usages": 99.0,
            "x-controller_life_usages_start": 100.0,
            "x-controller_life_usages_limit": 0.0,
            "x-controller_life_usages_up": False,
            "x-controller_life_usages_unit": "one",
            "x-controller_life_parts": 11.0,
            "x-controller_life_parts_limit": 500.0,
            "x-controller_life_parts_up": True,
            "x-controller_life_parts_unit": "one",
        }
        assert controller_keys(t2) == {}  # a tool without ToolLife entries gets no such keys
        # Compared: the controller's time grew by what we counted as spindle running time.
        assert second.usage_metrics["spindle_runtime_s"] == 0.2
        assert second.usage_metrics["x-controller_life_time_s"] == 5400.7
        assert second.usage_metrics["x-controller_life_usages"] == 98.0
    finally:
        await store.__aexit__(None, None, None)


async def test_a_failed_read_records_the_usage_without_the_controllers_figures(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # No time at all for the read: it times out, is logged, and the usage is recorded as it would be without it.
    monkeypatch.setattr(session, "TOOL_LIFE_READ_S", 0)
    store, uc, _ = await store_with_presets(tmp_path / "fail.db", "L2", [1, 2])
    try:
        with structlog.testing.capture_logs() as logs:
            async with Collector(CollectorConfig((machine(sim, "L2"),)), uc.recorder, utc_now) as collector:
                await connected(collector, "L2")
                base = clock.fresh_start()
                await play(sim, clock, "L2", base, [(1.0, Step(0, tool=1)), (2.0, Step(0, tool=2))])
                t1, _ = await eventually(stays(store, "L2", 2, closed=1), what="T1 closed")
        assert (t1.start_time, t1.end_time) == (base + timedelta(seconds=1), base + timedelta(seconds=2))
        assert t1.usage_metrics["time_in_spindle_s"] == 1.0 and controller_keys(t1) == {}
        [failed] = [e for e in logs if e["event"] == "collector.tool_life_read_failed"]
        assert failed["tool_number"] == 1 and failed["usage_id"] == str(t1.id)
    finally:
        await store.__aexit__(None, None, None)


def test_whatever_the_controller_sends_gives_keys_the_usage_schema_takes() -> None:
    eu = SimpleNamespace(DisplayName=ua.LocalizedText("mm" * 200), Description=None)
    readings = [
        {"": "12", "Indication": 1},  # not a number: left out
        {"": math.nan, "Indication": 1},
        {"": True, "Indication": 2},
        {"": 3, "Indication": 99, "IsCountingUp": "yes", "LimitValue": math.inf},  # unknown indication: "other"
        {"": 4.0, "Indication": 3, "WarningValue": "x", "EngineeringUnits": eu},
        {"": 5.0, "Indication": 3},  # a second entry of the same kind: the first is kept
        {"": 0.25, "Indication": None, "StartValue": 1},
    ]
    assert tool_life.metrics(readings) == {
        "x-controller_life_other": 3,
        "x-controller_life_feed_distance": 4.0,
        "x-controller_life_feed_distance_unit": "mm" * 128,
    }
    assert tool_life.metrics([{"": 0.5, "Indication": 0, "StartValue": 0, "IsCountingUp": False}]) == {
        "x-controller_life_time_s": 1800.0,
        "x-controller_life_time_start_s": 0,
        "x-controller_life_time_up": False,
    }
