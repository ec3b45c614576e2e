"""The collector's timing model (README "Collector timing model", issue 10) against real asyncua servers.

The first tests drive a simulated controller whose clock the test moves (ControllerClock): every figure asserted
follows from the controller's timestamps, to the millisecond. The last two are end to end with real processes
killed by SIGKILL (the controller, then the agent) on the real clock: spindle time is checked against what the
controller stamped, within 2 %, less the window the README says cannot be observed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asyncua import Client
from conftest import free_port
from test_collector import (
    _CLI,
    ControllerClock,
    connected,
    eventually,
    machine,
    play,
    serve,
    stays,
    store_with_presets,
)

from agent.collector import session
from agent.collector.collector import Collector
from agent.config import CollectorConfig, MachineConfig
from agent.simulator.server import CNC_NS, CncSimulator, SimMachine
from agent.simulator.timeline import Step
from server.usecases.app import UseCases
from server.usecases.entities import utc_now


@pytest.fixture(scope="module")
def clock() -> ControllerClock:
    return ControllerClock()


@pytest.fixture(scope="module")
async def sim(clock: ControllerClock) -> AsyncIterator[CncSimulator]:
    async for simulator in serve(
        clock,
        SimMachine("Q1", "cnc", []),
        SimMachine("S1", "cnc", []),
        SimMachine("P1", "cnc", []),
        SimMachine("W1", "umati", [], tools=3),
    ):
        yield simulator


async def saved(uc: UseCases, machine_id: str) -> dict[str, Any]:
    state = await uc.recorder.load_state(machine_id)
    assert state is not None
    return state


async def observed_until(uc: UseCases, machine_id: str, when: datetime) -> None:
    """Wait until the collector has saved that it observed the machine up to `when` (a keep-alive's answer)."""

    async def check() -> bool:
        state = await uc.recorder.load_state(machine_id)
        return state is not None and state["last_seen"] == when.isoformat()

    await eventually(check, what=f"{machine_id} observed until {when}")


@pytest.mark.parametrize(("publishing_ms", "quiet_s"), [(50, 1.0), (250, 5.0), (1000, 10.0)])
async def test_a_keep_alive_after_a_quiet_period_never_moves_a_change(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path, publishing_ms: int, quiet_s: float
) -> None:
    # Case 1: the session asks the controller's time after a quiet spell; a change stamped before that answer but
    # delivered after it keeps its own stamp (it used to be moved to the answer's time).
    store, uc, _ = await store_with_presets(tmp_path / "quiet.db", "Q1", [1, 2])
    try:
        await play(sim, clock, "Q1", clock.fresh_start(), [(0, Step(0, tool=0, speed_rpm=0.0))])
        config = machine(sim, "Q1", publishing_interval_ms=publishing_ms)
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, "Q1")
            base = clock.fresh_start()
            await play(sim, clock, "Q1", base, [(1.0, Step(0, tool=1)), (2.0, Step(0, speed_rpm=4000.0))])
            in_flight = timedelta(milliseconds=publishing_ms)
            # Quiet: the controller's clock runs on to 2 s + quiet + 0.3 s and a keep-alive reads it.
            clock.now = base + timedelta(seconds=2 + quiet_s + 0.3)
            await observed_until(uc, "Q1", clock.now - in_flight)
            # The spindle stopped at 2 s + quiet: its notification arrives after the keep-alive's answer.
            await play(sim, clock, "Q1", base, [(2 + quiet_s, Step(0, speed_rpm=0.0))])
            clock.now = base + timedelta(seconds=2 + 2 * quiet_s + 0.3)
            await observed_until(uc, "Q1", clock.now - in_flight)
            await play(sim, clock, "Q1", base, [(2 + 2 * quiet_s, Step(0, tool=2))])
            first, second = await eventually(stays(store, "Q1", 2, closed=1), what="T1 closed")
        assert first.end_time == base + timedelta(seconds=2 + 2 * quiet_s)
        assert second.start_time == first.end_time
        assert first.usage_metrics["spindle_runtime_s"] == quiet_s
        assert first.usage_metrics["time_in_spindle_s"] == 1 + 2 * quiet_s
        assert "x-clamped" not in first.usage_metrics and "interrupted" not in first.usage_metrics
    finally:
        await store.__aexit__(None, None, None)


