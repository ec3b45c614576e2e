"""Throughput and latency of the Smooth Edge gRPC API (Get, List, Create), each next to a bare grpc.aio echo
server as the baseline. Run from the repository root: `python tests/bench/bench_api.py --help`; see README.md
beside this file. Not part of the pytest run (no test_ prefix), and asserts nothing about timing."""

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
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb
from smooth.core.v1 import tool_item_pb2_grpc as item_grpc

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

_T0 = time.perf_counter()


def progress(message: str) -> None:
    """Phase messages go to stderr so stdout holds only the table."""
    print(f"[{time.perf_counter() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class BenchError(Exception):
    """A setup failure worth a one-line message rather than a traceback."""


# --------------------------------------------------------------------------------------------- processes


class Processes:
    """Child processes, stopped in reverse start order on exit: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, grace_s: float = STOP_GRACE_S) -> None:
        self._grace_s = grace_s
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, argv: Sequence[str], log: Path, *, stdin: int, stdout: int) -> subprocess.Popen[bytes]:
        with log.open("ab") as log_file:  # the child keeps its own copy of the descriptor
            # A new session keeps the terminal's Ctrl-C away from the children: the bench stops them itself,
            # in order, instead of racing their own SIGINT handling.
            proc = subprocess.Popen(
                list(argv), stdin=stdin, stdout=stdout, stderr=log_file, start_new_session=True, cwd=Path.cwd()
            )
        self._children.append((name, proc))
        return proc

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, proc in reversed(self._children):
            self._stop(name, proc)
        self._children.clear()

    def _stop(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()  # closing stdin also tells the echo server to exit
        if proc.poll() is not None:
            return
        progress(f"stopping {name} (pid {proc.pid})")
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(self._grace_s)
        except subprocess.TimeoutExpired:
            progress(f"{name} ignored SIGTERM for {self._grace_s:g}s; killing it")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    # smooth-edge does not report a port it picked itself at --log-level WARNING, so choose one here; the
    # window between close() and the server's bind is tiny on a bench machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def smooth_edge_command() -> list[str]:
    # Prefer the console script of the interpreter running the bench (the project venv); fall back to the module.
    script = Path(sys.executable).parent / "smooth-edge"
    if script.exists():
        return [str(script)]
    found = shutil.which("smooth-edge")
    return [found] if found else [sys.executable, "-m", "agent.cli"]


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


def start_smooth(procs: Processes, workdir: Path) -> tuple[int, subprocess.Popen[bytes], Path]:
    port = free_port()
    log = workdir / "smooth-edge.log"
    argv = [
        *smooth_edge_command(),
        # WARNING: at INFO the server writes a JSON line per RPC, and that would be part of the measurement.
        "--log-level", "WARNING",
        "serve", "--db", str(workdir / "bench.db"), "--listen", f"127.0.0.1:{port}", "--migrate",
    ]  # fmt: skip
    proc = procs.start("smooth-edge", argv, log, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return port, proc, log


async def wait_serving(channel: grpc.aio.Channel, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Poll grpc.health.v1 until SERVING; fail fast with the server's log if the process dies."""
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            raise BenchError(f"smooth-edge exited with {proc.returncode} while starting:\n{log_tail(log)}")
        try:
            reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass  # not listening yet (migrating)
        if time.monotonic() > deadline:
            raise BenchError(f"smooth-edge not SERVING after {STARTUP_TIMEOUT_S:g}s:\n{log_tail(log)}")
        await asyncio.sleep(0.1)


# ------------------------------------------------------------------------------------------- measurement

Req = TypeVar("Req")


@dataclass(frozen=True)
class Load(Generic[Req]):
    """What one worker does per call: build a request (untimed), then await the RPC (timed)."""

    build: Callable[[], Req]
    invoke: Callable[[Req], Awaitable[object]]


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


@dataclass
class Row:
    operation: str
    concurrency: int
    request_bytes: float
    response_bytes: int
    smooth: Stats
    echo: Stats
    ratio: float | None  # smooth calls/s over echo calls/s


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
            except grpc.aio.AioRpcError as err:
                # Count and go on: one bad call should not void a run, but the table shows it.
                errors += 1
                first_error = first_error or f"{err.code().name}: {err.details()}"
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


def summarize(windows: Sequence[Window]) -> Stats:
    latencies = sorted(itertools.chain.from_iterable(w.latencies_s for w in windows))
    calls = len(latencies)
    seconds = sum(w.elapsed_s for w in windows)
    return Stats(
        calls=calls,
        errors=sum(w.errors for w in windows),
        seconds=round(seconds, 3),
        calls_per_s=calls / seconds if seconds > 0 else 0.0,
        p50_ms=percentile(latencies, 0.50) * 1000 if latencies else None,
        p99_ms=percentile(latencies, 0.99) * 1000 if latencies else None,
    )


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


async def seed(stub: item_grpc.ToolItemServiceStub, count: int) -> list[str]:
    """Create `count` items (half END_MILL, the rest DRILL and REAMER) through the API; return their ids."""
    ids: list[str] = []
    numbers = iter(range(count))

    async def worker() -> None:
        for i in numbers:  # one shared iterator: the workers split the range between them
            tool_type = "END_MILL" if i % 10 < 5 else "DRILL" if i % 10 < 8 else "REAMER"
            item = tool_item(f"Seed {tool_type} {i}", f"SEED-{i:06d}", tool_type, 3 + (i % 17))
            created = await stub.CreateToolItem(item_pb.CreateToolItemRequest(tool_item=item))
            ids.append(created.id)

    await asyncio.gather(*(worker() for _ in range(min(SEED_CONCURRENCY, max(count, 1)))))
    return ids


def operation_builders(ids: Sequence[str], rng: random.Random) -> dict[str, Callable[[], Any]]:
    """The request each operation sends; every Create carries a new, fixed-width (so fixed-size) part number."""
    run_tag = uuid.uuid4().hex[:8]
    counter = itertools.count()
    list_request = item_pb.ListToolItemsRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER)

    def get() -> item_pb.GetToolItemRequest:
        return item_pb.GetToolItemRequest(id=rng.choice(ids))

    def list_() -> item_pb.ListToolItemsRequest:
        return list_request

    def create() -> item_pb.CreateToolItemRequest:
        item = tool_item("Bench end mill", f"BENCH-{run_tag}-{next(counter):08d}", "END_MILL", 10)
        return item_pb.CreateToolItemRequest(tool_item=item)

    return {"Get": get, "List": list_, "Create": create}


