"""Throughput and latency of the Smooth Edge gRPC API (Get, List, Create) with authentication on, next to the
same server with `--insecure-disable-auth` and to a bare grpc.aio echo server, plus an in-process measurement
of what the audit log costs a Create. Run from the repository root: `python tests/bench/bench_api.py --help`;
see README.md beside this file. Not part of the pytest run (no test_ prefix), and asserts nothing about timing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import json
import math
import os
import platform
import random
import selectors
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any, Generic, TypeVar
from unittest import mock

import asyncpg
import grpc
import sqlalchemy as sa
from benchkit import Processes, free_port, log_tail, smooth_edge_command
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb
from smooth.core.v1 import tool_item_pb2_grpc as item_grpc
from sqlalchemy.engine import make_url

from agent.logs import configure_logging
from server.api import mapping
from server.domain.errors import SmoothError
from server.domain.identity import AuditEntry
from server.store import migrate
from server.store.repository import Store, Transaction
from server.store.tables import audit_log
from server.usecases import audit
from server.usecases.app import build
from server.usecases.entities import Caller

BENCH_DIR = Path(__file__).resolve().parent
ECHO_SERVER = BENCH_DIR / "echo_server.py"
ECHO_METHOD = "/bench.Echo/Echo"
# List measures a filtered first page: the filter makes the store do real work (a WHERE over the whole
# table, half of which matches) instead of just reading the first 50 rows.
LIST_FILTER = "tool_type = END_MILL"
LIST_PAGE_SIZE = 50
SEED_CONCURRENCY = 32
STARTUP_TIMEOUT_S = 60.0
STOP_GRACE_S = 5.0
OPERATIONS = ("Get", "List", "Create")  # Create last: it grows the table that Get and List read
BENCH_EMAIL = "bench@example.com"
# The side names, also the keys of the JSON results.
AUTH_ON, AUTH_OFF, ECHO = "auth on", "auth off", "echo"
WITH_AUDIT, WITHOUT_AUDIT = "audit", "no audit"
# What the server passes as the caller's peer; the in-process Create gets the same, so its audit entry matches.
IN_PROCESS_PEER = "ipv4:127.0.0.1:0"
# The SQLite store serializes writers on one lock, so more in-flight in-process Creates would only queue. So does
# the PostgreSQL store (--pg), on one advisory lock.
IN_PROCESS_CONCURRENCY = 1
SEED_LABEL, IN_PROCESS_LABEL = "seed", "in-process"
# --pg: every database of a run is bench_api_<run tag>_<label>; CREATE DATABASE ... TEMPLATE refuses a template
# with a connection, so a leftover one (a backend still closing) is terminated and the copy tried again.
PG_PREFIX = "bench_api"
PG_COPY_ATTEMPTS = 5

Metadata = tuple[tuple[str, str], ...]

_T0 = time.perf_counter()


def progress(message: str) -> None:
    """Phase messages go to stderr so stdout holds only the tables."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A setup failure worth a one-line message rather than a traceback."""


# --------------------------------------------------------------------------------------------- processes


