"""Change->commit latency and CPU of the OPC UA collector: N simulated CNC machines, each making `--rate` signal
changes per second, against one real `smooth-edge serve` agent. Run from the repository root:
`python tests/bench/bench_collector.py --help`; see README.md beside this file. Not part of the pytest run (no
test_ prefix), and asserts nothing about timing."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import math
import os
import platform
import random
import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from benchkit import Processes, free_port, log_tail, smooth_edge_command

STARTUP_TIMEOUT_S = 60.0
# Each session resolves its channel by reading the browse name of every sibling, so connecting N machines to
# one simulator costs O(N^2) reads: allow for it on top of the fixed start-up time.
STARTUP_PER_MACHINE_S = 1.0
STOP_GRACE_S = 10.0
# After the last change, wait until the usage count stops growing for this long (the agent may have a backlog).
DRAIN_QUIET_S = 5.0
DRAIN_MAX_S = 300.0
TOOLS = 8  # T1..T8 per machine, each with a preset, so every tool change maps to a tool instance
SPEEDS = (4000.0, 6000.0, 8000.0, 10000.0)  # never 0: a spindle start/stop would add writes a speed change lacks
PROGRAM = "O4711"
SIM_CHILD = "_simulator"  # hidden first argument: run as a simulator process
GOAL_MACHINES, GOAL_P99_MS = 200, 250.0

_T0 = time.perf_counter()


def progress(message: str) -> None:
    """Phase messages go to stderr so stdout holds only the table."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A setup failure worth a one-line message rather than a traceback."""


# ============================================================================================ simulator child


@dataclass(frozen=True)
class ChangeRecord:
    """One change the simulator made: `tool` is the new T number (0 for a speed change); `before`/`after` are
    the wall-clock seconds around `apply`, so the SourceTimestamp it wrote lies between them."""

    machine: str
    tick: int  # the machine's change number
    tool: int
    before: float
    after: float
    lag_s: float  # how late against its schedule the change was made (the simulator's own backlog)


def machine_name(index: int) -> str:
    return f"BENCH-{index:03d}"


def simulator_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench_collector.py _simulator")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--first", type=int, required=True, help="global index of this process's first machine")
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--tool-every", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from agent.logs import configure_logging

    configure_logging("WARNING")
    # The controllers are other machines on a real floor: here they share the agent's cores, so they run on the
    # same event loop as `smooth-edge simulate-cnc` (uvloop) to take as little from the agent as they can.
    import uvloop

    uvloop.run(_simulate(args))
    return 0


async def _simulate(args: argparse.Namespace) -> None:
    from agent.simulator.server import CncSimulator, SimMachine
    from agent.simulator.timeline import Step

    names = [machine_name(args.first + i) for i in range(args.count)]
    # The initial state is applied before the server starts: T1 in, spindle turning, program running.
    start = Step(0.0, tool=1, speed_rpm=SPEEDS[0], program=PROGRAM, program_running=True)
    machines = [SimMachine(name, "cnc", [start]) for name in names]
    endpoint = f"opc.tcp://127.0.0.1:{args.port}/bench-sim/"
    loop = asyncio.get_running_loop()
    async with CncSimulator(machines, endpoint) as sim:
        print("ready", flush=True)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line.startswith("go "):
            return  # the bench gave up (stdin closed)
        start_epoch = float(line.split()[1])
        # Schedule on the monotonic clock, anchored to the wall-clock start the bench chose for every process.
        start_mono = time.monotonic() + (start_epoch - time.time())
        tick_s = 1.0 / args.rate
        records: list[ChangeRecord] = []

        async def play(offset: int, name: str) -> None:
            index = args.first + offset
            # Gaps vary at random around 1/rate. On a fixed grid every tool change of a machine would meet the
            # collector's publishing cycle at the same phase, so its latency would be one value, not a spread.
            rng = random.Random(index)
            due = start_mono + tick_s * rng.random()  # machines start spread over one gap, not all at once
            end = start_mono + args.seconds
            tool, speed, tick = 1, 0, 0
            while due < end:
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                lag = max(0.0, time.monotonic() - due)
                before = time.time()
                if tick % args.tool_every == 0:
                    tool = tool % TOOLS + 1  # never 0: each change closes one usage and opens the next
                    await sim.apply(name, Step(0.0, tool=tool))
                    new_tool = tool
                else:
                    speed = (speed + 1) % len(SPEEDS)
                    await sim.apply(name, Step(0.0, speed_rpm=SPEEDS[speed]))
                    new_tool = 0
                records.append(ChangeRecord(name, tick, new_tool, before, time.time(), lag))
                tick += 1
                due += tick_s * rng.uniform(0.5, 1.5)

        await asyncio.gather(*(play(i, name) for i, name in enumerate(names)))
        args.out.write_text(json.dumps([asdict(r) for r in records]))
        print("done", flush=True)
        # Keep serving (unchanged values) until the bench closes stdin, so the agent sees no disconnect while it
        # drains its backlog.
        await loop.run_in_executor(None, sys.stdin.read)


