"""The OPC UA collector against real asyncua servers (the simulator): each profile's timeline gives exactly the
expected usages, quick tool changes are not collapsed, unknown T numbers wait for their preset, and neither a
controller restart (SIGKILL) nor an agent restart (SIGKILL) doubles or drops a usage."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agent.collector.collector import Collector
from agent.config import CollectorConfig, MachineConfig
from agent.simulator.server import CncSimulator, SimMachine
from agent.simulator.timeline import Step
from server.domain.entities import ToolInstanceStatus, ToolType, ToolUsage
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now

SYSTEM = Caller(peer="test")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
async def sim() -> AsyncIterator[CncSimulator]:
    endpoint = f"opc.tcp://127.0.0.1:{_free_port()}/test-sim/"
    machines = [SimMachine("M1", "cnc", []), SimMachine("M2", "cnc", []), SimMachine("U1", "umati", [], tools=6)]
    async with CncSimulator(machines, endpoint) as simulator:
        yield simulator


def machine(sim: CncSimulator, name: str, **overrides: Any) -> MachineConfig:
    index = {"M1": 1, "M2": 2}.get(name, 1)
    profile = "umati" if name.startswith("U") else "cnc"
    fields: dict[str, Any] = dict(
        machine_id=name,
        endpoint=sim.endpoint,
        profile=profile,
        channel=f"Channel{index}" if profile == "cnc" else "",
        spindle=f"Spindle{index}" if profile == "cnc" else "",
        machine=name if profile == "umati" else "",
        publishing_interval_ms=50,
        watchdog_s=2,
        reconnect_max_s=1,
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


async def reset(sim: CncSimulator, name: str) -> None:
    await sim.apply(name, Step(0, tool=0, speed_rpm=0.0, program="", program_running=False))


async def connected(collector: Collector, machine_id: str) -> None:
    async def check() -> bool:
        return collector.live_statuses()[machine_id].connected

    await eventually(check, what=f"{machine_id} connected")


async def test_cnc_timeline_gives_exact_usages(sim: CncSimulator, tmp_path: Path) -> None:
    await reset(sim, "M1")
    store, uc, instances = await store_with_presets(tmp_path / "a.db", "M1", [1, 2])
    try:
        async with Collector(CollectorConfig((machine(sim, "M1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "M1")
            await asyncio.sleep(0.2)
            t_in = datetime.now(UTC)
            await sim.apply("M1", Step(0, tool=1, program="O1001", program_running=True))
            await asyncio.sleep(0.3)
            t_spin = datetime.now(UTC)
            await sim.apply("M1", Step(0, speed_rpm=6000.0))
            await asyncio.sleep(1.5)
            t_stop = datetime.now(UTC)
            await sim.apply("M1", Step(0, speed_rpm=0.0))
            await asyncio.sleep(0.3)
            t_out = datetime.now(UTC)
            await sim.apply("M1", Step(0, tool=2))
            await asyncio.sleep(0.5)
            await sim.apply("M1", Step(0, tool=0))

            async def two_closed() -> list[ToolUsage] | None:
                found = await usages(store, "M1")
                return found if len(found) == 2 and all(u.end_time for u in found) else None

            first, second = await eventually(two_closed, what="two closed usages")
        assert first.tool_instance_id == instances[1].id and second.tool_instance_id == instances[2].id
        interval = 0.05
        assert abs((first.start_time - t_in).total_seconds()) < interval
        assert first.end_time is not None and abs((first.end_time - t_out).total_seconds()) < interval
        runtime = first.usage_metrics["spindle_runtime_s"]
        expected = (t_stop - t_spin).total_seconds()
        assert abs(runtime - expected) <= 0.02 * expected, (runtime, expected)
        assert first.usage_metrics["max_speed_rpm"] == 6000
        assert first.usage_metrics["programs"] == ["O1001"] and first.program_name == "O1001"
        assert first.usage_metrics["source"] == "COLLECTOR" and "interrupted" not in first.usage_metrics
        assert second.start_time == first.end_time and second.usage_metrics["spindle_runtime_s"] == 0
    finally:
        await store.__aexit__(None, None, None)


async def test_cnc_program_cycles_operation_modes_and_spindle_status(sim: CncSimulator, tmp_path: Path) -> None:
    await reset(sim, "M1")
    await sim.apply("M1", Step(0, operation_mode=2))  # AUTOMATIC
    store, uc, _ = await store_with_presets(tmp_path / "c.db", "M1", [1, 2])
    try:
        async with Collector(CollectorConfig((machine(sim, "M1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "M1")
            steps = [
                Step(0, tool=1),
                Step(0, program="O1", program_running=True),  # cycle 1
                Step(0, program_running=False),
                Step(0, operation_mode=1),  # MDA
                Step(0, program_running=True),  # cycle 2
                Step(0, speed_rpm=5000.0),  # the spindle's ActStatus turns InTargetArea with it
                Step(0, speed_rpm=0.0),
                Step(0, tool=2),  # the program is still running: no start, no cycle for T2
                Step(0, tool=0),
            ]
            for step in steps:
                await sim.apply("M1", step)
                await asyncio.sleep(0.5 if step.speed_rpm else 0.25)

            async def two_closed() -> list[ToolUsage] | None:
                found = await usages(store, "M1")
                return found if len(found) == 2 and all(u.end_time for u in found) else None

            first, second = await eventually(two_closed, what="two closed usages")
        assert first.usage_metrics["cycles"] == 2
        assert first.usage_metrics["operation_modes"] == ["AUTOMATIC", "MDA"]
        assert 0.4 <= first.usage_metrics["spindle_runtime_s"] <= 0.65
        assert second.usage_metrics["cycles"] == 0 and second.usage_metrics["operation_modes"] == ["MDA"]
    finally:
        await store.__aexit__(None, None, None)


async def test_quick_t1_t2_t1_is_not_collapsed(sim: CncSimulator, tmp_path: Path) -> None:
    await reset(sim, "M2")
    store, uc, _ = await store_with_presets(tmp_path / "b.db", "M2", [1, 2])
    try:
        config = machine(sim, "M2", publishing_interval_ms=500)  # all three changes fall in one publish cycle
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, "M2")
            await asyncio.sleep(0.6)
            for tool in (1, 2, 1):
                await sim.apply("M2", Step(0, tool=tool))

            async def three() -> list[ToolUsage] | None:
                found = await usages(store, "M2")
                return found if len(found) == 3 else None

            found = await eventually(three, what="three usages")
        assert [u.usage_metrics["tool_number"] for u in found] == [1, 2, 1]
        assert found[0].end_time is not None and found[1].end_time is not None and found[2].end_time is None
    finally:
        await store.__aexit__(None, None, None)


async def test_unknown_tool_number_is_kept_and_attached_when_a_preset_appears(
    sim: CncSimulator, tmp_path: Path
) -> None:
    await reset(sim, "M1")
    store, uc, _ = await store_with_presets(tmp_path / "c.db", "M1", [1])
    try:
        async with Collector(CollectorConfig((machine(sim, "M1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "M1")
            await asyncio.sleep(0.2)
            await sim.apply("M1", Step(0, tool=9))
            await asyncio.sleep(0.4)
            await sim.apply("M1", Step(0, tool=1))

            async def unmatched() -> Any:
                statuses = await uc.recorder.statuses(collector.live_statuses())
                m1 = next(s for s in statuses if s.machine_id == "M1")
                return m1 if m1.unmatched and m1.open_tool_number == 1 else None

            status = await eventually(unmatched, what="T9 reported as unmatched")
            assert [(t.tool_number, t.intervals) for t in status.unmatched] == [(9, 1)]
            assert [u.usage_metrics["tool_number"] for u in await usages(store, "M1")] == [1]
            item = await uc.entities["tool_item"].create(
                {"name": "late", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
            )
            await add_preset(uc, item.id, "M1", 9)
            found = await usages(store, "M1")
            late = [u for u in found if u.usage_metrics["tool_number"] == 9]
            assert len(late) == 1 and late[0].end_time is not None and late[0].usage_metrics["x-attached_late"]
            statuses = await uc.recorder.statuses(collector.live_statuses())
            assert not next(s for s in statuses if s.machine_id == "M1").unmatched
    finally:
        await store.__aexit__(None, None, None)


async def test_umati_profile(sim: CncSimulator, tmp_path: Path) -> None:
    store, uc, _ = await store_with_presets(tmp_path / "d.db", "U1", [3, 5])
    try:
        async with Collector(CollectorConfig((machine(sim, "U1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "U1")
            await asyncio.sleep(0.2)
            await sim.apply("U1", Step(0, tool=3, program="PART-A", program_running=True))
            await asyncio.sleep(0.2)
            await sim.apply("U1", Step(0, speed_rpm=1.0))
            await asyncio.sleep(0.8)
            await sim.apply("U1", Step(0, speed_rpm=0.0, parts=2))
            await asyncio.sleep(0.2)
            await sim.apply("U1", Step(0, tool=5))

            async def closed_t3() -> list[ToolUsage] | None:
                found = [u for u in await usages(store, "U1") if u.usage_metrics.get("tool_number") == 3]
                return found if found and found[-1].end_time else None

            t3 = (await eventually(closed_t3, what="T3 closed"))[-1]
        assert t3.usage_metrics["parts"] == 2 and t3.usage_metrics["programs"] == ["PART-A"]
        # OperationDuration (ms) is written at every step: the program ran about 1.0-1.2 s while T3 was in
        assert 0.9 <= t3.usage_metrics["operation_s"] <= 1.35, t3.usage_metrics
        assert t3.usage_metrics["operation_modes"] == ["AUTOMATIC"]
        assert 0.7 <= t3.usage_metrics["spindle_runtime_s"] <= 1.0
        opened = [u for u in await usages(store, "U1") if u.usage_metrics.get("tool_number") == 5]
        assert len(opened) == 1 and opened[0].end_time is None
    finally:
        await store.__aexit__(None, None, None)


async def test_umati_tool_loaded_while_connected_is_followed(
    sim: CncSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent.collector import session

    monkeypatch.setattr(session, "TOOL_BROWSE_S", 0.2)
    store, uc, _ = await store_with_presets(tmp_path / "d.db", "U1", [3, 11])
    try:
        async with Collector(CollectorConfig((machine(sim, "U1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "U1")
            await sim.apply("U1", Step(0, tool=3))
            await asyncio.sleep(0.3)
            await sim.add_tool("U1", 11)  # loaded into the magazine after the agent connected
            await asyncio.sleep(0.8)  # a browse finds it
            await sim.apply("U1", Step(0, tool=11))

            async def t11_open() -> list[ToolUsage] | None:
                found = [u for u in await usages(store, "U1") if u.usage_metrics.get("tool_number") == 11]
                return found or None

            t11 = (await eventually(t11_open, what="T11 recorded"))[-1]
            assert t11.end_time is None and not t11.usage_metrics.get("interrupted")
            t3 = [u for u in await usages(store, "U1") if u.usage_metrics.get("tool_number") == 3][-1]
            assert t3.end_time is not None
    finally:
        await store.__aexit__(None, None, None)


def _start_sim_process(port: int, script: dict[str, list[dict[str, Any]]], tmp: Path) -> subprocess.Popen[str]:
    path = tmp / f"script-{os.urandom(3).hex()}.json"
    path.write_text(json.dumps(script))
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "--log-level",
            "WARNING",
            "simulate-cnc",
            "--listen",
            f"opc.tcp://127.0.0.1:{port}/kill-sim/",
            "--script",
            str(path),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


async def test_controller_killed_and_restarted_mid_usage(tmp_path: Path) -> None:
    port = _free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/kill-sim/"
    store, uc, _ = await store_with_presets(tmp_path / "e.db", "K1", [1, 2])
    config = MachineConfig(
        machine_id="K1", endpoint=endpoint, profile="cnc", publishing_interval_ms=50, watchdog_s=2, reconnect_max_s=0.5
    )
    proc = _start_sim_process(port, {"K1": [{"at_s": 0.5, "tool": 1}, {"at_s": 0.7, "speed_rpm": 5000}]}, tmp_path)
    try:
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:

            async def open_t1() -> bool:
                found = await usages(store, "K1")
                return len(found) == 1 and found[0].end_time is None

            await eventually(open_t1, timeout=30, what="T1 open")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

            async def disconnected() -> bool:
                return not collector.live_statuses()["K1"].connected

            await eventually(disconnected, what="the collector to notice")
            # The controller comes back with T1 still in, then changes to T2.
            proc = _start_sim_process(
                port, {"K1": [{"at_s": 0, "tool": 1, "speed_rpm": 5000}, {"at_s": 3.0, "tool": 2}]}, tmp_path
            )

            async def t1_closed() -> list[ToolUsage] | None:
                found = await usages(store, "K1")
                return found if len(found) == 2 and found[0].end_time else None

            first, second = await eventually(t1_closed, timeout=30, what="T1 closed after the restart")
        assert first.usage_metrics["tool_number"] == 1 and second.usage_metrics["tool_number"] == 2
        assert first.usage_metrics["interrupted"] is True and first.usage_metrics["x-outage_s"] > 0
        assert second.end_time is None and "interrupted" not in second.usage_metrics
    finally:
        proc.kill()
        proc.wait(timeout=10)
        await store.__aexit__(None, None, None)


async def test_agent_killed_and_restarted_mid_usage(sim: CncSimulator, tmp_path: Path) -> None:
    await reset(sim, "M1")
    db = tmp_path / "agent.db"
    store, _, _ = await store_with_presets(db, "M1", [1, 2])
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        f'[[machines]]\nmachine_id = "M1"\nendpoint = "{sim.endpoint}"\nprofile = "cnc"\nchannel = "Channel1"\n'
        'spindle = "Spindle1"\npublishing_interval_ms = 50\nwatchdog_s = 2\nreconnect_max_s = 1\n'
    )

    def start_agent() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "agent.cli",
                "--log-level",
                "WARNING",
                "serve",
                "--db",
                str(db),
                "--listen",
                f"127.0.0.1:{_free_port()}",
                "--config",
                str(config_path),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    agent = start_agent()
    try:
        await asyncio.sleep(0.5)
        await sim.apply("M1", Step(0, tool=1))

        async def open_t1() -> bool:
            found = await usages(store, "M1")
            return len(found) == 1 and found[0].end_time is None

        await eventually(open_t1, timeout=30, what="the agent to open T1")
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        await sim.apply("M1", Step(0, tool=0))  # T1 leaves and T2 comes while the agent is down
        await asyncio.sleep(0.3)
        await sim.apply("M1", Step(0, tool=2))
        agent = start_agent()

        async def recovered() -> list[ToolUsage] | None:
            found = await usages(store, "M1")
            return found if len(found) == 2 and found[0].end_time else None

        first, second = await eventually(recovered, timeout=30, what="recovery after the restart")
        assert first.usage_metrics["tool_number"] == 1 and first.usage_metrics["interrupted"] is True
        assert second.usage_metrics["tool_number"] == 2 and second.end_time is None
        assert second.usage_metrics["interrupted"] is True  # it began while nobody watched
        await sim.apply("M1", Step(0, tool=0))

        async def second_closed() -> bool:
            found = await usages(store, "M1")
            return len(found) == 2 and all(u.end_time for u in found)

        await eventually(second_closed, timeout=30, what="T2 closed")
    finally:
        agent.kill()
        agent.wait(timeout=10)
        await store.__aexit__(None, None, None)