def start_echo(procs: Processes, workdir: Path) -> int:
    log = workdir / "echo.log"
    proc = procs.start(
        "echo server",
        [sys.executable, str(ECHO_SERVER), "--exit-on-stdin-eof"],
        log,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = b""
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not line.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not sel.select(remaining):
                raise BenchError(f"echo server printed no port within {STARTUP_TIMEOUT_S:g}s:\n{log_tail(log)}")
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                raise BenchError(f"echo server exited with {proc.wait()}:\n{log_tail(log)}")
            line += chunk
    return int(line.decode().strip())


def run_cli(args: Sequence[str], log: Path) -> str:
    """Run one `smooth-edge` command to completion; its stderr goes to `log`, its stdout is returned."""
    argv = [*smooth_edge_command(), "--log-level", "WARNING", *args]
    shown = f"smooth-edge {' '.join(args[:2])}"
    try:
        done = subprocess.run(argv, capture_output=True, timeout=STARTUP_TIMEOUT_S, check=False, cwd=Path.cwd())
    except subprocess.TimeoutExpired as err:
        raise BenchError(f"`{shown}` did not finish within {STARTUP_TIMEOUT_S:g}s") from err
    with log.open("ab") as log_file:
        log_file.write(done.stderr)
    if done.returncode != 0:
        raise BenchError(f"`{shown}` exited with {done.returncode}:\n{log_tail(log)}")
    return done.stdout.decode(errors="replace")


def create_api_key(workdir: Path, db: str) -> str:
    """Migrate a fresh database and create an admin user in it, as an operator would; return the key's secret."""
    log = workdir / "cli.log"
    run_cli(["migrate", "--db", db], log)
    out = run_cli(["user", "create", "--db", db, "--email", BENCH_EMAIL, "--admin"], log)
    lines = out.strip().splitlines()
    secret = lines[-1].strip() if lines else ""
    if not secret.startswith("sek_"):  # the output is not shown: it may hold the secret in an unexpected place
        raise BenchError("`smooth-edge user create` did not print an API key (sek_...) on its last stdout line")
    return secret


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database, through the online backup API (safe while a server uses it)."""
    with contextlib.closing(sqlite3.connect(source)) as src, contextlib.closing(sqlite3.connect(target)) as dst:
        src.backup(dst)


class SqliteFiles:
    """The default: every server, and the in-process run, on its own SQLite file in the work dir; the copies are
    made with the online backup while the seeding server still runs."""

    engine = "SQLite"

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def db(self, label: str) -> str:
        return str(self.workdir / f"{label}.db")

    async def create_seed(self) -> None:
        """Nothing to do: `smooth-edge migrate` creates the file."""

    async def copy_seed(self, seed_server: SmoothServer, procs: Processes, labels: Sequence[str]) -> None:
        progress(f"copying the seeded database to {', '.join(Path(self.db(label)).name for label in labels)}")
        for label in labels:
            await asyncio.to_thread(copy_database, Path(seed_server.db), Path(self.db(label)))
        procs.stop(seed_server.proc)

    def title(self) -> str | None:
        return None


class PgDatabases:
    """--pg: every server, and the in-process run, on its own fresh PostgreSQL database, bench_api_<run>_<label>.
    The copies are CREATE DATABASE ... TEMPLATE of the seeded database, once its server has stopped. Leaving the
    context (on any exit; the children must be gone by then) drops every database this run created."""

    engine = "PostgreSQL"

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.admin_dsn = parsed.set(drivername="postgresql").render_as_string(hide_password=False)
        self._app_url = parsed.set(drivername="postgresql+asyncpg")
        self.run_tag = uuid.uuid4().hex[:8]
        self.created: list[str] = []
        self.server: dict[str, str] = {}  # version and the settings that bear on a commit's cost

    def name(self, label: str) -> str:
        return f"{PG_PREFIX}_{self.run_tag}_{label.replace('-', '_')}"

    def db(self, label: str) -> str:
        return self._app_url.set(database=self.name(label)).render_as_string(hide_password=False)

    async def _admin(self) -> asyncpg.Connection:
        try:
            conn: asyncpg.Connection = await asyncpg.connect(self.admin_dsn, timeout=STARTUP_TIMEOUT_S)
        except (OSError, asyncpg.PostgresError) as err:  # a timeout is an OSError too
            raise BenchError(f"--pg: cannot connect to PostgreSQL: {type(err).__name__}: {err}") from err
        return conn

    async def _create(self, conn: asyncpg.Connection, label: str, template: str | None = None) -> None:
        name = self.name(label)
        self.created.append(name)  # before CREATE: an interrupt in between still gets a DROP ... IF EXISTS
        await conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))

    async def create_seed(self) -> None:
        conn = await self._admin()
        try:
            for setting in ("server_version", "synchronous_commit", "fsync", "autovacuum"):
                self.server[setting] = str(await conn.fetchval(f"SHOW {setting}"))
            await self._create(conn, SEED_LABEL)
        finally:
            await conn.close()

    async def copy_seed(self, seed_server: SmoothServer, procs: Processes, labels: Sequence[str]) -> None:
        # A template must have no connection: the seeding server goes first.
        procs.stop(seed_server.proc)
        seed = self.name(SEED_LABEL)
        # Every copy starts vacuumed and with planner statistics, whether or not autovacuum (off on some
        # machines) got to the seeded tables: as a central that has been running would be, and all alike.
        progress(f"VACUUM (ANALYZE) of {seed}")
        conn = await asyncpg.connect(make_url(self.admin_dsn).set(database=seed).render_as_string(hide_password=False))
        try:
            await conn.execute("VACUUM (ANALYZE)")
        finally:
            await conn.close()
        progress(f"copying the seeded database to {', '.join(self.name(label) for label in labels)}")
        conn = await self._admin()
        try:
            for label in labels:
                for attempt in range(1, PG_COPY_ATTEMPTS + 1):
                    leftovers = await conn.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = $1 AND pid <> pg_backend_pid()",
                        seed,
                    )
                    if leftovers:
                        progress(f"terminated {len(leftovers)} leftover connection(s) to {seed}")
                    try:
                        await self._create(conn, label, template=seed)
                        break
                    except asyncpg.ObjectInUseError:
                        self.created.remove(self.name(label))
                        if attempt == PG_COPY_ATTEMPTS:
                            raise
        finally:
            await conn.close()

    async def drop_all(self) -> None:
        conn = await self._admin()
        try:
            for name in list(self.created):
                try:
                    # FORCE: a child killed mid-transaction may leave a backend behind for a moment.
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                    self.created.remove(name)
                except asyncpg.PostgresError as err:
                    progress(f"could not drop {name}: {err}")
        finally:
            await conn.close()

    def __enter__(self) -> PgDatabases:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self.created:
            return
        progress(f"dropping {', '.join(self.created)}")
        try:
            asyncio.run(self.drop_all())
        except BenchError as err:
            progress(f"{err}; drop them by hand: {', '.join(self.created)}")

    def title(self) -> str:
        settings = ", ".join(
            f"{key} {self.server.get(key, '?')}" for key in ("synchronous_commit", "fsync", "autovacuum")
        )
        return "\n".join(
            [
                f"engine: PostgreSQL {self.server.get('server_version', '?')}; {settings}",
                "  serve --db postgresql+asyncpg://... (central mode's store): a database per smooth-edge process and",
                "  one for the in-process run, each a copy of the seeded database made after VACUUM (ANALYZE)",
            ]
        )


Storage = SqliteFiles | PgDatabases


@dataclass(frozen=True)
class SmoothServer:
    name: str
    db: str  # what --db got: a SQLite file's path or a PostgreSQL URL
    port: int
    proc: subprocess.Popen[bytes]
    log: Path


def start_smooth(procs: Processes, workdir: Path, label: str, db: str, *, auth: bool) -> SmoothServer:
    name = f"smooth-edge ({label})"
    port = free_port()
    log = workdir / f"{label}.log"
    argv = [
        *smooth_edge_command(),
        # WARNING: at INFO the server writes a JSON line per RPC, and that would be part of the measurement.
        "--log-level", "WARNING",
        "serve", "--db", db, "--listen", f"127.0.0.1:{port}", "--migrate",
        *([] if auth else ["--insecure-disable-auth"]),
    ]  # fmt: skip
    proc = procs.start(name, argv, log, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return SmoothServer(name, db, port, proc, log)


async def wait_serving(channel: grpc.aio.Channel, server: SmoothServer) -> None:
    """Poll grpc.health.v1 (open without a key) until SERVING; fail fast with the log if the process dies."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            raise BenchError(
                f"{server.name} exited with {server.proc.returncode} while starting:\n{log_tail(server.log)}"
            )
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass  # not listening yet (migrating)
        if time.monotonic() > deadline:
            raise BenchError(f"{server.name} not SERVING after {STARTUP_TIMEOUT_S:g}s:\n{log_tail(server.log)}")
        await asyncio.sleep(0.1)