# ================================================================================================ processes


def read_line(proc: subprocess.Popen[bytes], name: str, log: Path, timeout_s: float) -> str:
    """The child's next stdout line; fails with its log if it exits or stays silent."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    line = b""
    while not line.endswith(b"\n"):
        if time.monotonic() > deadline:
            raise BenchError(f"{name} said nothing for {timeout_s:g}s:\n{log_tail(log)}")
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if not ready:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode}:\n{log_tail(log)}")
            continue
        chunk = os.read(proc.stdout.fileno(), 1)
        if not chunk:
            raise BenchError(f"{name} exited with {proc.wait()}:\n{log_tail(log)}")
        line += chunk
    return line.decode().strip()


def cpu_seconds(pid: int, *, main_thread: bool = False) -> float:
    """utime + stime of a process (all its threads, e.g. aiosqlite's) from /proc, so no psutil is needed; or of
    its main thread only, which runs the event loop."""
    path = f"/proc/{pid}/task/{pid}/stat" if main_thread else f"/proc/{pid}/stat"
    with open(path) as stat:
        fields = stat.read().rsplit(")", 1)[1].split()  # the command name may contain spaces and ")"
    # After the name: state is field 3, utime 14 and stime 15 (1-based, proc(5)).
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ===================================================================================================== seed


def seed_presets(db: Path, machines: int) -> None:
    """A migrated store with T1..T8 preset on every machine, written through the use cases as the tests do."""
    from server.domain.errors import SmoothError

    try:
        asyncio.run(_seed(db, machines))
    except SmoothError as err:
        raise BenchError(f"seeding the presets failed: {err.message}") from err


async def _seed(db: Path, machines: int) -> None:
    from server.domain.entities import ToolInstanceStatus, ToolType
    from server.store import migrate
    from server.store.repository import Store
    from server.usecases.app import build
    from server.usecases.entities import Caller

    caller = Caller(peer="bench")
    async with Store(str(db)) as store:
        await migrate.upgrade(store.engine)
        uc = build(store)
        item = await uc.entities["tool_item"].create(
            {"name": "bench mill", "tool_type": ToolType.END_MILL, "geometry": {"DC": 10, "NOF": 4, "OAL": 70}},
            entity_id=None,
            caller=caller,
        )
        for index in range(1, machines + 1):
            machine_id = machine_name(index)
            for number in range(1, TOOLS + 1):
                instance = await uc.entities["tool_instance"].create(
                    {
                        "tool_item_id": item.id,
                        "serial_number": f"{machine_id}-T{number}",
                        "status": ToolInstanceStatus.AVAILABLE,
                    },
                    entity_id=None,
                    caller=caller,
                )
                await uc.entities["tool_preset"].create(
                    {
                        "name": f"T{number}",
                        "tool_instance_id": instance.id,
                        "machine_id": machine_id,
                        "parameters": {"tool_number": number},
                    },
                    entity_id=None,
                    caller=caller,
                )
            if index % 50 == 0:
                progress(f"  presets for {index}/{machines} machines")


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy through SQLite's online backup API (the seeded file may still have a WAL)."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    # A short read-only connection per call: the agent writes the same file in WAL mode, so readers never block it.
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)) as conn:
        return conn.execute(sql).fetchall()


def stored_time(text: str) -> float:
    """The store keeps naive UTC text (UtcDateTime on SQLite): as wall-clock epoch seconds."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


# ================================================================================================= one run


@dataclass(frozen=True)
class Settings:
    machines: tuple[int, ...]
    seconds: float
    warmup: float
    rate: float
    tool_every: int
    publishing_interval_ms: int
    sim_processes: int  # 0: one per --machines-per-sim machines
    machines_per_sim: int
    agent_log_level: str
    profile_dir: Path | None
    json_path: Path | None
    keep_dir: Path | None


@dataclass
class RunResult:
    machines: int
    sim_processes: int
    offered_changes_per_s: float
    tool_changes_per_s: float
    commits_per_s: float  # usages opened per second in the window: below tool_changes_per_s = falling behind
    tool_changes: int  # in the window: each expects one usage opened and the previous one closed
    opens_recorded: int
    closes_recorded: int
    time_shifted: int  # opens/closes recorded with a later time than their change's SourceTimestamp
    extra_usages: int  # usage rows in the window that match no change (a doubled or invented usage)
    interrupted_usages: int  # the collector lost its session and reconciled: a sign of overload
    latency_ms: dict[str, float]
    open_latency_ms: dict[str, float]
    close_latency_ms: dict[str, float]
    logged_latency_ms: dict[str, float]  # to the agent's log line, written after COMMIT (INFO level only)
    shift_ms: dict[str, float]
    agent_cpu_pct: float
    agent_loop_cpu_pct: float  # the agent's main thread: its event loop, the collector and SQLAlchemy's work
    sim_cpu_pct: float
    sim_lag_ms: dict[str, float]
    drained_s: float
    problems: list[str] = field(default_factory=list)


def percentiles(values: Sequence[float]) -> dict[str, float]:
    """Nearest-rank p50/p99 and the max, in the values' unit; empty input gives an empty dict."""
    if not values:
        return {}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]

    return {"n": float(len(ordered)), "p50": rank(50), "p99": rank(99), "max": ordered[-1]}


