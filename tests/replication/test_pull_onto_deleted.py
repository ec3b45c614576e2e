"""The edge applies central's changes by the same history rule central applies the edge's: a change onto a row
the edge has deleted is applied only when it is newer than every version the edge's history holds, so the edge
never keeps two different versions under one number. Real SQLite edge, real PostgreSQL central, the use cases
(no gRPC: the ordering of steps is the point here)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import fresh_pg_database

from server.domain.entities import ChangeOperation, ToolItem, ToolType
from server.domain.registry import KINDS
from server.domain.schema import to_json
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now
from server.usecases.replication.edge import PullApplier

pytestmark = pytest.mark.postgres
SYSTEM = Caller(peer="test")
ITEM = KINDS["tool_item"]


@pytest.fixture
async def central(pg_url: str) -> AsyncIterator[UseCases]:
    async with fresh_pg_database(pg_url) as url, Store(url) as store:
        await migrate.upgrade(store.engine)
        yield build(store, central=True, schema_version=migrate.head_revision())


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[UseCases]:
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        yield build(store, schema_version=migrate.head_revision())


class Link:
    """Pushes the edge's changes and pulls central's, by position, as the replicator does."""

    def __init__(self, edge: UseCases, central: UseCases) -> None:
        self.edge, self.central = edge, central
        self.origin = uuid.uuid4()
        self.pushed = 0
        self.pulled = 0
        self.puller = PullApplier(edge.store, utc_now)

    async def push(self) -> None:
        async with self.edge.store.read() as tx:
            batch = await tx.local_changes(self.pushed, 10_000)
        if batch:
            self.pushed, _ = await self.central.sync.push(
                self.origin, self.pushed, batch, migrate.head_revision(), principal=None
            )

    async def pull(self) -> None:
        changes, cursor, _, central_id, resync = await self.central.sync.pull(
            self.origin, self.pulled, 1000, principal=None
        )
        assert not resync
        await self.puller.apply(central_id, changes, cursor)
        self.pulled = cursor


async def history(uc: UseCases, entity_id: uuid.UUID) -> list[tuple[int, ChangeOperation, str]]:
    async with uc.store.read() as tx:
        revisions = await tx.revisions(ITEM, entity_id, 0, 100)
    return [(r.version, r.operation, r.snapshot.get("name", "")) for r in revisions]


async def test_central_versions_do_not_land_on_a_row_the_edge_deleted(edge: UseCases, central: UseCases) -> None:
    link = Link(edge, central)
    created = await edge.entities["tool_item"].create(
        {"name": "shared item", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
    )
    await link.push()
    await link.pull()
    # Central is down: the edge changes the item and deletes it; central changes it too.
    await edge.entities["tool_item"].update(created.id, 1, {"name": "edge name"}, caller=SYSTEM)
    await edge.entities["tool_item"].delete(created.id, 2, caller=SYSTEM)
    await central.entities["tool_item"].update(created.id, 1, {"name": "central name"}, caller=SYSTEM)
    # The link is back: both edge changes are conflicts central decides (catalog: central wins).
    await link.push()
    await link.pull()

    edge_history = await history(edge, created.id)
    states: dict[int, set[str]] = {}
    for version, _, name in edge_history:  # (an UPDATE and the DELETE of that version share its state)
        states.setdefault(version, set()).add(name)
    assert all(len(s) == 1 for s in states.values()), f"two different states under one version: {edge_history}"
    assert (2, ChangeOperation.UPDATE, "central name") not in edge_history
    async with central.store.read() as tx:
        on_central = await tx.get(ITEM, created.id)
    async with edge.store.read() as tx:
        on_edge = await tx.get(ITEM, created.id)
    assert isinstance(on_central, ToolItem) and on_central.name == "central name"
    assert on_edge is not None and to_json(on_edge) == to_json(on_central), "edge and central converge"
    # What the edge skipped is central's v2; it has central's decision above its own delete instead.
    assert (2, ChangeOperation.DELETE, "edge name") in edge_history
    assert edge_history[-1][0] == on_central.version


async def test_a_change_the_edge_lacks_entirely_is_applied(edge: UseCases, central: UseCases) -> None:
    link = Link(edge, central)
    made = await central.entities["tool_item"].create(
        {"name": "from central", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
    )
    await central.entities["tool_item"].update(made.id, 1, {"name": "renamed on central"}, caller=SYSTEM)
    await link.pull()
    assert [v for v, _, _ in await history(edge, made.id)] == [1, 2]
    async with edge.store.read() as tx:
        got = await tx.get(ITEM, made.id)
    assert isinstance(got, ToolItem) and got.name == "renamed on central"
