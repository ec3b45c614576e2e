"""The replicator tells failures apart (STYLE 15): central down is transient (retried with backoff, then it
converges); a refusal or a bug is permanent (logged with its traceback once, shown in the status, retried only
slowly or on a commit); shutdown logs what it could not flush. Real stores and a real central (SQLite, over
gRPC, or the in-process central of the contract suite)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import structlog
from conftest import Edge, free_port, start_edge

import agent.replicator.replicator as replicator_module
from agent.replicator.central_client import CentralClient
from agent.replicator.grpc_central import GrpcCentralClient
from agent.replicator.in_process_central import InProcessCentral
from agent.replicator.replicator import Replicator, ReplicatorSettings
from agent.replicator.status import ReplicatorState, ReplicatorStatus
from agent.runtime import edge_replicator
from agent.supervisor import Backoff, Supervisor
from server.domain import failpoints
from server.domain.entities import ToolType, UserRole
from server.domain.errors import Unavailable
from server.store import migrate
from server.usecases.entities import Caller, utc_now

SYSTEM = Caller(peer="test")
DEADLINE_S = 30.0  # generous: only a hang reaches it on a loaded 2-core machine


def settings(target: str, key: str = "", **overrides: Any) -> ReplicatorSettings:
    values: dict[str, Any] = dict(
        central=target,
        key=key,
        interval_s=0.05,
        max_backoff_s=0.2,
        failed_retry_s=3600,  # a permanent failure is retried on a commit only, within a test
        flush_timeout_s=5,
        schema_version=migrate.head_revision(),
    )
    values.update(overrides)
    return ReplicatorSettings(**values)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = DEADLINE_S, what: str = "condition") -> Any:
    """Poll real state until `check` returns something true (and return it); fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def reaches(replicator: Replicator, condition: Callable[[ReplicatorStatus], bool], what: str) -> ReplicatorStatus:
    async def check() -> bool:
        return condition(await replicator.status())

    await eventually(check, what=what)
    return await replicator.status()


class Counting:
    """A CentralClient that counts the calls it passes on (and can fail them as a bug in our code would)."""

    def __init__(self, inner: CentralClient, *, bug_in: str = "") -> None:
        self.inner, self.bug_in, self.calls = inner, bug_in, 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            if name == self.bug_in:
                raise KeyError("a bug in the client")
            return await method(*args, **kwargs)

        return call


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> structlog.testing.CapturingLogger:
    """The replicator's log lines, as calls with their fields (exc_info included)."""
    capturing = structlog.testing.CapturingLogger()
    monkeypatch.setattr(replicator_module, "log", structlog.wrap_logger(capturing, processors=[]))
    return capturing


def events(log: structlog.testing.CapturingLogger, name: str) -> list[dict[str, Any]]:
    return [call.kwargs for call in log.calls if call.kwargs.get("event") == name]


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in start_edge(str(tmp_path / "edge.db")):
        yield e


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Edge]:
    async for c in start_edge(str(tmp_path / "central.db"), central=True):
        yield c


async def sync_key(central: Edge) -> str:
    _, secret = await central.user_with_key(UserRole.ADMIN, ["sync"])
    return secret


async def make_items(edge: Edge, n: int) -> None:
    for i in range(n):
        await edge.use_cases.entities["tool_item"].create(
            {"name": f"item {i} {uuid.uuid4().hex[:6]}", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
        )


async def test_the_in_process_central_takes_the_edge_s_changes(edge: Edge, central: Edge) -> None:
    await make_items(edge, 5)
    client = InProcessCentral(central.use_cases.sync)
    async with edge_replicator(edge.store, client, settings("in-process"), utc_now) as replicator:
        status = await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "idle")
    assert status.connected and status.last_error == "" and status.acked_seq > 0
    assert await client.watermark(status.origin_id) == status.acked_seq  # type: ignore[arg-type]


async def test_a_wrong_key_is_permanent_logged_once_and_retried_only_on_a_commit(
    edge: Edge, central: Edge, captured: structlog.testing.CapturingLogger
) -> None:
    async with GrpcCentralClient(central.address, "sek_0123456789ab_" + "x" * 43) as grpc_client:
        client = Counting(grpc_client)
        async with edge_replicator(edge.store, client, settings(central.address), utc_now) as replicator:
            edge.store.on_commit.append(replicator.notify)
            status = await reaches(replicator, lambda s: s.state is ReplicatorState.FAILED, "the failure")
            assert status.last_error.startswith("permanent: ") and "UNAUTHENTICATED" in status.last_error
            assert not status.connected
            calls = client.calls
            # No retry without a commit (failed_retry_s is an hour): a hot loop would call many times here.
            await asyncio.sleep(1.0)
            assert client.calls == calls
            await make_items(edge, 1)  # a commit: one more try

            async def retried() -> bool:
                return client.calls > calls

            await eventually(retried, what="a retry after the commit")
            last = await reaches(replicator, lambda s: s.state is ReplicatorState.FAILED, "the same failure")
            edge.store.on_commit.remove(replicator.notify)
    failed = events(captured, "replicator.failed")
    assert len(failed) == 1 and failed[0]["exc_info"] is not None and "UNAUTHENTICATED" in failed[0]["error"]
    assert events(captured, "replicator.still_failing")
    (incomplete,) = events(captured, "replicator.flush_incomplete")
    assert incomplete["unsent"] == last.backlog > 0 and "UNAUTHENTICATED" in incomplete["error"]


