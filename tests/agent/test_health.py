"""Issue 14, item 2: gRPC health per component, and the same states in the metrics. The rules with explicit times
(HealthJudge); then a real agent: a machine that stays away past the threshold and comes back (a real simulated
CNC), central unreachable past its threshold, and a database that refuses writes (a real `smooth-edge serve`
whose file writes the kernel refuses: RLIMIT_FSIZE set to 0 on the running process, which holds for root too,
where chmod would not)."""

from __future__ import annotations

import asyncio
import resource
import subprocess
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_collector import _CLI, eventually
from test_metrics import sample, scrape

from agent.config import CollectorConfig, MachineConfig
from agent.health import HealthJudge, HealthSettings, Observation
from agent.replicator.replicator import ReplicatorSettings
from agent.runtime import ServeOptions, serve
from agent.simulator.server import CncSimulator, SimMachine
from server.api.server import GrpcServer
from server.usecases.app import UseCases

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def test_the_rules_with_explicit_times() -> None:
    judge = HealthJudge(HealthSettings(collector_down_after_s=60, central_unreachable_after_s=300), started=1000.0)

    def at(now: float, *, db: str = "", m1: bool = True, m2: bool = True, central: bool = True) -> dict[str, bool]:
        seen = Observation(db, {"M1": m1, "M2": m2}, central)
        return {service: verdict.serving for service, verdict in judge.judge(seen, now).items()}

    first = at(1000, m2=False)
    assert set(first.values()) == {True}
    assert set(first.keys()) == {
        "",
        "smooth.edge.database",
        "smooth.edge.collector",
        "smooth.edge.collector.M1",
        "smooth.edge.collector.M2",
        "smooth.edge.replication",
    }
    # M2 has never connected: it counts as down since the start. At 60 s it is still within the threshold.
    assert at(1060, m2=False)["smooth.edge.collector.M2"] is True
    states = at(1061, m2=False)
    assert states["smooth.edge.collector.M2"] is False and states["smooth.edge.collector"] is False
    assert states["smooth.edge.collector.M1"] is True and states[""] is True  # a machine away is not the agent
    assert at(1062)["smooth.edge.collector"] is True  # back
    # Down again from 2000: counted from when it was first seen down this time, not from the start.
    assert at(2000, m1=False)["smooth.edge.collector.M1"] is True
    assert at(2059, m1=False)["smooth.edge.collector.M1"] is True
    assert at(2061, m1=False)["smooth.edge.collector.M1"] is False
    # Central: its own threshold.
    assert at(3000, central=False)["smooth.edge.replication"] is True
    assert at(3301, central=False)["smooth.edge.replication"] is False
    # The database: at once, and the agent as a whole with it.
    states = at(3302, db="DATABASE_UNAVAILABLE: disk I/O error")
    assert states["smooth.edge.database"] is False and states[""] is False
    judge_without_central = HealthJudge(HealthSettings(), started=0.0)
    assert "smooth.edge.replication" not in judge_without_central.judge(Observation("", {}, None), 1.0)


def agent_options(tmp_path: Path, metrics_port: int, **overrides: Any) -> ServeOptions:
    """An agent on a new SQLite file, deciding health every 0.1 s, with its metrics on `metrics_port`."""
    return ServeOptions(
        str(tmp_path / "edge.db"),
        "127.0.0.1:0",
        auto_migrate=True,
        health_interval_s=0.1,
        metrics_listen=f"127.0.0.1:{metrics_port}",
        **overrides,
    )


@asynccontextmanager
async def running(options: ServeOptions) -> AsyncIterator[int]:
    """A real agent in this process (its own gRPC server, store and tasks); yields its gRPC port."""
    stop = asyncio.Event()
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_ready(server: GrpcServer, _: UseCases) -> None:
        ready.set_result(server.port)

    agent = asyncio.create_task(serve(options, on_ready=on_ready, stop=stop))
    try:
        yield await asyncio.wait_for(asyncio.shield(ready), timeout=120)
    finally:
        stop.set()
        await agent


def health_of(port: int) -> Callable[[str], Awaitable[int]]:
    async def check(service: str) -> int:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=30
            )
        return int(answer.status)

    return check


def becomes(check: Callable[[str], Awaitable[int]], service: str, status: int) -> Callable[[], Awaitable[bool]]:
    async def condition() -> bool:
        return await check(service) == status

    return condition