def split(total: int, parts: int) -> list[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


@dataclass(frozen=True)
class SimProcess:
    proc: subprocess.Popen[bytes]
    port: int
    first: int
    count: int
    out: Path
    log: Path
    name: str


def write_config(path: Path, sims: Sequence[SimProcess], settings: Settings) -> None:
    """The agent's machines.toml: machine i of a simulator is its Channel<i>/Spindle<i> pair."""
    lines: list[str] = []
    for sim in sims:
        for local in range(1, sim.count + 1):
            lines += [
                "[[machines]]",
                f'machine_id = "{machine_name(sim.first + local - 1)}"',
                f'endpoint = "opc.tcp://127.0.0.1:{sim.port}/bench-sim/"',
                'profile = "cnc"',
                f'channel = "Channel{local}"',
                f'spindle = "Spindle{local}"',
                f"publishing_interval_ms = {settings.publishing_interval_ms}",
                "",
            ]
    path.write_text("\n".join(lines))


def start_simulators(procs: Processes, workdir: Path, n: int, settings: Settings) -> list[SimProcess]:
    count = settings.sim_processes or math.ceil(n / settings.machines_per_sim)
    count = max(1, min(count, n))
    sims: list[SimProcess] = []
    first = 1
    for index, machines in enumerate(split(n, count), start=1):
        port = free_port()
        out = workdir / f"changes-{n}-{index}.json"
        log = workdir / f"sim-{n}-{index}.log"
        name = f"simulator {index}/{count} ({machines} machines)"
        argv = [
            sys.executable, str(Path(__file__).resolve()), SIM_CHILD,
            "--port", str(port), "--first", str(first), "--count", str(machines),
            "--rate", str(settings.rate), "--tool-every", str(settings.tool_every),
            "--seconds", str(settings.warmup + settings.seconds), "--out", str(out),
        ]  # fmt: skip
        proc = procs.start(name, argv, log, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        sims.append(SimProcess(proc, port, first, machines, out, log, name))
        first += machines
    for sim in sims:
        if read_line(sim.proc, sim.name, sim.log, STARTUP_TIMEOUT_S + sim.count * 0.2) != "ready":
            raise BenchError(f"{sim.name} did not report ready:\n{log_tail(sim.log)}")
    return sims


def start_agent(
    procs: Processes, workdir: Path, db: Path, config: Path, n: int, settings: Settings
) -> tuple[subprocess.Popen[bytes], Path]:
    log = workdir / f"agent-{n}.log"
    serve = [
        "--log-level", settings.agent_log_level,
        "serve", "--db", str(db), "--config", str(config), "--listen", f"127.0.0.1:{free_port()}",
    ]  # fmt: skip
    if settings.profile_dir is not None:
        # pyinstrument samples in the agent's own process, so the CPU figure includes its overhead. A session file
        # keeps every frame; render_profile() turns it into text once the agent has stopped.
        session = profile_session(settings.profile_dir, n)
        argv = [sys.executable, "-m", "pyinstrument", "-r", "pyisession", "-o", str(session), "-m", "agent.cli", *serve]
    else:
        argv = [*smooth_edge_command(), *serve]
    return procs.start(f"agent ({n} machines)", argv, log), log


def profile_session(profile_dir: Path, n: int) -> Path:
    return profile_dir.resolve() / f"agent-{n}.pyisession"


def render_profile(profile_dir: Path, n: int) -> None:
    """The agent's profile as text, with the libraries it spends its time in (asyncua, SQLAlchemy) shown."""
    session = profile_session(profile_dir, n)
    report = session.with_suffix(".txt")
    argv = [sys.executable, "-m", "pyinstrument", "--load", str(session), "-o", str(report)]
    for library in ("asyncua", "sqlalchemy", "aiosqlite", "structlog"):
        argv += ["--show", f"*/{library}/*"]
    done = subprocess.run(argv, capture_output=True, check=False, timeout=STARTUP_TIMEOUT_S)
    if done.returncode != 0 or not report.exists():
        progress(f"  could not render {session}: {done.stderr.decode(errors='replace')[-500:]}")
    else:
        progress(f"  agent profile: {report}")


def wait_connected(db: Path, n: int, agent: subprocess.Popen[bytes], log: Path) -> None:
    """Every session has reconciled once: it writes its machine's collector_state row right before subscribing."""
    timeout = STARTUP_TIMEOUT_S + STARTUP_PER_MACHINE_S * n
    deadline = time.monotonic() + timeout
    last_shown = -1
    while True:
        if agent.poll() is not None:
            raise BenchError(f"the agent exited with {agent.returncode} while starting:\n{log_tail(log)}")
        try:
            seen = int(query(db, "SELECT count(*) FROM collector_state")[0][0])
        except sqlite3.OperationalError:
            seen = 0  # the agent is still opening the file
        if seen >= n:
            return
        if seen != last_shown and seen % 25 == 0:
            progress(f"  {seen}/{n} machines connected")
            last_shown = seen
        if time.monotonic() > deadline:
            raise BenchError(f"only {seen}/{n} machines connected after {timeout:g}s:\n{log_tail(log)}")
        time.sleep(0.5)


def sleep_until(epoch: float, children: Sequence[tuple[str, subprocess.Popen[bytes], Path]]) -> None:
    while (left := epoch - time.time()) > 0:
        time.sleep(min(left, 0.5))
        for name, proc, log in children:
            if proc.poll() is not None:
                raise BenchError(f"{name} exited with {proc.returncode} during the run:\n{log_tail(log)}")


def wait_drained(db: Path, expected: int) -> float:
    """Wait until the agent wrote a usage for every change, or its count stops growing; returns the seconds."""
    started = time.monotonic()
    last, last_change = -1, started
    while True:
        count = int(query(db, "SELECT count(*) FROM tool_usages")[0][0])
        now = time.monotonic()
        if count != last:
            last, last_change = count, now
        if count >= expected or now - last_change > DRAIN_QUIET_S or now - started > DRAIN_MAX_S:
            return now - started
        time.sleep(0.25)


@dataclass(frozen=True)
class CpuSample:
    agent: float
    agent_loop: float
    sims: float


def sample_cpu(agent: subprocess.Popen[bytes], sims: Sequence[SimProcess]) -> CpuSample:
    return CpuSample(
        cpu_seconds(agent.pid), cpu_seconds(agent.pid, main_thread=True), sum(cpu_seconds(s.proc.pid) for s in sims)
    )


def run_one(n: int, settings: Settings, workdir: Path, seeded: Path) -> RunResult:
    db = workdir / f"agent-{n}.db"
    copy_database(seeded, db)
    with Processes(STOP_GRACE_S, progress) as procs:
        progress(f"{n} machines: starting the simulator(s)")
        sims = start_simulators(procs, workdir, n, settings)
        config = workdir / f"machines-{n}.toml"
        write_config(config, sims, settings)
        progress(f"{n} machines: starting the agent, waiting for every session")
        agent, agent_log = start_agent(procs, workdir, db, config, n, settings)
        wait_connected(db, n, agent, agent_log)
        start = time.time() + 1.0  # a moment for the "go" line to reach every simulator
        for sim in sims:
            assert sim.proc.stdin is not None
            sim.proc.stdin.write(f"go {start!r}\n".encode())
            sim.proc.stdin.flush()
        window = (start + settings.warmup, start + settings.warmup + settings.seconds)
        children = [("the agent", agent, agent_log), *((s.name, s.proc, s.log) for s in sims)]
        progress(f"{n} machines: warm-up {settings.warmup:g}s, then {settings.seconds:g}s measured")
        sleep_until(window[0], children)
        cpu0 = sample_cpu(agent, sims)
        sleep_until(window[1], children)
        cpu1 = sample_cpu(agent, sims)
        elapsed = settings.seconds
        records: list[ChangeRecord] = []
        for sim in sims:
            # The simulator may still be catching up on its own schedule; it says "done" once all is written.
            if read_line(sim.proc, sim.name, sim.log, DRAIN_MAX_S) != "done":
                raise BenchError(f"{sim.name} did not finish its schedule:\n{log_tail(sim.log)}")
            records += [ChangeRecord(**r) for r in json.loads(sim.out.read_text())]
        tool_changes_total = sum(1 for r in records if r.tool)
        progress(f"{n} machines: waiting for the agent to record all {tool_changes_total} tool changes")
        drained = wait_drained(db, n + tool_changes_total)  # + the usage each session opened at its first contact
        procs.stop(agent)  # before reading: every log line is flushed, and no more writes come
    if settings.profile_dir is not None:
        render_profile(settings.profile_dir, n)
    return analyse(n, len(sims), settings, db, agent_log, records, window, elapsed, cpu0, cpu1, drained)


# ================================================================================================= analysis


@dataclass(frozen=True)
class UsageRow:
    usage_id: str
    machine: str
    tool: int
    start: float
    end: float | None
    created: float
    updated: float
    interrupted: bool


def load_usages(db: Path) -> dict[str, list[UsageRow]]:
    rows = query(
        db, "SELECT id, machine_id, start_time, end_time, created_at, updated_at, usage_metrics FROM tool_usages"
    )
    by_machine: dict[str, list[UsageRow]] = {}
    for usage_id, machine, start, end, created, updated, metrics_text in rows:
        metrics = json.loads(metrics_text)
        row = UsageRow(
            usage_id=str(usage_id),
            machine=machine,
            tool=int(metrics.get("tool_number", 0)),
            start=stored_time(start),
            end=stored_time(end) if end else None,
            created=stored_time(created),
            updated=stored_time(updated),
            interrupted=bool(metrics.get("interrupted")),
        )
        by_machine.setdefault(machine, []).append(row)
    return by_machine


def logged_times(log: Path) -> dict[tuple[str, str], float]:
    """(usage id without dashes, "opened"/"closed") -> when the agent logged it, i.e. after its COMMIT."""
    found: dict[tuple[str, str], float] = {}
    with log.open(errors="replace") as lines:
        for line in lines:
            if '"collector.usage_' not in line:
                continue
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                what = entry["event"].rsplit("_", 1)[1]
                found[(entry["usage_id"].replace("-", ""), what)] = datetime.fromisoformat(
                    entry["timestamp"]
                ).timestamp()
    return found


def in_range(rows: list[UsageRow], keys: list[float], low: float, high: float) -> list[UsageRow]:
    """The rows whose key (sorted alongside `rows`) lies in [low, high]."""
    return rows[bisect.bisect_left(keys, low) : bisect.bisect_right(keys, high)]


@dataclass
class Matches:
    """What the usages say about the window's tool changes, one side (opens or closes) at a time."""

    latency_ms: list[float] = field(default_factory=list)
    logged_ms: list[float] = field(default_factory=list)
    shifts_ms: list[float] = field(default_factory=list)  # recorded at a later time than the change was made
    doubled: int = 0
    usage_ids: set[str] = field(default_factory=set)

    def add(self, usage: UsageRow, at: float, change: ChangeRecord, committed: float, logged: float | None) -> None:
        """`at` is the time the usage has (start or end); the change happened at `change.before..after`."""
        self.usage_ids.add(usage.usage_id)
        # Latency counts from the change, even when the usage carries another time (see `shifts_ms`).
        made = at if change.before <= at <= change.after else change.after
        if made != at:
            self.shifts_ms.append((at - made) * 1000)
        self.latency_ms.append((committed - made) * 1000)
        if logged is not None:
            self.logged_ms.append((logged - made) * 1000)


def match_changes(
    changes: list[ChangeRecord], usages: dict[str, list[UsageRow]], logged: dict[tuple[str, str], float]
) -> tuple[Matches, Matches]:
    """Pair every tool change with the usage it opened and the one it closed.

    A usage should carry the change's SourceTimestamp exactly. Failing that, a usage of the same machine (and
    tool, for opens) whose time falls after the change but before that machine's next tool change is the same
    usage recorded with a later time: the collector applied a later notification of another signal first.
    """
    opens, closes = Matches(), Matches()
    following: dict[tuple[str, int], float] = {}
    per_machine: dict[str, list[ChangeRecord]] = {}
    for change in changes:
        per_machine.setdefault(change.machine, []).append(change)
    for machine_changes in per_machine.values():
        machine_changes.sort(key=lambda c: c.before)
        for change, nxt in itertools.pairwise(machine_changes):
            following[(change.machine, change.tick)] = nxt.before
    for machine, rows in usages.items():
        starts = sorted(rows, key=lambda r: r.start)
        start_keys = [r.start for r in starts]
        ended = sorted((r for r in rows if r.end is not None), key=lambda r: r.end or 0.0)
        end_keys = [r.end or 0.0 for r in ended]
        for change in per_machine.get(machine, []):
            # The usage could sit anywhere up to the next tool change; the last change's bound is generous.
            limit = following.get((machine, change.tick), change.after + 5.0)
            opened = [u for u in in_range(starts, start_keys, change.before, change.after) if u.tool == change.tool]
            if not opened:
                opened = [u for u in in_range(starts, start_keys, change.before, limit) if u.tool == change.tool][:1]
            opens.doubled += max(0, len(opened) - 1)
            for usage in opened[:1]:
                key = (usage.usage_id.replace("-", ""), "opened")
                opens.add(usage, usage.start, change, usage.created, logged.get(key))
            closed = (
                in_range(ended, end_keys, change.before, change.after)
                or in_range(ended, end_keys, change.before, limit)[:1]
            )
            closes.doubled += max(0, len(closed) - 1)
            for usage in closed[:1]:
                assert usage.end is not None
                key = (usage.usage_id.replace("-", ""), "closed")
                closes.add(usage, usage.end, change, usage.updated, logged.get(key))
    return opens, closes


def analyse(
    n: int,
    sim_count: int,
    settings: Settings,
    db: Path,
    agent_log: Path,
    records: list[ChangeRecord],
    window: tuple[float, float],
    elapsed: float,
    cpu0: CpuSample,
    cpu1: CpuSample,
    drained: float,
) -> RunResult:
    usages = load_usages(db)
    in_window = [r for r in records if window[0] <= r.before < window[1]]
    changes = [r for r in in_window if r.tool]
    logged = logged_times(agent_log)
    opens, closes = match_changes(changes, usages, logged)
    # Usages that began in the window but belong to no change: doubled, or opened by a reconcile after a lost
    # session (those are marked interrupted). Matched against every change: a change just before the window
    # can have its usage start inside it.
    every_open, _ = match_changes([r for r in records if r.tool], usages, logged)
    window_rows = [u for rows in usages.values() for u in rows if window[0] <= u.start < window[1]]
    extra = sum(1 for u in window_rows if u.usage_id not in every_open.usage_ids)
    interrupted = sum(1 for u in window_rows if u.interrupted)
    problems: list[str] = []
    for side, found in (("opened", opens), ("closed", closes)):
        if len(found.latency_ms) < len(changes):
            problems.append(f"{len(changes) - len(found.latency_ms)} tool changes {side} no usage")
        if found.doubled:
            problems.append(f"{found.doubled} tool changes {side} more than one usage")
        if found.shifts_ms:
            problems.append(
                f"{len(found.shifts_ms)} usages were {side} at a later time than the tool change (by up to "
                f"{max(found.shifts_ms):.1f} ms): a later notification of another signal was applied first"
            )
    # Count commits by when they happened, not by which change they belong to: that is the agent's throughput.
    committed = sum(1 for rows in usages.values() for u in rows if window[0] <= u.created < window[1])
    if committed < 0.95 * len(changes):
        problems.append(
            f"the agent committed {committed / elapsed:.0f} tool changes/s of {len(changes) / elapsed:.0f} offered: "
            "it falls behind, so its backlog and the latency grow with --seconds"
        )
    if extra:
        problems.append(f"{extra} usages began in the window without a tool change")
    if interrupted:
        problems.append(f"{interrupted} usages in the window are marked interrupted (a session was lost)")
    recorded = len(opens.latency_ms) + len(closes.latency_ms)
    with_line = len(opens.logged_ms) + len(closes.logged_ms)
    if settings.agent_log_level.upper() in ("INFO", "DEBUG") and with_line < recorded:
        problems.append(f"{recorded - with_line} opens/closes have no agent log line")
    return RunResult(
        machines=n,
        sim_processes=sim_count,
        offered_changes_per_s=len(in_window) / elapsed,
        tool_changes_per_s=len(changes) / elapsed,
        commits_per_s=committed / elapsed,
        tool_changes=len(changes),
        opens_recorded=len(opens.latency_ms),
        closes_recorded=len(closes.latency_ms),
        time_shifted=len(opens.shifts_ms) + len(closes.shifts_ms),
        extra_usages=extra,
        interrupted_usages=interrupted,
        latency_ms=percentiles(opens.latency_ms + closes.latency_ms),
        open_latency_ms=percentiles(opens.latency_ms),
        close_latency_ms=percentiles(closes.latency_ms),
        logged_latency_ms=percentiles(opens.logged_ms + closes.logged_ms),
        shift_ms=percentiles(opens.shifts_ms + closes.shifts_ms),
        agent_cpu_pct=(cpu1.agent - cpu0.agent) / elapsed * 100,
        agent_loop_cpu_pct=(cpu1.agent_loop - cpu0.agent_loop) / elapsed * 100,
        sim_cpu_pct=(cpu1.sims - cpu0.sims) / elapsed * 100,
        sim_lag_ms=percentiles([r.lag_s * 1000 for r in in_window]),
        drained_s=drained,
        problems=problems,
    )


# =================================================================================================== report


def fmt(stats: dict[str, float], key: str) -> str:
    return f"{stats[key]:.0f}" if key in stats else "-"


def table(results: Sequence[RunResult], settings: Settings) -> str:
    header = (
        "machines", "sims", "changes/s", "tool chg/s", "commits/s", "tool chg", "opens rec/exp", "closes rec/exp", "time off", "extra",
        "p50 ms", "p99 ms", "max ms", "logged p99", "agent CPU%", "loop CPU%", "sim CPU%", "sim lag p99",
    )  # fmt: skip
    rows = [header]
    for r in results:
        rows.append(
            (
                str(r.machines),
                str(r.sim_processes),
                f"{r.offered_changes_per_s:.0f}",
                f"{r.tool_changes_per_s:.0f}",
                f"{r.commits_per_s:.0f}",
                str(r.tool_changes),
                f"{r.opens_recorded}/{r.tool_changes}",
                f"{r.closes_recorded}/{r.tool_changes}",
                str(r.time_shifted),
                str(r.extra_usages),
                fmt(r.latency_ms, "p50"),
                fmt(r.latency_ms, "p99"),
                fmt(r.latency_ms, "max"),
                fmt(r.logged_latency_ms, "p99"),
                f"{r.agent_cpu_pct:.0f}",
                f"{r.agent_loop_cpu_pct:.0f}",
                f"{r.sim_cpu_pct:.0f}",
                fmt(r.sim_lag_ms, "p99"),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"change->commit latency, {settings.rate:g} changes/s per machine (a tool change every "
        f"{settings.tool_every / settings.rate:g} s), {settings.seconds:g} s measured after {settings.warmup:g} s "
        f"warm-up, publishing interval {settings.publishing_interval_ms} ms, agent log level "
        f"{settings.agent_log_level.upper()}; CPU in % of one core",
        "",
    ]
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if i == 0:
            lines.append("  ".join("-" * width for width in widths))
    lines.append("")
    for r in results:
        for problem in r.problems:
            lines.append(f"{r.machines} machines: {problem}")
    goal = next((r for r in results if r.machines == GOAL_MACHINES), None)
    if goal is None:
        lines.append(f"goal ({GOAL_MACHINES} machines, p99 < {GOAL_P99_MS:g} ms): not measured in this run")
    else:
        p99 = goal.latency_ms.get("p99")
        complete = goal.opens_recorded == goal.closes_recorded == goal.tool_changes and not goal.extra_usages
        complete = complete and not goal.time_shifted
        met = p99 is not None and p99 < GOAL_P99_MS and complete
        shown = f"{p99:.0f} ms" if p99 is not None else "no usages"
        verdict = "MET" if met else "NOT MET"
        lines.append(
            f"goal ({GOAL_MACHINES} machines, p99 < {GOAL_P99_MS:g} ms): {verdict} (p99 {shown}"
            f"{'' if complete else ', usages missing, extra or with wrong times'})"
        )
    return "\n".join(lines)


def report(settings: Settings, results: Sequence[RunResult], load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
        "goal": {"machines": GOAL_MACHINES, "p99_ms": GOAL_P99_MS},
        "results": [asdict(r) for r in results],
    }


# ===================================================================================================== main


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Change->commit latency and CPU of the OPC UA collector: N simulated CNC machines against one "
        "`smooth-edge serve` agent, simulator and agent in separate processes."
    )
    parser.add_argument("--machines", default="10,50,200", help="comma-separated machine counts (default 10,50,200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per count (default 20)")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds of changes first (default 3)")
    parser.add_argument("--rate", type=float, default=10.0, help="signal changes per second per machine (default 10)")
    parser.add_argument(
        "--tool-every", type=int, default=5, help="every Nth change is a tool change, the rest speeds (default 5)"
    )
    parser.add_argument(
        "--publishing-interval-ms",
        type=int,
        default=100,
        help="the machines' OPC UA publishing interval; latency cannot be below it (default 100)",
    )
    parser.add_argument(
        "--sim-processes", type=int, default=0, help="simulator processes (default: one per --machines-per-sim)"
    )
    parser.add_argument(
        "--machines-per-sim", type=int, default=100, help="machines per simulator process by default (default 100)"
    )
    parser.add_argument("--agent-log-level", default="INFO", help="the agent's --log-level (default INFO, as deployed)")
    parser.add_argument(
        "--profile-agent", type=Path, default=None, metavar="DIR", help="run the agent under pyinstrument; reports here"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help="work in DIR and keep it (logs, databases, configs)"
    )
    args = parser.parse_args(argv)
    try:
        machines = tuple(int(part) for part in args.machines.split(",") if part.strip())
    except ValueError:
        parser.error(f"--machines must be comma-separated integers, not {args.machines!r}")
    if not machines or min(machines) < 1 or max(machines) > 999:
        parser.error("--machines needs at least one count, each 1..999")
    if args.seconds <= 0 or args.warmup < 0 or args.rate <= 0 or args.tool_every < 1:
        parser.error("--seconds and --rate must be > 0, --warmup >= 0, --tool-every >= 1")
    if args.publishing_interval_ms < 10 or args.sim_processes < 0 or args.machines_per_sim < 1:
        parser.error("--publishing-interval-ms must be >= 10, --sim-processes >= 0, --machines-per-sim >= 1")
    if args.profile_agent is not None:
        try:
            import pyinstrument  # noqa: F401
        except ImportError:
            parser.error("--profile-agent needs pyinstrument in this interpreter")
        args.profile_agent.mkdir(parents=True, exist_ok=True)
    return Settings(
        machines=machines,
        seconds=args.seconds,
        warmup=args.warmup,
        rate=args.rate,
        tool_every=args.tool_every,
        publishing_interval_ms=args.publishing_interval_ms,
        sim_processes=args.sim_processes,
        machines_per_sim=args.machines_per_sim,
        agent_log_level=args.agent_log_level,
        profile_dir=args.profile_agent,
        json_path=args.json,
        keep_dir=args.keep,
    )


@contextlib.contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """Turn SIGTERM into SystemExit so the same clean-up as Ctrl-C runs (children stopped, temp dir removed)."""

    def _handler(signum: int, frame: FrameType | None) -> None:
        progress("SIGTERM; stopping processes and removing temp files")
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, _handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """A temp dir removed on exit, or `--keep DIR`, left in place for a look at the logs."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        if any(keep.iterdir()):  # a previous run's database would be seeded twice
            raise BenchError(f"--keep {keep}: the directory must be empty")
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="smooth-bench-collector-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    load_before = os.getloadavg()
    results: list[RunResult] = []
    try:
        with sigterm_as_exit(), workspace(settings.keep_dir) as workdir:
            progress(f"work dir {workdir}")
            seeded = workdir / "seed.db"
            most = max(settings.machines)
            progress(f"seeding T1..T{TOOLS} presets for {most} machines")
            seed_presets(seeded, most)  # once; every run gets a fresh copy
            for n in settings.machines:
                results.append(run_one(n, settings, workdir, seeded))
                last = results[-1]
                progress(
                    f"{n} machines: p99 {fmt(last.latency_ms, 'p99')} ms, agent CPU {last.agent_cpu_pct:.0f}%, "
                    f"drained in {last.drained_s:.1f}s"
                )
    except KeyboardInterrupt:
        progress("interrupted; processes stopped and temp files removed")
        return 130
    except BenchError as err:
        progress(f"error: {err}")
        return 1
    progress("done")
    print(table(results, settings))
    if settings.json_path is not None:
        settings.json_path.write_text(json.dumps(report(settings, results, load_before), indent=2) + "\n")
        progress(f"wrote {settings.json_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == SIM_CHILD:
        raise SystemExit(simulator_main(sys.argv[2:]))
    raise SystemExit(main())
