"""Kill -9 matrix on real processes and real PostgreSQL: the edge killed mid-push, after central committed but
before the edge saw the answer, and mid-pull; central killed mid-apply. After restarts both stores are compared
entity by entity: nothing lost, nothing doubled."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from conftest import Stubs, free_port, fresh_pg_database
from smooth.core.v1 import sync_pb2, sync_pb2_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb

from agent.grpc_client import authorized_channel
from server.domain.entities import UserRole
from server.domain.registry import KINDS
from server.domain.schema import to_json
from server.store import migrate
from server.store.repository import Store
from server.store.tables import changes
from server.usecases.app import build
from server.usecases.entities import Caller

pytestmark = pytest.mark.postgres
CLI = [sys.executable, "-m", "agent.cli", "--log-level", "WARNING"]


class Cluster:
    """A central process on PostgreSQL and an edge process on SQLite that replicates to it."""

    def __init__(self, central_url: str, edge_db: Path) -> None:
        self.central_url, self.edge_db = central_url, edge_db
        self.central_port, self.edge_port = free_port(), free_port()
        self.central: subprocess.Popen[str] | None = None
        self.edge: subprocess.Popen[str] | None = None
        self.sync_key = self.edge_key = self.central_key = ""

    async def prepare(self) -> None:
        async with Store(self.central_url) as store:
            await migrate.upgrade(store.engine)
            uc = build(store)
            _, _, self.central_key = await uc.api_keys.bootstrap(email="admin@central.test", role=UserRole.ADMIN)
            user, _, _ = await uc.api_keys.bootstrap(email="edge@central.test", role=UserRole.ADMIN)
            _, self.sync_key = await uc.api_keys.create(
                user_id=user.id, name="sync", scopes=["sync"], expires_at=None, caller=Caller()
            )
        async with Store(str(self.edge_db)) as store:
            await migrate.upgrade(store.engine)
            _, _, self.edge_key = await build(store).api_keys.bootstrap(email="admin@edge.test", role=UserRole.ADMIN)

    def start_central(self, failpoints: str = "") -> None:
        env = {**os.environ, "SMOOTH_EDGE_FAILPOINTS": failpoints}
        self.central = subprocess.Popen(
            [*CLI, "central", "--db", self.central_url, "--listen", f"127.0.0.1:{self.central_port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    def start_edge(self, failpoints: str = "") -> None:
        env = {**os.environ, "SMOOTH_EDGE_FAILPOINTS": failpoints, "SMOOTH_EDGE_SYNC_KEY": self.sync_key}
        self.edge = subprocess.Popen(
            [
                *CLI,
                "serve",
                "--db",
                str(self.edge_db),
                "--listen",
                f"127.0.0.1:{self.edge_port}",
                "--central",
                f"127.0.0.1:{self.central_port}",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )

    async def wait_exit(self, proc: subprocess.Popen[str] | None, what: str, timeout: float = 60) -> None:
        assert proc is not None
        for _ in range(int(timeout * 10)):
            if proc.poll() is not None:
                assert proc.returncode == -signal.SIGKILL, f"{what} ended with {proc.returncode}"
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"{what} did not hit its failpoint")

    async def edge_status(self) -> sync_pb2.ReplicationStatus | None:
        try:
            async with authorized_channel(f"127.0.0.1:{self.edge_port}", self.edge_key) as channel:
                return await sync_pb2_grpc.ReplicationServiceStub(channel).GetReplicationStatus(
                    sync_pb2.GetReplicationStatusRequest(), timeout=2
                )
        except grpc.aio.AioRpcError:
            return None

    async def write_on(
        self, port: int, key: str, names: list[str], *, until_dead: subprocess.Popen[str] | None = None
    ) -> None:
        """Create items through the API; with `until_dead`, stop quietly once that process has crashed."""
        for _ in range(150):  # wait until it serves
            if until_dead is not None and until_dead.poll() is not None:
                return
            try:
                async with authorized_channel(f"127.0.0.1:{port}", key) as channel:
                    stubs = Stubs(channel)
                    for name in names:
                        await stubs.items.CreateToolItem(
                            item_pb.CreateToolItemRequest(
                                tool_item=item_pb.ToolItem(name=name, tool_type=item_pb.TOOL_TYPE_OTHER)
                            ),
                            timeout=10,
                        )
                return
            except grpc.aio.AioRpcError as err:
                if until_dead is not None and until_dead.poll() is not None:
                    return
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                await asyncio.sleep(0.2)
        raise AssertionError(f"nothing serves on {port}")

    async def converged(self, timeout: float = 60) -> None:
        for _ in range(int(timeout * 5)):
            status = await self.edge_status()
            if status is not None and status.backlog == 0 and status.connected:
                return
            await asyncio.sleep(0.2)
        raise AssertionError(f"no convergence: {await self.edge_status()}")

    def stop(self) -> None:
        for proc in (self.edge, self.central):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()


async def entities(url: str) -> dict[str, dict[str, Any]]:
    async with Store(url) as store:
        uc = build(store)
        out: dict[str, dict[str, Any]] = {}
        for name in KINDS:
            page = await uc.entities[name].list(page_size=1000, page_token="", filter_text="", order_by="")
            out[name] = {str(e.id): to_json(e) for e in page.items}
        return out


async def replicated_twice(url: str) -> list[Any]:
    """Central change records that apply the same edge change more than once (must be none)."""
    async with Store(url) as store, store.read() as tx:
        stmt = (
            sa.select(changes.c.origin_id, changes.c.origin_seq, sa.func.count())
            .where(changes.c.origin_id.is_not(None))
            .group_by(changes.c.origin_id, changes.c.origin_seq)
            .having(sa.func.count() > 1)
        )
        return list((await tx._conn.execute(stmt)).all())


async def compare(cluster: Cluster, central_names: list[str] = ()) -> None:  # type: ignore[assignment]
    cluster.stop()
    edge, central = await entities(str(cluster.edge_db)), await entities(cluster.central_url)
    for kind, rows in edge.items():
        for entity_id, data in rows.items():
            assert central[kind].get(entity_id) == data, f"{kind} {entity_id}: lost or different on central"
    edge_names = sorted(d["name"] for d in edge["tool_item"].values())
    central_item_names = sorted(d["name"] for d in central["tool_item"].values())
    assert edge_names == central_item_names, "the item sets differ"
    assert len(edge_names) == len(set(edge_names)), "an item was doubled"
    for name in central_names:
        assert name in edge_names, f"central's {name} did not come down"
    assert await replicated_twice(cluster.central_url) == []


@pytest.fixture
async def cluster(pg_url: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with fresh_pg_database(pg_url) as url:
        c = Cluster(url, tmp_path / "edge.db")
        await c.prepare()
        try:
            yield c
        finally:
            for proc in (c.edge, c.central):
                if proc is not None and proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)


def _names(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:04d}-{uuid.uuid4().hex[:4]}" for i in range(n)]


@pytest.mark.parametrize("failpoint", ["edge-before-push", "edge-after-push-before-ack"])
async def test_edge_killed_during_push(cluster: Cluster, failpoint: str) -> None:
    cluster.start_central()
    # Items are written while the edge replicates; the failpoint kills it on its first push.
    cluster.start_edge(failpoints=failpoint)
    await cluster.write_on(cluster.edge_port, cluster.edge_key, _names("edge", 60), until_dead=cluster.edge)
    await cluster.wait_exit(cluster.edge, "the edge")
    cluster.start_edge()
    await cluster.write_on(cluster.edge_port, cluster.edge_key, _names("after", 20))
    await cluster.converged()
    await compare(cluster)


async def test_edge_killed_mid_pull(cluster: Cluster) -> None:
    cluster.start_central()
    down = _names("central", 30)
    await cluster.write_on(cluster.central_port, cluster.central_key, down)
    cluster.start_edge(failpoints="edge-mid-pull")
    await cluster.wait_exit(cluster.edge, "the edge")
    cluster.start_edge()
    await cluster.write_on(cluster.edge_port, cluster.edge_key, _names("edge", 20))
    await cluster.converged()
    for _ in range(100):  # the pull runs after the push
        names = {d["name"] for d in (await entities(str(cluster.edge_db)))["tool_item"].values()}
        if set(down) <= names:
            break
        await asyncio.sleep(0.2)
    await compare(cluster, down)


async def test_central_killed_mid_apply(cluster: Cluster) -> None:
    cluster.start_central(failpoints="central-mid-apply")
    cluster.start_edge()
    await cluster.write_on(cluster.edge_port, cluster.edge_key, _names("edge", 50))
    await cluster.wait_exit(cluster.central, "central")
    await cluster.write_on(cluster.edge_port, cluster.edge_key, _names("offline", 20))  # the edge keeps working
    cluster.start_central()
    await cluster.converged()
    await compare(cluster)