async def test_a_bug_in_our_code_is_permanent_not_an_outage(
    edge: Edge, central: Edge, captured: structlog.testing.CapturingLogger
) -> None:
    client = Counting(InProcessCentral(central.use_cases.sync), bug_in="pull")
    async with edge_replicator(edge.store, client, settings("in-process"), utc_now) as replicator:
        status = await reaches(replicator, lambda s: s.state is ReplicatorState.FAILED, "the failure")
    assert status.last_error.startswith("permanent: KeyError")
    assert status.backlog == 0  # the push before the pull went through
    (failed,) = events(captured, "replicator.failed")
    assert isinstance(failed["exc_info"], KeyError)
    assert not events(captured, "replicator.retrying")


async def test_central_down_is_transient_and_replication_recovers(
    edge: Edge, tmp_path: Path, captured: structlog.testing.CapturingLogger
) -> None:
    address = f"127.0.0.1:{free_port()}"
    db = str(tmp_path / "central.db")
    first = start_edge(db, central=True)  # made (with the key) before it serves on `address`
    key = await sync_key(await anext(first))
    await first.aclose()
    await make_items(edge, 20)
    async with (
        GrpcCentralClient(address, key) as client,
        edge_replicator(edge.store, client, settings(address), utc_now) as replicator,
    ):
        status = await reaches(replicator, lambda s: s.state is ReplicatorState.RETRYING, "retrying")
        assert status.last_error.startswith("transient: UNAVAILABLE") and status.backlog > 0
        again = start_edge(db, central=True, listen=address)
        await anext(again)
        try:
            status = await reaches(
                replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "the drain"
            )
            assert status.connected and status.last_error == ""
            assert await client.watermark(status.origin_id) == status.acked_seq  # type: ignore[arg-type]
            await replicator.flush()
        finally:
            await again.aclose()
    assert events(captured, "replicator.retrying") and not events(captured, "replicator.failed")
    assert not events(captured, "replicator.flush_incomplete")


async def test_shutdown_logs_what_it_could_not_flush(edge: Edge, captured: structlog.testing.CapturingLogger) -> None:
    address = f"127.0.0.1:{free_port()}"  # nobody serves here
    async with (
        GrpcCentralClient(address, "key") as client,
        edge_replicator(edge.store, client, settings(address, flush_timeout_s=1), utc_now) as replicator,
    ):
        await make_items(edge, 3)
        last = await replicator.status()
    (incomplete,) = events(captured, "replicator.flush_incomplete")
    assert incomplete["unsent"] == last.backlog >= 3 and incomplete["acked"] == 0
    assert "UNAVAILABLE" in incomplete["error"] or "TimeoutError" in incomplete["error"]


class DropsLongPushes:
    """A central behind a link that drops any push of more than `longest` changes before it is answered (the
    link stays up for short calls only) — a seam we own, over the real in-process central."""

    def __init__(self, inner: InProcessCentral, longest: int) -> None:
        self._inner = inner
        self.longest = longest
        self.dropped = 0
        self.sizes: list[int] = []

    async def watermark(self, origin_id: uuid.UUID) -> int:
        return await self._inner.watermark(origin_id)

    async def push(self, origin_id: uuid.UUID, after_seq: int, changes: Any, schema_version: str) -> Any:
        self.sizes.append(len(changes))
        if len(changes) > self.longest:
            self.dropped += 1
            raise Unavailable("the link dropped before central answered", reason="UNAVAILABLE")
        return await self._inner.push(origin_id, after_seq, changes, schema_version)

    async def pull(self, origin_id: uuid.UUID, after_seq: int, limit: int) -> Any:
        return await self._inner.pull(origin_id, after_seq, limit)

    async def snapshot(self, origin_id: uuid.UUID, *args: Any, **kwargs: Any) -> Any:
        return await self._inner.snapshot(origin_id, *args, **kwargs)


async def test_a_link_that_drops_long_pushes_still_drains_with_smaller_batches(edge: Edge, central: Edge) -> None:
    await make_items(edge, 300)
    client = DropsLongPushes(InProcessCentral(central.use_cases.sync), longest=60)
    quick = settings("in-process", batch_size=400, max_backoff_s=0.05)
    async with edge_replicator(edge.store, client, quick, utc_now) as replicator:
        status = await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "drained")
        assert client.dropped > 0 and max(client.sizes[-3:]) <= 60, "batches shrank to what the link carries"
    assert await client.watermark(status.origin_id) == status.acked_seq  # type: ignore[arg-type]


async def test_a_replicator_loop_that_dies_is_restarted_and_replicates(edge: Edge, central: Edge) -> None:
    """Issue 14, item 3: an unexpected error outside the loop's own handling (a fault injected where a bug would
    raise) is logged with its traceback by the supervisor, the loop runs again, and replication converges."""
    await make_items(edge, 3)
    supervisor = Supervisor(backoff=Backoff(first_s=0.05))
    failpoints.arm("replicator-loop=raise")
    try:
        with structlog.testing.capture_logs() as logs:
            client = InProcessCentral(central.use_cases.sync)
            async with edge_replicator(edge.store, client, settings("in-process"), utc_now, supervisor) as replicator:
                status = await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "idle")
    finally:
        failpoints.disarm("replicator-loop")
    assert status.connected and status.acked_seq > 0
    (crashed,) = [e for e in logs if e["event"] == "replicator.crashed"]
    assert isinstance(crashed["exc_info"], failpoints.InjectedFault) and crashed["action"] == "restarting"
    assert [e for e in logs if e["event"] == "replicator.restarted"]
    assert supervisor.restarts == {("replicator", "in-process"): 1}