async def check_auth_modes(on: item_grpc.ToolItemServiceStub, off: item_grpc.ToolItemServiceStub, item_id: str) -> None:
    """A call without a key: refused by the auth-on server, answered by the auth-off one. Guards the labels."""
    request = item_pb.GetToolItemRequest(id=item_id)
    try:
        await on.GetToolItem(request)
    except grpc.aio.AioRpcError as err:
        if err.code() != grpc.StatusCode.UNAUTHENTICATED:
            raise BenchError(
                f"auth-on server: a call without a key got {err.code().name}, not UNAUTHENTICATED"
            ) from err
    else:
        raise BenchError("auth-on server answered a call without a key: authentication is not on")
    try:
        await off.GetToolItem(request)
    except grpc.aio.AioRpcError as err:
        raise BenchError(f"--insecure-disable-auth server refused a call without a key: {describe(err)}") from err


# ------------------------------------------------------------------------------------------- measurement

Req = TypeVar("Req")


@dataclass(frozen=True)
class Load(Generic[Req]):
    """What one worker does per call: build a request (untimed), then await the call (timed)."""

    build: Callable[[], Req]
    invoke: Callable[[Req], Awaitable[object]]


@dataclass(frozen=True)
class Side:
    """One thing a case runs: a load, the group whose rate it counts towards (e.g. all auth-on servers; default
    its own name), and what must hold while it runs (e.g. a patch)."""

    name: str
    load: Load[Any]
    group: str = ""
    around: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext

    @property
    def group_name(self) -> str:
        return self.group or self.name


@dataclass
class Window:
    """The raw result of driving one load for a while."""

    calls: int
    errors: int
    elapsed_s: float
    latencies_s: list[float]
    first_error: str | None


@dataclass
class Stats:
    calls: int
    errors: int
    seconds: float
    calls_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    round_calls_per_s: list[float]  # one rate per round (its forward and its backward window together)


@dataclass
class Comparison:
    """A side's rate over a baseline's: overall, the lowest and highest per-round ratio, and the time per call
    the side adds (1/rate - 1/baseline rate: latency at concurrency 1, time of the bottleneck when saturated)."""

    ratio: float | None
    round_low: float | None
    round_high: float | None
    added_us_per_call: float | None


@dataclass
class Measured:
    groups: dict[str, Stats]  # per group: the windows of all its sides together
    sides: dict[str, Stats]  # per side (for the smooth-edge servers: per process)


@dataclass
class Row:
    operation: str
    concurrency: int
    request_bytes: float
    response_bytes_auth_on: int
    response_bytes_auth_off: int
    auth_on: Stats  # all auth-on servers together
    auth_off: Stats  # all auth-off servers together
    echo: Stats | None  # None with --skip-echo
    on_vs_off: Comparison  # the cost of authentication (+ authorization); audit is on both sides
    on_vs_echo: Comparison | None  # the share of the bare gRPC rate the auth-on server keeps
    # The largest |1 - ratio| between two servers of the same mode (A/A): the noise floor of on_vs_off.
    aa_spread: float | None
    servers: dict[str, Stats]  # per smooth-edge process


@dataclass
class InProcess:
    """EntityService.create of a ToolItem called directly (no gRPC), with the audit append and without."""

    concurrency: int
    audit: Stats
    no_audit: Stats
    audit_vs_none: Comparison


def describe(err: Exception) -> str:
    if isinstance(err, grpc.aio.AioRpcError):
        return f"{err.code().name}: {err.details()}"
    return f"{type(err).__name__}: {err}"