def smooth_method(stub: item_grpc.ToolItemServiceStub, operation: str) -> Callable[[Any], Awaitable[object]]:
    methods: dict[str, Callable[[Any], Awaitable[object]]] = {
        "Get": stub.GetToolItem,
        "List": stub.ListToolItems,
        "Create": stub.CreateToolItem,
    }
    return methods[operation]


# ------------------------------------------------------------------------------------------------ run


@dataclass(frozen=True)
class Settings:
    seconds: float
    warmup: float
    concurrency: tuple[int, ...]
    items: int
    json_path: Path | None


async def measure_pair(
    operation: str, concurrency: int, smooth: Load[Any], echo: Load[bytes], settings: Settings
) -> tuple[Stats, Stats]:
    """Smooth, echo, smooth again (A-B-A): drift on a shared machine hits both sides about equally."""
    label = f"{operation} x{concurrency}"
    half = settings.seconds / 2
    progress(f"{label}: warm-up smooth-edge {settings.warmup:g}s, measure {half:g}s")
    await drive(smooth, concurrency, settings.warmup)
    first = await drive(smooth, concurrency, half)
    progress(f"{label}: warm-up echo {settings.warmup:g}s, measure {settings.seconds:g}s")
    await drive(echo, concurrency, settings.warmup)
    baseline = await drive(echo, concurrency, settings.seconds)
    progress(f"{label}: measure smooth-edge again {half:g}s")
    second = await drive(smooth, concurrency, half)
    for side, window in (("smooth-edge", first), ("echo", baseline), ("smooth-edge", second)):
        if window.errors:
            progress(f"{label}: {window.errors} failed {side} calls, first: {window.first_error}")
    return summarize([first, second]), summarize([baseline])