async def test_the_first_usage_starts_at_the_controllers_stamps(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    # Case 4: T4 went in and the spindle started before the agent first looked.
    base = clock.fresh_start()
    await play(sim, clock, "S1", base, [(1.0, Step(0, tool=4, program="O7")), (2.0, Step(0, speed_rpm=3000.0))])
    clock.now = base + timedelta(seconds=5)
    store, uc, _ = await store_with_presets(tmp_path / "start.db", "S1", [4])
    try:
        async with Collector(CollectorConfig((machine(sim, "S1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "S1")
            await play(sim, clock, "S1", base, [(7.0, Step(0, speed_rpm=0.0)), (8.0, Step(0, tool=0))])
            [usage] = await eventually(stays(store, "S1", 1, closed=1), what="T4 closed")
        assert (usage.start_time, usage.end_time, usage.program_name) == (
            base + timedelta(seconds=1),
            base + timedelta(seconds=8),
            "O7",
        )
        assert usage.usage_metrics["spindle_runtime_s"] == 5.0 and usage.usage_metrics["time_in_spindle_s"] == 7.0
        assert "interrupted" not in usage.usage_metrics and "x-clamped" not in usage.usage_metrics
    finally:
        await store.__aexit__(None, None, None)


async def test_a_program_and_a_tool_changed_at_one_instant_go_together(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    # Case 5: T12 -> T3 and O1001 -> O1002 stamped at the same instant (one step writes both).
    await play(sim, clock, "P1", clock.fresh_start(), [(0, Step(0, tool=0, program="", speed_rpm=0.0))])
    store, uc, _ = await store_with_presets(tmp_path / "same.db", "P1", [3, 12])
    try:
        async with Collector(CollectorConfig((machine(sim, "P1"),)), uc.recorder, utc_now) as collector:
            await connected(collector, "P1")
            base = clock.fresh_start()
            await play(
                sim,
                clock,
                "P1",
                base,
                [
                    (1.0, Step(0, program="O1001", tool=12)),
                    (2.0, Step(0, program="O1002", tool=3)),
                    (3.0, Step(0, tool=0)),
                ],
            )
            t12, t3 = await eventually(stays(store, "P1", 2, closed=2), what="T12 and T3 closed")
        assert (t12.program_name, t12.usage_metrics["programs"]) == ("O1001", ["O1001"])
        assert (t3.program_name, t3.usage_metrics["programs"]) == ("O1002", ["O1002"])
    finally:
        await store.__aexit__(None, None, None)


async def test_umati_a_tool_changed_while_the_agent_was_away_starts_at_its_last_usage(
    sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    # Case 3, umati: the agent stops with T1 in; T3 becomes the active tool at 6 s (its LastUsage); the agent
    # comes back at 9 s. T1 ends where the agent last saw it, T3 starts at 6 s exactly.
    store, uc, _ = await store_with_presets(tmp_path / "away.db", "W1", [1, 3])
    config = machine(sim, "W1")
    base = clock.fresh_start()

    def at(seconds: float) -> datetime:
        return base + timedelta(seconds=seconds)

    try:
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, "W1")
            await play(sim, clock, "W1", base, [(1.0, Step(0, tool=1)), (2.0, Step(0, speed_rpm=1.0))])
            clock.now = at(4.0)
            await observed_until(uc, "W1", at(4.0) - timedelta(milliseconds=50))
        await play(sim, clock, "W1", base, [(6.0, Step(0, tool=3))])
        clock.now = at(9.0)
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, "W1")
            await play(sim, clock, "W1", base, [(10.0, Step(0, speed_rpm=0.0)), (12.0, Step(0, tool=1))])
            t1, t3, _ = await eventually(stays(store, "W1", 3, closed=2), what="T1 and T3 closed")
        assert (t1.start_time, t1.end_time) == (at(1), at(3.95)) and t1.usage_metrics["interrupted"] is True
        assert t1.usage_metrics["spindle_runtime_s"] == 1.95
        assert (t3.start_time, t3.end_time) == (at(6), at(12)) and "interrupted" not in t3.usage_metrics
        assert t3.usage_metrics["spindle_runtime_s"] == 4.0  # IsRotating unchanged since 2 s: turning from 6 s
    finally:
        await store.__aexit__(None, None, None)


async def test_a_controller_restart_keeps_the_spindle_time_seen_before_it(
    clock: ControllerClock, tmp_path: Path
) -> None:
    # Case 2: the connection is lost while T1 turns; the controller comes back with T1 in and the spindle turning
    # (stamped when it came back). Seen before the loss is kept; the outage counts from the loss.
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/restart/"
    store, uc, _ = await store_with_presets(tmp_path / "restart.db", "R1", [1, 2])
    config = MachineConfig(
        machine_id="R1", endpoint=endpoint, profile="cnc", publishing_interval_ms=50, reconnect_max_s=0.5
    )
    base = clock.fresh_start()

    def at(seconds: float) -> datetime:
        return base + timedelta(seconds=seconds)

    try:
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            async with CncSimulator([SimMachine("R1", "cnc", [])], endpoint, clock=clock) as first:
                await connected(collector, "R1")
                await play(first, clock, "R1", base, [(1.0, Step(0, tool=1)), (2.0, Step(0, speed_rpm=5000.0))])
                clock.now = at(5.2)
                await observed_until(uc, "R1", at(5.15))  # the last keep-alive before the loss
            await eventually(_disconnected(collector, "R1"), what="the loss noticed")
            assert (await saved(uc, "R1"))["last_seen"] == at(5.15).isoformat()  # saved at the loss
            clock.now = at(9.0)  # the controller comes back with T1 in, turning: stamped 9 s
            async with CncSimulator(
                [SimMachine("R1", "cnc", [Step(0, tool=1, speed_rpm=5000.0)])], endpoint, clock=clock
            ) as second:
                await connected(collector, "R1")
                await play(second, clock, "R1", base, [(11.0, Step(0, speed_rpm=0.0)), (12.0, Step(0, tool=2))])
                t1, _ = await eventually(stays(store, "R1", 2, closed=1), what="T1 closed")
        assert (t1.start_time, t1.end_time) == (at(1), at(12))
        assert t1.usage_metrics["spindle_runtime_s"] == 5.15  # 2 -> 5.15 seen, 9 -> 11 stamped after the restart
        assert t1.usage_metrics["x-outage_s"] == 3.85 and t1.usage_metrics["interrupted"] is True
        assert "x-clamped" not in t1.usage_metrics
    finally:
        await store.__aexit__(None, None, None)


def _disconnected(collector: Collector, machine_id: str) -> Any:
    async def check() -> bool:
        return not collector.live_statuses()[machine_id].connected

    return check


class _Relay:
    """A TCP relay between the collector and a controller: `cut()` drops the link (the controller runs on)."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream = upstream_port
        self._open = True
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.port = 0

    async def __aenter__(self) -> _Relay:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.cut()
        assert self._server is not None
        self._server.close()

    def cut(self) -> None:
        self._open = False
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._open = True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._open:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))


async def test_umati_a_spindle_on_held_only_in_memory_survives_a_lost_link(
    clock: ControllerClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Case 2, umati: IsRotating went on and was not saved yet when the link dropped; the controller ran on and its
    # IsRotating is still stamped from before the loss, so the spindle turned throughout.
    monkeypatch.setattr(session, "HEARTBEAT_S", 3600.0)  # no periodic save: the spindle-on is in memory only
    port = free_port()
    endpoint = f"opc.tcp://127.0.0.1:{port}/umati-link/"
    store, uc, _ = await store_with_presets(tmp_path / "link.db", "U2", [1, 3])
    base = clock.fresh_start()

    def at(seconds: float) -> datetime:
        return base + timedelta(seconds=seconds)

    try:
        async with (
            CncSimulator([SimMachine("U2", "umati", [], tools=3)], endpoint, clock=clock) as sim,
            _Relay(port) as relay,
        ):
            config = MachineConfig(
                machine_id="U2",
                endpoint=f"opc.tcp://127.0.0.1:{relay.port}/umati-link/",
                profile="umati",  # no machine key: the only machine the server has
                publishing_interval_ms=50,
                reconnect_max_s=0.5,
            )
            async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
                await connected(collector, "U2")
                await play(sim, clock, "U2", base, [(1.0, Step(0, tool=1))])
                await eventually(stays(store, "U2", 1, closed=0), what="T1 open")
                await play(sim, clock, "U2", base, [(2.0, Step(0, speed_rpm=1.0))])

                async def spindle_seen() -> bool:
                    return collector.live_statuses()["U2"].last_data_at == at(2)

                await eventually(spindle_seen, what="IsRotating seen")
                assert (await saved(uc, "U2"))["rotating"] is False  # not saved: held in memory
                clock.now = at(5.0)
                relay.cut()
                await eventually(_disconnected(collector, "U2"), what="the lost link noticed")
                clock.now = at(8.0)
                relay.restore()
                await connected(collector, "U2")
                await play(sim, clock, "U2", base, [(10.0, Step(0, speed_rpm=0.0)), (11.0, Step(0, tool=3))])
                t1, _ = await eventually(stays(store, "U2", 2, closed=1), what="T1 closed")
        assert (t1.start_time, t1.end_time) == (at(1), at(11))
        assert t1.usage_metrics["spindle_runtime_s"] == 8.0  # 2 -> 10: IsRotating never changed in between
        assert t1.usage_metrics["x-outage_s"] == 6.0  # observed up to 2 s (no keep-alive here), back at 8 s
        assert "max_speed_rpm" not in t1.usage_metrics  # case 6
    finally:
        await store.__aexit__(None, None, None)


# --- end to end: real processes killed with SIGKILL, on the real clock ------------------------------------------------

# A controller process the test drives: it applies each JSON step it reads on stdin and answers with the time it
# stamped the step with, so the test knows what the controller reported.
_DRIVEN_CONTROLLER = """
import asyncio, json, sys
from datetime import UTC, datetime
from agent.simulator.server import CNC_NS, CncSimulator, SimMachine
from agent.simulator.timeline import Step

class Clock:
    pinned = None
    def __call__(self):
        return self.pinned or datetime.now(UTC)

async def main() -> None:
    endpoint, name = sys.argv[1], sys.argv[2]
    clock = Clock()
    async with CncSimulator([SimMachine(name, "cnc", [])], endpoint, clock=clock) as sim:
        loop = asyncio.get_running_loop()
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            clock.pinned = datetime.now(UTC)
            await sim.apply(name, Step(**json.loads(line)))
            print("stamped", clock.pinned.isoformat(), flush=True)
            clock.pinned = None

asyncio.run(main())
"""


class _Controller:
    """The driven controller in its own process."""

    def __init__(self, endpoint: str, name: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _DRIVEN_CONTROLLER, endpoint, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )

    async def apply(self, **step: Any) -> datetime:
        """Apply a step; the controller's stamp for it."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"at_s": 0, **step}) + "\n")
        self.proc.stdin.flush()
        while True:  # the simulator's own log lines go to stdout too
            line = await asyncio.get_running_loop().run_in_executor(None, self.proc.stdout.readline)
            assert line, "the controller process ended"
            if line.startswith("stamped "):
                return datetime.fromisoformat(line.split()[1])

    def kill(self) -> datetime:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        return datetime.now(UTC)


def _within_2_percent(credited: float, expected: float) -> bool:
    return abs(credited - expected) <= 0.02 * expected


def _cli_controller(endpoint: str, tmp: Path, script: dict[str, list[dict[str, Any]]]) -> subprocess.Popen[str]:
    """`smooth-edge simulate-cnc --script`: the steps at 0 s are the state it comes up in."""
    path = tmp / "script.json"
    path.write_text(json.dumps(script))
    return subprocess.Popen(
        [*_CLI, "--log-level", "WARNING", "simulate-cnc", "--listen", endpoint, "--script", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )


async def _spindle_stamp(endpoint: str) -> datetime:
    """The SourceTimestamp of Spindle1's ActStatus: when the controller says the spindle last changed."""
    client = Client(endpoint)
    async with client:
        ns = await client.get_namespace_index(CNC_NS)
        path = [f"{ns}:{name}" for name in ("CncInterface", "CncSpindleList", "Spindle1", "ActStatus")]
        value = await (await client.nodes.objects.get_child(path)).read_data_value()
    assert value.SourceTimestamp is not None
    return value.SourceTimestamp.replace(tzinfo=UTC) if value.SourceTimestamp.tzinfo is None else value.SourceTimestamp


async def test_a_controller_killed_mid_spindle_keeps_what_was_seen(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/kill-controller/"
    store, uc, _ = await store_with_presets(tmp_path / "kc.db", "K1", [1, 2])
    config = MachineConfig(
        machine_id="K1", endpoint=endpoint, profile="cnc", publishing_interval_ms=50, reconnect_max_s=0.5
    )
    # The first controller is the CLI's simulator, with T1 in and the spindle turning from the start.
    first_controller = _cli_controller(endpoint, tmp_path, {"K1": [{"at_s": 0, "tool": 1, "speed_rpm": 5000}]})
    controller: _Controller | None = None
    try:
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await eventually(stays(store, "K1", 1, closed=0), what="T1 open")
            on = await _spindle_stamp(endpoint)

            async def ran_a_while() -> bool:  # progress on the controller's clock, not a sleep
                last = (await saved(uc, "K1"))["last_seen"]
                return datetime.fromisoformat(last) >= on + timedelta(seconds=2)

            await eventually(ran_a_while, what="two seconds of spindle observed")
            first_controller.send_signal(signal.SIGKILL)
            first_controller.wait(timeout=10)
            killed = datetime.now(UTC)
            await eventually(_disconnected(collector, "K1"), what="the loss noticed")
            lost_from = datetime.fromisoformat((await saved(uc, "K1"))["last_seen"])
            controller = _Controller(endpoint, "K1")
            back = await controller.apply(tool=1, speed_rpm=5000)  # back with T1 in, turning
            await connected(collector, "K1")
            off = await controller.apply(speed_rpm=0)
            await controller.apply(tool=2)
            first, second = await eventually(stays(store, "K1", 2, closed=1), what="T1 closed")
        credited = first.usage_metrics["spindle_runtime_s"]
        reported = (killed - on).total_seconds() + (off - back).total_seconds()
        unobservable = (killed - lost_from).total_seconds()  # README: from the last keep-alive to the loss
        print(
            f"controller restart: credited {credited} s, reported {reported:.3f} s, unobservable {unobservable:.3f} s"
        )
        assert _within_2_percent(credited, reported - unobservable)
        assert credited <= reported + 0.001  # never more than the controller reported
        assert first.usage_metrics["interrupted"] is True and first.usage_metrics["x-outage_s"] > 0
        assert second.usage_metrics["tool_number"] == 2 and "interrupted" not in second.usage_metrics
    finally:
        first_controller.kill()
        first_controller.wait(timeout=10)
        if controller is not None:
            controller.kill()
        await store.__aexit__(None, None, None)


class _StampingClock:
    """Our clock, except while a step is applied: then the stamp the step got (the test reads it back)."""

    def __init__(self) -> None:
        self.pinned: datetime | None = None

    def __call__(self) -> datetime:
        return self.pinned or datetime.now(UTC)

    async def apply(self, sim: CncSimulator, name: str, step: Step) -> datetime:
        self.pinned = stamp = datetime.now(UTC)
        try:
            await sim.apply(name, step)
        finally:
            self.pinned = None
        return stamp


async def test_an_agent_killed_mid_spindle_loses_at_most_the_stated_window(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/kill-agent/"
    db = tmp_path / "agent.db"
    store, uc, _ = await store_with_presets(db, "A1", [1, 2])
    config_path = tmp_path / "agent.toml"
    config_path.write_text(
        f'[[machines]]\nmachine_id = "A1"\nendpoint = "{endpoint}"\nprofile = "cnc"\n'
        "publishing_interval_ms = 50\nreconnect_max_s = 1\n"
    )
    agent_log = tmp_path / "agent.log"

    def start_agent() -> subprocess.Popen[str]:
        with agent_log.open("a") as log_file:
            command = [
                *_CLI,
                "--log-level",
                "WARNING",
                "serve",
                "--db",
                str(db),
                "--listen",
                f"127.0.0.1:{free_port()}",
            ]
            return subprocess.Popen(
                [*command, "--config", str(config_path)], stdout=subprocess.DEVNULL, stderr=log_file, text=True
            )

    stamping = _StampingClock()
    async with CncSimulator([SimMachine("A1", "cnc", [])], endpoint, clock=stamping) as sim:
        agent = start_agent()
        try:

            async def first_contact() -> bool:
                assert agent.poll() is None, agent_log.read_text()
                return await uc.recorder.load_state("A1") is not None

            await eventually(first_contact, what="the agent's first look at the machine")
            t1 = await stamping.apply(sim, "A1", Step(0, tool=1))
            on = await stamping.apply(sim, "A1", Step(0, speed_rpm=5000.0))

            async def ran_a_while() -> bool:
                state = await saved(uc, "A1")
                return state["rotating"] and datetime.fromisoformat(state["last_seen"]) >= on + timedelta(seconds=2)

            await eventually(ran_a_while, what="two seconds of spindle observed and saved")
            agent.send_signal(signal.SIGKILL)
            agent.wait(timeout=10)
            killed = datetime.now(UTC)
            saved_until = datetime.fromisoformat((await saved(uc, "A1"))["last_seen"])
            # While the agent is down T2 replaces T1; the spindle keeps turning.
            t2 = await stamping.apply(sim, "A1", Step(0, tool=2))
            agent = start_agent()
            await eventually(stays(store, "A1", 2, closed=1), what="recovery after the restart")
            off = await stamping.apply(sim, "A1", Step(0, speed_rpm=0.0))
            await stamping.apply(sim, "A1", Step(0, tool=0))
            first, second = await eventually(stays(store, "A1", 2, closed=2), what="T2 closed")
        finally:
            agent.kill()
            agent.wait(timeout=10)
            await store.__aexit__(None, None, None)
    window = (killed - saved_until).total_seconds()
    print(f"agent kill -9: saved up to {window:.3f} s before the kill")
    # T1 turned from `on` until T2 came; the agent saw it up to what it saved, and the gap after is not credited.
    assert (first.start_time, first.end_time) == (t1, saved_until) and first.usage_metrics["interrupted"] is True
    assert _within_2_percent(first.usage_metrics["spindle_runtime_s"], (saved_until - on).total_seconds())
    # T2 starts at ToolId's stamp (case 3), turning all along (the spindle's stamp is from before the gap).
    assert second.start_time == t2 and "interrupted" not in second.usage_metrics
    assert _within_2_percent(second.usage_metrics["spindle_runtime_s"], (off - t2).total_seconds())
    # Over both usages: what the controller reported less the gap the agent could not see.
    total = first.usage_metrics["spindle_runtime_s"] + second.usage_metrics["spindle_runtime_s"]
    assert _within_2_percent(total, (off - on).total_seconds() - (t2 - saved_until).total_seconds())