async def drive(load: Load[Any], concurrency: int, seconds: float) -> Window:
    """A closed loop: `concurrency` tasks each keep exactly one call in flight until the deadline."""
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors, first_error
        while time.perf_counter() < deadline:
            request = load.build()
            started = time.perf_counter()
            try:
                await load.invoke(request)
            except (grpc.aio.AioRpcError, SmoothError) as err:
                # Count and go on: one bad call should not void a run, but the table shows it.
                errors += 1
                first_error = first_error or describe(err)
                continue
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    # Calls begun before the deadline finish after it; counting them over the real elapsed time keeps rate honest.
    return Window(len(latencies), errors, time.perf_counter() - started, latencies, first_error)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of an ascending sequence."""
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def _rate(windows: Sequence[Window]) -> float:
    seconds = sum(w.elapsed_s for w in windows)
    return sum(w.calls for w in windows) / seconds if seconds > 0 else 0.0


def summarize(windows: Sequence[Window], rounds: int) -> Stats:
    latencies = sorted(itertools.chain.from_iterable(w.latencies_s for w in windows))
    per_round = len(windows) // rounds
    return Stats(
        calls=len(latencies),
        errors=sum(w.errors for w in windows),
        seconds=round(sum(w.elapsed_s for w in windows), 3),
        calls_per_s=_rate(windows),
        p50_ms=percentile(latencies, 0.50) * 1000 if latencies else None,
        p99_ms=percentile(latencies, 0.99) * 1000 if latencies else None,
        round_calls_per_s=[_rate(windows[i * per_round : (i + 1) * per_round]) for i in range(rounds)],
    )


def compare(side: Stats, baseline: Stats) -> Comparison:
    if not side.calls_per_s or not baseline.calls_per_s:
        return Comparison(None, None, None, None)
    per_round = [
        s / b for s, b in zip(side.round_calls_per_s, baseline.round_calls_per_s, strict=True) if s > 0 and b > 0
    ]
    return Comparison(
        ratio=side.calls_per_s / baseline.calls_per_s,
        round_low=min(per_round, default=None),
        round_high=max(per_round, default=None),
        added_us_per_call=1e6 / side.calls_per_s - 1e6 / baseline.calls_per_s,
    )


def traded(sides: Sequence[Side]) -> list[Side]:
    """The sides with the first two groups trading places (the k-th side of one for the k-th of the other)."""
    groups = list(dict.fromkeys(side.group_name for side in sides))
    if len(groups) < 2:
        return list(sides)
    first = [side for side in sides if side.group_name == groups[0]]
    second = [side for side in sides if side.group_name == groups[1]]
    if len(first) != len(second):
        return list(sides)
    trade = {a.name: b for a, b in zip(first, second, strict=True)} | {
        b.name: a for a, b in zip(first, second, strict=True)
    }
    return [trade.get(side.name, side) for side in sides]


async def measure(label: str, sides: Sequence[Side], concurrency: int, settings: Settings) -> Measured:
    """Interleave the sides. Each round runs them forward, then back (A B C C B A), so a linear drift on a shared
    machine hits every side equally. Every second round trades the places of the first two groups (auth on and off, or
    audit and no audit), so over two rounds the compared groups sit equally often next to each neighbour, at the
    turn and at the ends. A group gets `seconds` in all, shared by its sides, each in 2 x rounds windows. Each
    side warms up (unmeasured) just before its first window."""
    group_sizes: dict[str, int] = {}
    for side in sides:
        group_sizes[side.group_name] = group_sizes.get(side.group_name, 0) + 1
    window_s = {side.name: settings.seconds / (2 * settings.rounds * group_sizes[side.group_name]) for side in sides}
    compared = " and ".join(list(group_sizes)[:2])
    progress(
        f"{label}: {settings.rounds} x [{', '.join(side.name for side in sides)}, and back] (every second round trades "
        f"{compared}); windows {'/'.join(f'{w:g}' for w in sorted(set(window_s.values())))}s, "
        f"warm-up {settings.warmup:g}s"
    )
    by_side: dict[str, list[Window]] = {side.name: [] for side in sides}
    by_group: dict[str, list[Window]] = {group: [] for group in group_sizes}  # in time order, so by round
    for round_number in range(settings.rounds):
        order = traded(sides) if round_number % 2 else list(sides)
        for side in [*order, *reversed(order)]:
            with side.around():
                if not by_side[side.name]:
                    await drive(side.load, concurrency, settings.warmup)
                window = await drive(side.load, concurrency, window_s[side.name])
            by_side[side.name].append(window)
            by_group[side.group_name].append(window)
    for name, windows in by_side.items():
        failed = [w for w in windows if w.errors]
        if failed:
            progress(f"{label}: {sum(w.errors for w in failed)} failed {name} calls, first: {failed[0].first_error}")
    measured = Measured(
        groups={group: summarize(windows, settings.rounds) for group, windows in by_group.items()},
        sides={name: summarize(windows, settings.rounds) for name, windows in by_side.items()},
    )
    progress(f"{label}: " + ", ".join(f"{group} {st.calls_per_s:.0f}/s" for group, st in measured.groups.items()))
    return measured


def aa_spread(sides: Sequence[Side], stats: dict[str, Stats]) -> float | None:
    """The largest |1 - ratio| between two sides of the same group: what on/off would show with no difference."""
    spreads: list[float] = []
    for a, b in itertools.combinations(sides, 2):
        if a.group and a.group_name == b.group_name:
            ratio = compare(stats[a.name], stats[b.name]).ratio
            if ratio is not None:
                spreads.append(abs(1 - ratio))
    return max(spreads, default=None)


# ------------------------------------------------------------------------------------------- requests

GEOMETRY: dict[str, dict[str, float]] = {
    "END_MILL": {"DC": 10, "NOF": 4, "OAL": 72},
    "DRILL": {"DC": 8.5, "SIG": 140, "OAL": 103},
    "REAMER": {"DC": 6, "NOF": 6},
}


def tool_item(name: str, part_number: str, tool_type: str, diameter: float) -> item_pb.ToolItem:
    geometry = struct_pb2.Struct()
    geometry.update({**GEOMETRY[tool_type], "DC": diameter})
    return item_pb.ToolItem(
        name=name,
        manufacturer="Acme",
        part_number=part_number,
        tool_type=item_pb.ToolType.Value(f"TOOL_TYPE_{tool_type}"),
        geometry=geometry,
        tags=["carbide", "bench"],
    )


async def seed(stub: item_grpc.ToolItemServiceStub, count: int, metadata: Metadata) -> list[str]:
    """Create `count` items (half END_MILL, the rest DRILL and REAMER) through the API; return their ids."""
    ids: list[str] = []
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:  # one shared iterator: the workers split the range between them
            tool_type = "END_MILL" if i % 10 < 5 else "DRILL" if i % 10 < 8 else "REAMER"
            item = tool_item(f"Seed {tool_type} {i}", f"SEED-{i:06d}", tool_type, 3 + (i % 17))
            created = await stub.CreateToolItem(item_pb.CreateToolItemRequest(tool_item=item), metadata=metadata)
            ids.append(created.id)

    try:
        await asyncio.gather(*(worker() for _ in range(min(SEED_CONCURRENCY, max(count, 1)))))
    except grpc.aio.AioRpcError as err:
        raise BenchError(f"seeding through the auth-on server failed: {describe(err)}") from err
    return ids


def create_builder() -> Callable[[], item_pb.CreateToolItemRequest]:
    """Create requests, each with a new, fixed-width (so fixed-size) part number and its own request_id: issue 11's
    Create is entity + change record + audit entry + idempotency record, one transaction, as a client that retries
    safely sends it (AIP-155)."""
    run_tag = uuid.uuid4().hex[:8]
    counter = itertools.count()

    def create() -> item_pb.CreateToolItemRequest:
        n = next(counter)
        item = tool_item("Bench end mill", f"BENCH-{run_tag}-{n:08d}", "END_MILL", 10)
        return item_pb.CreateToolItemRequest(tool_item=item, request_id=f"bench-{run_tag}-{n:08d}")

    return create


def operation_builders(ids: Sequence[str], rng: random.Random) -> dict[str, Callable[[], Any]]:
    """The request each operation sends. Both smooth-edge servers hold the same rows, so the same ids work."""
    list_request = item_pb.ListToolItemsRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER)

    def get() -> item_pb.GetToolItemRequest:
        return item_pb.GetToolItemRequest(id=rng.choice(ids))

    def list_() -> item_pb.ListToolItemsRequest:
        return list_request

    return {"Get": get, "List": list_, "Create": create_builder()}


def smooth_method(stub: item_grpc.ToolItemServiceStub, operation: str) -> Any:
    methods: dict[str, Any] = {
        "Get": stub.GetToolItem,
        "List": stub.ListToolItems,
        "Create": stub.CreateToolItem,
    }
    return methods[operation]


def with_metadata(multicallable: Any, metadata: Metadata) -> Callable[[Any], Awaitable[object]]:
    # Per-call metadata rather than a client interceptor (agent.grpc_client): grpc.aio's interceptor path costs
    # the client more than the header does, and every side gets exactly the same header either way.
    call: Callable[[Any], Awaitable[object]] = functools.partial(multicallable, metadata=metadata)
    return call


async def response_size(invoke: Callable[[Any], Awaitable[object]], request: Any) -> int:
    reply: Any = await invoke(request)
    size: int = reply.ByteSize()
    return size


# ------------------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    rounds: int
    servers_per_mode: int
    concurrency: tuple[int, ...]
    items: int
    skip_echo: bool
    json_path: Path | None
    pg: str | None = None  # --pg: the PostgreSQL server the databases go on, instead of SQLite files


async def seed_and_copy(
    settings: Settings,
    seed_server: SmoothServer,
    metadata: Metadata,
    storage: Storage,
    procs: Processes,
    copies: Sequence[str],
) -> list[str]:
    """Seed through the seeding server (auth on), copy its database to each label of `copies`, and stop the
    seeding server (SQLite: after the copies; PostgreSQL: before, a template must have no connection); return the
    seeded ids."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{seed_server.port}") as channel:
        progress(f"waiting for {seed_server.name} on port {seed_server.port} to be SERVING")
        await wait_serving(channel, seed_server)
        progress(f"seeding {settings.items} tool items through {seed_server.name}")
        ids = await seed(item_grpc.ToolItemServiceStub(channel), settings.items, metadata)
    if not ids:
        raise BenchError("--items must be at least 1: Get needs existing ids")
    await storage.copy_seed(seed_server, procs, copies)
    return ids