async def run(
    settings: Settings, echo_port: int, smooth_port: int, smooth_proc: subprocess.Popen[bytes], log: Path
) -> list[Row]:
    # Separate channels (so separate HTTP/2 connections) for the two servers, with identical options. One
    # connection carries all in-flight calls: HTTP/2 multiplexes them, and grpc's default stream limit is far
    # above 50, so the calls are truly concurrent on the wire.
    options = [("grpc.max_receive_message_length", 16 * 1024 * 1024)]
    async with (
        grpc.aio.insecure_channel(f"127.0.0.1:{smooth_port}", options=options) as smooth_channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{echo_port}", options=options) as echo_channel,
    ):
        progress(f"waiting for smooth-edge on port {smooth_port} to be SERVING")
        await wait_serving(smooth_channel, smooth_proc, log)
        stub = item_grpc.ToolItemServiceStub(smooth_channel)
        echo_call = echo_channel.unary_unary(ECHO_METHOD, request_serializer=None, response_deserializer=None)

        progress(f"seeding {settings.items} tool items")
        ids = await seed(stub, settings.items)
        if not ids:
            raise BenchError("--items must be at least 1: Get needs existing ids")
        page = await stub.ListToolItems(item_pb.ListToolItemsRequest(page_size=LIST_PAGE_SIZE, filter=LIST_FILTER))
        progress(f"seeded; List with filter {LIST_FILTER!r} returns {len(page.tool_items)} items per page")

        builders = operation_builders(ids, random.Random(20240601))
        rows: list[Row] = []
        for operation in OPERATIONS:
            build = builders[operation]
            invoke = smooth_method(stub, operation)
            # The echo server gets the same bytes the real call sends (a pool, so Get ids vary as they do there).
            pool = [build().SerializeToString() for _ in range(256)]
            request_bytes = sum(map(len, pool)) / len(pool)
            response_bytes = (await invoke(build())).ByteSize()  # type: ignore[attr-defined]
            smooth_load: Load[Any] = Load(build, invoke)
            echo_load: Load[bytes] = Load(functools.partial(next, itertools.cycle(pool)), echo_call)
            for concurrency in settings.concurrency:
                smooth_stats, echo_stats = await measure_pair(operation, concurrency, smooth_load, echo_load, settings)
                ratio = smooth_stats.calls_per_s / echo_stats.calls_per_s if echo_stats.calls_per_s else None
                rows.append(Row(operation, concurrency, request_bytes, response_bytes, smooth_stats, echo_stats, ratio))
        return rows


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(rows: Sequence[Row]) -> str:
    header = (
        f"{'operation':<9} {'conc':>4} {'smooth/s':>9} {'echo/s':>9} {'ratio':>6} "
        f"{'smooth p50':>10} {'p99':>7} {'echo p50':>8} {'p99':>7} {'req B':>6} {'resp B':>7} {'errors':>6}"
    )
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "-" if r.ratio is None else f"{r.ratio:.3f}"
        lines.append(
            f"{r.operation:<9} {r.concurrency:>4} {r.smooth.calls_per_s:>9.0f} {r.echo.calls_per_s:>9.0f} {ratio:>6} "
            f"{_ms(r.smooth.p50_ms):>10} {_ms(r.smooth.p99_ms):>7} {_ms(r.echo.p50_ms):>8} {_ms(r.echo.p99_ms):>7} "
            f"{r.request_bytes:>6.0f} {r.response_bytes:>7} {r.smooth.errors + r.echo.errors:>6}"
        )
    lines.append("latencies in ms; ratio = smooth calls/s / echo calls/s; errors = failed calls (not in latencies)")
    return "\n".join(lines)


def report(settings: Settings, rows: Sequence[Row], load_before: tuple[float, float, float]) -> dict[str, Any]:
    return {
        "settings": {
            "seconds": settings.seconds,
            "warmup_seconds": settings.warmup,
            "concurrency": list(settings.concurrency),
            "seeded_items": settings.items,
            "list_filter": LIST_FILTER,
            "list_page_size": LIST_PAGE_SIZE,
        },
        "machine": {
            "python": platform.python_version(),
            "grpc": grpc.__version__,
            "cpus": os.cpu_count(),
            "loadavg_before": load_before,
            "loadavg_after": os.getloadavg(),
        },
        "results": [asdict(r) for r in rows],
    }


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description="Smooth Edge gRPC API vs a bare grpc.aio echo server.")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per side and case (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds before each side (default 1)")
    parser.add_argument("--concurrency", default="1,50", help="comma-separated in-flight call counts (default 1,50)")
    parser.add_argument("--items", type=int, default=2000, help="tool items to seed before measuring (default 2000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    try:
        levels = tuple(int(part) for part in args.concurrency.split(",") if part.strip())
    except ValueError:
        parser.error(f"--concurrency must be comma-separated integers, not {args.concurrency!r}")
    if not levels or min(levels) < 1:
        parser.error("--concurrency needs at least one level, each >= 1")
    if args.seconds <= 0 or args.warmup < 0 or args.items < 1:
        parser.error("--seconds must be > 0, --warmup >= 0 and --items >= 1")
    return Settings(args.seconds, args.warmup, levels, args.items, args.json)


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
    try:
        # Exit order is the reverse: processes stop first, then the temp dir (with the SQLite file) goes.
        with (
            sigterm_as_exit(),
            tempfile.TemporaryDirectory(prefix="smooth-bench-") as tmp,
            Processes() as procs,
        ):
            workdir = Path(tmp)
            progress(f"starting echo server; work dir {workdir}")
            echo_port = start_echo(procs, workdir)
            progress(f"echo server on port {echo_port}; starting smooth-edge on a fresh SQLite file")
            smooth_port, smooth_proc, log = start_smooth(procs, workdir)
            rows = asyncio.run(run(settings, echo_port, smooth_port, smooth_proc, log))
    except KeyboardInterrupt:
        progress("interrupted; processes stopped and temp files removed")
        return 130
    except BenchError as err:
        progress(f"error: {err}")
        return 1
    progress("done")
    print(table(rows))
    if settings.json_path is not None:
        settings.json_path.write_text(json.dumps(report(settings, rows, load_before), indent=2) + "\n")
        progress(f"wrote {settings.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