async def test_a_machine_away_past_the_threshold_is_not_serving_until_it_comes_back(tmp_path: Path) -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/late/"
    machine = MachineConfig(
        machine_id="L1", endpoint=endpoint, profile="cnc", publishing_interval_ms=50, watchdog_s=10, reconnect_max_s=0.5
    )
    metrics_port = free_port()
    options = agent_options(tmp_path, metrics_port, collector=CollectorConfig((machine,)), collector_down_after_s=1.0)
    async with running(options) as port:
        health = health_of(port)
        await eventually(becomes(health, "smooth.edge.collector.L1", NOT_SERVING), what="L1 NOT_SERVING")
        assert await health("smooth.edge.collector") == NOT_SERVING
        assert await health("") == SERVING and await health("smooth.edge.database") == SERVING
        samples = (await asyncio.to_thread(scrape, metrics_port))[0]  # (the agent reads on this loop)
        assert sample(samples, "smooth_edge_health_serving", service="smooth.edge.collector.L1") == 0
        assert sample(samples, "smooth_edge_collector_connected", machine_id="L1") == 0
        async with CncSimulator([SimMachine("L1", "cnc", [])], endpoint):
            await eventually(becomes(health, "smooth.edge.collector.L1", SERVING), what="L1 SERVING again")
            await eventually(becomes(health, "smooth.edge.collector", SERVING), what="the collector SERVING")
            samples = (await asyncio.to_thread(scrape, metrics_port))[0]
            assert sample(samples, "smooth_edge_collector_connected", machine_id="L1") == 1


async def test_central_unreachable_past_the_threshold_is_not_serving(tmp_path: Path) -> None:
    metrics_port = free_port()
    nobody = f"127.0.0.1:{free_port()}"  # nothing listens there
    options = agent_options(
        tmp_path,
        metrics_port,
        replicate=ReplicatorSettings(nobody, "sek_0123456789ab_" + "x" * 43, interval_s=0.05, flush_timeout_s=0.5),
        central_unreachable_after_s=1.0,
    )
    async with running(options) as port:
        health = health_of(port)
        await eventually(becomes(health, "smooth.edge.replication", NOT_SERVING), what="replication NOT_SERVING")
        assert await health("") == SERVING
        samples = (await asyncio.to_thread(scrape, metrics_port))[0]
        assert sample(samples, "smooth_edge_health_serving", service="smooth.edge.replication") == 0
        assert sample(samples, "smooth_edge_replication_connected") == 0
        assert sample(samples, "smooth_edge_replication_last_success_timestamp_seconds") is None  # never
        assert sample(samples, "smooth_edge_replication_backlog_changes") is not None


@pytest.mark.timeout(300)
def test_a_database_that_refuses_writes_is_not_serving_until_it_takes_them_again(tmp_path: Path) -> None:
    port, metrics_port = free_port(), free_port()
    agent = subprocess.Popen(
        [
            *_CLI,
            "serve",
            "--migrate",
            "--db",
            str(tmp_path / "edge.db"),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            f"127.0.0.1:{metrics_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,  # a pipe: the limit below refuses writes to every regular file, a log file too
        text=True,
    )
    log: list[str] = []
    reader = threading.Thread(target=lambda: log.extend(agent.stderr or []), daemon=True)
    reader.start()

    def status(service: str) -> int | None:
        assert agent.poll() is None, "".join(log)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=10
                )
            except grpc.RpcError:
                return None  # not listening yet
        return int(answer.status)

    def wait_for(service: str, wanted: int) -> None:
        asyncio.run(eventually(_async(lambda: status(service) == wanted), timeout=120, what=f"{service!r} {wanted}"))

    try:
        wait_for("", SERVING)
        soft, hard = resource.prlimit(agent.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (0, hard))  # the disk takes no more bytes from it
        try:
            wait_for("smooth.edge.database", NOT_SERVING)
            assert status("") == NOT_SERVING
            samples = scrape(metrics_port)[0]
            assert sample(samples, "smooth_edge_health_serving", service="smooth.edge.database") == 0
            assert sample(samples, "smooth_edge_health_serving", service="") == 0
        finally:
            resource.prlimit(agent.pid, resource.RLIMIT_FSIZE, (soft, hard))
        wait_for("smooth.edge.database", SERVING)
        assert status("") == SERVING
    finally:
        agent.terminate()
        agent.wait(timeout=60)
        reader.join(timeout=10)
    text = "".join(log)
    assert '"event": "health.not_serving"' in text and "the write probe failed" in text
    assert '"event": "health.serving"' in text


def _async(check: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def run() -> bool:
        return check()

    return run


async def test_objects_made_while_starting_are_left_out_of_full_collections_while_serving(tmp_path: Path) -> None:
    """The garbage collector's full passes (pauses of the whole loop) skip what the agent made while starting, and
    the agent gives them back to the collector when it stops."""
    import gc

    before = gc.get_freeze_count()
    async with running(agent_options(tmp_path, free_port())):
        assert gc.get_freeze_count() > before + 10_000  # modules, schemas, the store's statements
    assert gc.get_freeze_count() == 0