@dataclass(frozen=True)
class Target:
    """One measured smooth-edge server and the stub that calls it."""

    server: SmoothServer
    auth: bool
    replica: int
    stub: item_grpc.ToolItemServiceStub

    @property
    def side(self) -> str:
        return f"{AUTH_ON if self.auth else AUTH_OFF} #{self.replica}"


async def run_grpc(
    settings: Settings,
    procs: Processes,
    workdir: Path,
    echo_port: int | None,
    metadata: Metadata,
    seed_server: SmoothServer,
    storage: Storage,
) -> list[Row]:
    # Every measured server starts at the same time on a copy of one seeded database: the same rows (ids,
    # owner, audit chain), so Get and List read and send the same data with auth on and off, and no server
    # carries a history the others lack (the seeding's WAL, a grown heap). Two (--servers-per-mode) processes
    # per mode: a process can run a few percent faster or slower than its twin for as long as it lives
    # (placement, memory layout), which averages out over two, and the twins' ratio shows that noise (A/A).
    replicas = range(1, settings.servers_per_mode + 1)
    labels = {(auth, i): f"auth-{'on' if auth else 'off'}-{i}" for i in replicas for auth in (True, False)}
    ids = await seed_and_copy(settings, seed_server, metadata, storage, procs, [*labels.values(), IN_PROCESS_LABEL])
    servers = {
        key: start_smooth(procs, workdir, label, storage.db(label), auth=key[0]) for key, label in labels.items()
    }
    # One channel (so one HTTP/2 connection) per server, with identical options. One connection carries all
    # in-flight calls: HTTP/2 multiplexes them, and grpc's default stream limit is far above 50, so the calls
    # are truly concurrent on the wire.
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    async with contextlib.AsyncExitStack() as stack:

        async def channel(port: int) -> grpc.aio.Channel:
            opened: grpc.aio.Channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=options)
            )
            return opened

        channels = {key: await channel(server.port) for key, server in servers.items()}
        progress(f"waiting for {', '.join(server.name for server in servers.values())} to be SERVING")
        await asyncio.gather(*(wait_serving(channels[key], server) for key, server in servers.items()))
        targets = [
            Target(server, key[0], key[1], item_grpc.ToolItemServiceStub(channels[key]))
            for key, server in servers.items()
        ]
        on_targets = [t for t in targets if t.auth]
        off_targets = [t for t in targets if not t.auth]
        for on_target, off_target in zip(on_targets, off_targets, strict=True):
            await check_auth_modes(on_target.stub, off_target.stub, ids[0])
        page = await on_targets[0].stub.ListToolItems(
            item_pb.ListToolItemsRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER), metadata=metadata
        )
        progress(f"List with filter {LIST_FILTER!r} returns {len(page.tool_items)} items per page")

        echo_call: Any = None
        if echo_port is not None:
            echo_channel = await channel(echo_port)
            echo_call = echo_channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

        builders = operation_builders(ids, random.Random(20240601))
        rows: list[Row] = []
        for operation in OPERATIONS:
            build = builders[operation]
            invoke = {t.side: with_metadata(smooth_method(t.stub, operation), metadata) for t in targets}
            # auth on #1, auth off #1, auth on #2, ...: each mode's servers spread over the sequence.
            sides = [Side(t.side, Load(build, invoke[t.side]), group=AUTH_ON if t.auth else AUTH_OFF) for t in targets]
            # The echo server gets the same bytes the real call sends (a pool, so Get ids vary as they do there).
            pool = [build().SerializeToString() for _ in range(256)]
            request_bytes = sum(map(len, pool)) / len(pool)
            if echo_call is not None:
                echo_build = functools.partial(next, itertools.cycle(pool))
                sides.append(Side(ECHO, Load(echo_build, with_metadata(echo_call, metadata))))
            # One request for both: the same Get id, so the same row (a Create makes a row in each database).
            request = build()
            response_on = await response_size(invoke[on_targets[0].side], request)
            response_off = await response_size(invoke[off_targets[0].side], request)
            for concurrency in settings.concurrency:
                measured = await measure(f"{operation} x{concurrency}", sides, concurrency, settings)
                on, off, echo = (measured.groups[AUTH_ON], measured.groups[AUTH_OFF], measured.groups.get(ECHO))
                rows.append(
                    Row(
                        operation=operation,
                        concurrency=concurrency,
                        request_bytes=request_bytes,
                        response_bytes_auth_on=response_on,
                        response_bytes_auth_off=response_off,
                        auth_on=on,
                        auth_off=off,
                        echo=echo,
                        on_vs_off=compare(on, off),
                        on_vs_echo=None if echo is None else compare(on, echo),
                        aa_spread=aa_spread(sides, measured.sides),
                        servers={t.side: measured.sides[t.side] for t in targets},
                    )
                )
        return rows


async def _skip_audit(tx: Transaction, entry: AuditEntry) -> None:
    """Stands in for server.usecases.audit.append: the entry is neither hashed nor written."""


def without_audit() -> contextlib.AbstractContextManager[object]:
    # The use case calls `audit.append` through the module, so replacing the module attribute reaches it.
    return mock.patch.object(audit, "append", _skip_audit)


async def check_audit_patch(store: Store, load: Load[Any]) -> None:
    """A Create adds an audit entry and one under `without_audit` does not: the patch does its job."""

    async def entries() -> int:
        # A plain count of the table: independent of how the store keeps track of the chain's head.
        async with store.engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(audit_log))).scalar_one())

    before = await entries()
    await load.invoke(load.build())
    audited = await entries()
    with without_audit():
        await load.invoke(load.build())
    if audited != before + 1 or await entries() != audited:
        raise BenchError(
            "replacing server.usecases.audit.append did not switch the audit write off and on; "
            "check how server/usecases/entities.py appends audit entries now"
        )


async def run_in_process(db: str, secret: str, settings: Settings) -> InProcess:
    configure_logging("WARNING")  # as the servers run: no log line per call
    async with Store(db) as store:
        # As `serve --migrate` does: the copy is at the schema of the servers, this process may see a newer one.
        await migrate.upgrade(store.engine)
        use_cases = build(store)
        # The caller the auth-on server builds for this key: the row's owner and the audit entry match gRPC's.
        caller = Caller(principal=await use_cases.authenticator.authenticate(secret), peer=IN_PROCESS_PEER)
        service = use_cases.entities["tool_item"]
        requests = create_builder()
        fields = mapping.settable_fields(service.kind)

        def values() -> tuple[dict[str, Any], Caller]:
            # What the servicer hands the use case for a CreateToolItem (its values, and the caller with the
            # request's request_id); built untimed, like a request.
            request = requests()
            return mapping.from_proto(service.kind, request.tool_item, fields), replace(
                caller, request_id=request.request_id
            )

        def create(call: tuple[dict[str, Any], Caller]) -> Awaitable[object]:
            return service.create(call[0], entity_id=None, caller=call[1])

        load: Load[tuple[dict[str, Any], Caller]] = Load(values, create)
        await check_audit_patch(store, load)
        sides = [Side(WITH_AUDIT, load), Side(WITHOUT_AUDIT, load, around=without_audit)]
        label = f"in-process Create x{IN_PROCESS_CONCURRENCY}"
        measured = await measure(label, sides, IN_PROCESS_CONCURRENCY, settings)
    with_audit, no_audit = measured.groups[WITH_AUDIT], measured.groups[WITHOUT_AUDIT]
    return InProcess(IN_PROCESS_CONCURRENCY, with_audit, no_audit, compare(with_audit, no_audit))


async def run(
    settings: Settings,
    procs: Processes,
    workdir: Path,
    echo_port: int | None,
    secret: str,
    seed_server: SmoothServer,
    storage: Storage,
) -> tuple[list[Row], InProcess]:
    metadata: Metadata = (("authorization", f"Bearer {secret}"),)
    rows = await run_grpc(settings, procs, workdir, echo_port, metadata, seed_server, storage)
    # After the gRPC runs, with the servers idle: the client and the servers do not compete with it for CPU.
    in_process = await run_in_process(storage.db(IN_PROCESS_LABEL), secret, settings)
    return rows, in_process


# --------------------------------------------------------------------------------------------- report


@dataclass
class Estimate:
    """Create with authentication and audit against Create with neither: the auth-off rate with the audit time
    measured in-process taken out (1/neither = 1/auth-off - audit us per call). Combines two measurements."""

    concurrency: int
    auth_on_per_s: float
    neither_per_s: float | None
    ratio: float | None


def estimates(rows: Sequence[Row], in_process: InProcess) -> list[Estimate]:
    audit_us = in_process.audit_vs_none.added_us_per_call
    out: list[Estimate] = []
    for r in rows:
        if r.operation != "Create" or not r.auth_off.calls_per_s:
            continue
        neither: float | None = None
        if audit_us is not None and 1e6 / r.auth_off.calls_per_s - audit_us > 0:
            neither = 1e6 / (1e6 / r.auth_off.calls_per_s - audit_us)
        ratio = r.auth_on.calls_per_s / neither if neither else None
        out.append(Estimate(r.concurrency, r.auth_on.calls_per_s, neither, ratio))
    return out


def _num(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _rounds(c: Comparison | None) -> str:
    if c is None or c.round_low is None or c.round_high is None:
        return "-"
    return f"{c.round_low:.3f}-{c.round_high:.3f}"


def _rule(header: str) -> list[str]:
    return [header, "-" * len(header)]


def _on(engine: str) -> str:
    """What the title lines add to name the engine: nothing for SQLite, the default (its report is unchanged)."""
    return "" if engine == SqliteFiles.engine else f" on {engine}"


def grpc_table(rows: Sequence[Row], servers_per_mode: int, engine: str = SqliteFiles.engine) -> list[str]:
    lines = [
        f"gRPC{_on(engine)}: {AUTH_ON} (API key checked) vs {AUTH_OFF} (serve --insecure-disable-auth) "
        f"vs {ECHO} (bare grpc.aio); {servers_per_mode} smooth-edge process(es) per mode"
    ]
    lines += _rule(
        f"{'operation':<9} {'conc':>4} {'on/s':>7} {'off/s':>7} {'on/off':>6} {'per round':>11} {'A/A':>5} "
        f"{'+us/call':>8} {'echo/s':>7} {'on/echo':>7} {'req B':>6} {'resp B':>11} {'errors':>6}"
    )
    for r in rows:
        echo_rate = None if r.echo is None else r.echo.calls_per_s
        on_echo = None if r.on_vs_echo is None else r.on_vs_echo.ratio
        same = r.response_bytes_auth_on == r.response_bytes_auth_off
        resp = f"{r.response_bytes_auth_on}" + ("" if same else f"/{r.response_bytes_auth_off}")
        errors = r.auth_on.errors + r.auth_off.errors + (r.echo.errors if r.echo else 0)
        aa = "-" if r.aa_spread is None else f"{r.aa_spread * 100:.1f}%"
        lines.append(
            f"{r.operation:<9} {r.concurrency:>4} {r.auth_on.calls_per_s:>7.0f} {r.auth_off.calls_per_s:>7.0f} "
            f"{_num(r.on_vs_off.ratio, '.3f'):>6} {_rounds(r.on_vs_off):>11} {aa:>5} "
            f"{_num(r.on_vs_off.added_us_per_call, '.0f'):>8} {_num(echo_rate, '.0f'):>7} {_num(on_echo, '.3f'):>7} "
            f"{r.request_bytes:>6.0f} {resp:>11} {errors:>6}"
        )
    lines += [
        "on/off = auth-on calls/s / auth-off calls/s. Get, List: the cost of authentication + authorization.",
        "  Create: the same, but not of audit (both servers write it); see the in-process table for audit.",
        "per round = lowest-highest on/off of the rounds; A/A = largest gap between two servers of the same mode,",
        "  the noise floor: an on/off no further from 1 than that is not a measured difference",
        "+us/call = 1e6/on - 1e6/off (time auth adds per call); on/echo = auth-on calls/s / echo calls/s",
        "resp B = auth-on reply bytes (/auth-off reply bytes if they differ); errors = failed calls, not in rates",
    ]
    return lines


def latency_table(rows: Sequence[Row], engine: str = SqliteFiles.engine) -> list[str]:
    lines = [f"latency per call{_on(engine)}, ms (nearest-rank percentiles)"]
    lines += _rule(
        f"{'operation':<9} {'conc':>4} {'on p50':>8} {'p99':>7} {'off p50':>8} {'p99':>7} {'echo p50':>8} {'p99':>7}"
    )
    for r in rows:
        echo_p50 = None if r.echo is None else r.echo.p50_ms
        echo_p99 = None if r.echo is None else r.echo.p99_ms
        lines.append(
            f"{r.operation:<9} {r.concurrency:>4} "
            f"{_num(r.auth_on.p50_ms, '.2f'):>8} {_num(r.auth_on.p99_ms, '.2f'):>7} "
            f"{_num(r.auth_off.p50_ms, '.2f'):>8} {_num(r.auth_off.p99_ms, '.2f'):>7} "
            f"{_num(echo_p50, '.2f'):>8} {_num(echo_p99, '.2f'):>7}"
        )
    return lines


def in_process_table(result: InProcess, rows: Sequence[Row], engine: str = SqliteFiles.engine) -> list[str]:
    a, n, c = result.audit, result.no_audit, result.audit_vs_none
    lines = [f"in-process EntityService.create (ToolItem, {engine}, no gRPC): audit.append vs a no-op in its place"]
    lines += _rule(
        f"{'operation':<9} {'conc':>4} {'audit/s':>8} {'no-audit/s':>10} {'ratio':>6} {'per round':>11} "
        f"{'+us/call':>8} {'audit p50':>9} {'p99':>7} {'no-audit p50':>12} {'p99':>7} {'errors':>6}"
    )
    lines.append(
        f"{'Create':<9} {result.concurrency:>4} {a.calls_per_s:>8.0f} {n.calls_per_s:>10.0f} {_num(c.ratio, '.3f'):>6} "
        f"{_rounds(c):>11} {_num(c.added_us_per_call, '.0f'):>8} {_num(a.p50_ms, '.2f'):>9} {_num(a.p99_ms, '.2f'):>7} "
        f"{_num(n.p50_ms, '.2f'):>12} {_num(n.p99_ms, '.2f'):>7} {a.errors + n.errors:>6}"
    )
    lines += [
        "ratio = audit calls/s / no-audit calls/s; +us/call = 1e6/audit - 1e6/no-audit (time audit adds per Create)",
        "",
        f"Create{_on(engine)}, authentication + audit vs neither "
        "(estimate: 1/neither = 1/off - the in-process audit time per call)",
    ]
    lines += _rule(f"{'operation':<9} {'conc':>4} {'on/s':>7} {'neither/s':>9} {'ratio':>6}")
    for e in estimates(rows, result):
        lines.append(
            f"{'Create':<9} {e.concurrency:>4} {e.auth_on_per_s:>7.0f} {_num(e.neither_per_s, '.0f'):>9} "
            f"{_num(e.ratio, '.3f'):>6}"
        )
    return lines


def tables(rows: Sequence[Row], in_process: InProcess, servers_per_mode: int, storage: Storage) -> str:
    title = storage.title()
    return "\n".join(
        [
            *([title, ""] if title else []),
            *grpc_table(rows, servers_per_mode, storage.engine),
            "",
            *latency_table(rows, storage.engine),
            "",
            *in_process_table(in_process, rows, storage.engine),
        ]
    )


def report(
    settings: Settings,
    rows: Sequence[Row],
    in_process: InProcess,
    load_before: tuple[float, float, float],
    storage: Storage,
) -> dict[str, Any]:
    # Without --pg the JSON is as it always was; with it, "postgresql" says where the databases were.
    postgresql: dict[str, Any] = {}
    if isinstance(storage, PgDatabases):
        url = make_url(storage.admin_dsn)
        postgresql = {"postgresql": {"host": url.host, "port": url.port, **storage.server}}
    return {
        "settings": {
            "seconds": settings.seconds,
            "warmup_seconds": settings.warmup,
            "rounds": settings.rounds,
            "servers_per_mode": settings.servers_per_mode,
            "concurrency": list(settings.concurrency),
            "seeded_items": settings.items,
            "list_filter": LIST_FILTER,
            "list_page_size": LIST_PAGE_SIZE,
            "echo": not settings.skip_echo,
            "in_process_concurrency": IN_PROCESS_CONCURRENCY,
            **postgresql,
        },
        "machine": {
            "python": platform.python_version(),
            "grpc": grpc.__version__,
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "results": [asdict(r) for r in rows],
        "in_process_create": asdict(in_process),
        "create_auth_and_audit_estimates": [asdict(e) for e in estimates(rows, in_process)],
    }


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Smooth Edge gRPC API with auth on vs --insecure-disable-auth vs a bare grpc.aio echo server, "
        "plus the in-process cost of the audit log on Create."
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=5.0,
        help="measured seconds per mode and case, shared by its servers (default 5)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each side (default 1)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="forward-and-back passes over the sides per case; keep it even (default 2)",
    )
    parser.add_argument(
        "--servers-per-mode",
        type=int,
        default=2,
        help="smooth-edge processes with auth on, and as many with it off (default 2; 2+ shows the A/A noise)",
    )
    parser.add_argument("--concurrency", default="1,50", help="comma-separated in-flight call counts (default 1,50)")
    parser.add_argument("--items", type=int, default=2000, help="tool items to seed before measuring (default 2000)")
    parser.add_argument("--skip-echo", action="store_true", help="no echo server, so no on/echo ratio (saves a third)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    parser.add_argument(
        "--pg",
        metavar="URL",
        default=None,
        help="run every server, and the in-process Create, on its own fresh PostgreSQL database on this server "
        "(postgresql://user@host:port/db; the role must create databases), not on a SQLite file; "
        "the bench_api_* databases are dropped on exit",
    )
    args = parser.parse_args(argv)
    try:
        levels = tuple(int(part) for part in args.concurrency.split(",") if part.strip())
    except ValueError:
        parser.error(f"--concurrency must be comma-separated integers, not {args.concurrency!r}")
    if not levels or min(levels) < 1:
        parser.error("--concurrency needs at least one level, each >= 1")
    if args.seconds <= 0 or args.warmup < 0 or min(args.items, args.rounds, args.servers_per_mode) < 1:
        parser.error("--seconds must be > 0, --warmup >= 0, and --items, --rounds, --servers-per-mode >= 1")
    if args.pg is not None and make_url_or_none(args.pg) is None:
        parser.error(f"--pg must be a postgresql:// URL, not {args.pg!r}")
    return Settings(
        args.seconds,
        args.warmup,
        args.rounds,
        args.servers_per_mode,
        levels,
        args.items,
        args.skip_echo,
        args.json,
        args.pg,
    )


def make_url_or_none(url: str) -> sa.URL | None:
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError:
        return None
    return parsed if parsed.get_backend_name() == "postgresql" else None


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


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    load_before = os.getloadavg()
    pg = PgDatabases(settings.pg) if settings.pg is not None else None
    try:
        # Exit order is the reverse: processes stop first, then the PostgreSQL databases (--pg) are dropped, then
        # the temp dir (with the SQLite files) goes.
        with (
            sigterm_as_exit(),
            tempfile.TemporaryDirectory(prefix="smooth-bench-") as tmp,
            pg if pg is not None else contextlib.nullcontext(),
            Processes(STOP_GRACE_S, progress) as procs,
        ):
            workdir = Path(tmp)
            storage: Storage = pg if pg is not None else SqliteFiles(workdir)
            progress(f"work dir {workdir}")
            echo_port: int | None = None
            if not settings.skip_echo:
                progress("starting the echo server")
                echo_port = start_echo(procs, workdir)
            asyncio.run(storage.create_seed())
            fresh = "SQLite file" if pg is None else f"PostgreSQL database {pg.name(SEED_LABEL)}"
            progress(f"smooth-edge migrate + user create --admin on a fresh {fresh}, for an API key")
            secret = create_api_key(workdir, storage.db(SEED_LABEL))
            seed_server = start_smooth(procs, workdir, SEED_LABEL, storage.db(SEED_LABEL), auth=True)
            rows, in_process = asyncio.run(run(settings, procs, workdir, echo_port, secret, seed_server, storage))
    except KeyboardInterrupt:
        progress("interrupted; processes stopped and temp files removed")
        return 130
    except BenchError as err:
        progress(f"error: {err}")
        return 1
    except SmoothError as err:  # from the in-process use cases
        progress(f"error: {err.message}")
        return 1
    except asyncpg.PostgresError as err:  # --pg: creating or copying a database
        progress(f"error: PostgreSQL: {type(err).__name__}: {err}")
        return 1
    progress("done")
    print(tables(rows, in_process, settings.servers_per_mode, storage))
    if settings.json_path is not None:
        result = report(settings, rows, in_process, load_before, storage)
        settings.json_path.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {settings.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
