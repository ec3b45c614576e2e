"""One contract for every `CentralClient`: the in-process central (the use case over a real SQLite store) and
the gRPC client against a real central server on PostgreSQL answer the same calls the same way, errors
included (DESIGN decision 12; STYLE 9: a fake at our seam passes the real thing's contract suite)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import fresh_pg_database, start_edge

from agent.replicator.central_client import CentralClient
from agent.replicator.errors import SequenceGap, is_transient
from agent.replicator.grpc_central import GrpcCentralClient
from agent.replicator.in_process_central import InProcessCentral
from server.domain.entities import ChangeOperation, Revision, ToolItem, ToolType, UserRole
from server.domain.errors import FailedPrecondition, InvalidArgument, PermissionDenied
from server.domain.identity import Principal, Scope
from server.domain.schema import to_json
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now

SYSTEM = Caller(peer="test")


@dataclass
class Central:
    """A client under contract, central's use cases (to change central directly), and a second client of the
    same central whose caller lacks the sync scope."""

    client: CentralClient
    use_cases: UseCases
    unscoped: CentralClient


async def _in_process(tmp_path: Path) -> AsyncIterator[Central]:
    async with Store(str(tmp_path / "central.db")) as store:
        await migrate.upgrade(store.engine)
        uc = build(store, central=True, schema_version=migrate.head_revision())
        reader = Principal(user_id=uuid.uuid4(), role=UserRole.VIEWER, scopes=frozenset({Scope.READ}))
        yield Central(InProcessCentral(uc.sync), uc, InProcessCentral(uc.sync, principal=reader))


async def _grpc(pg_url: str) -> AsyncIterator[Central]:
    async with fresh_pg_database(pg_url) as url:
        async for central in start_edge(url, central=True):
            _, sync_secret = await central.user_with_key(UserRole.ADMIN, ["sync"])
            _, read_secret = await central.user_with_key(UserRole.ADMIN, ["read"])
            async with (
                GrpcCentralClient(central.address, sync_secret) as client,
                GrpcCentralClient(central.address, read_secret) as unscoped,
            ):
                yield Central(client, central.use_cases, unscoped)


@pytest.fixture(params=["in_process", pytest.param("grpc", marks=pytest.mark.postgres)])
async def central(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Central]:
    if request.param == "in_process":
        async for c in _in_process(tmp_path):
            yield c
    else:
        async for c in _grpc(request.getfixturevalue("pg_url")):
            yield c


def creations(first: int, count: int, *, name: str = "item") -> list[Revision]:
    """`count` tool-item creations with an edge's sequences first..first+count-1."""
    now = utc_now()
    out = []
    for seq in range(first, first + count):
        at = now + timedelta(microseconds=seq)
        item = ToolItem(
            id=uuid.uuid4(), name=f"{name} {seq}", tool_type=ToolType.OTHER, created_at=at, updated_at=at, version=1
        )
        out.append(
            Revision(
                sequence=seq,
                entity_type="tool_item",
                entity_id=item.id,
                version=1,
                operation=ChangeOperation.CREATE,
                change_time=at,
                actor_id=None,
                request_id="",
                snapshot=to_json(item),
                tx_id=uuid.uuid4(),
            )
        )
    return out


SCHEMA = migrate.head_revision()


async def pulled_ids(client: CentralClient, origin: uuid.UUID) -> list[uuid.UUID]:
    """Every entity id in central's changes as `origin` pulls them from the start, in order."""
    ids: list[uuid.UUID] = []
    cursor, more = 0, True
    while more:
        page = await client.pull(origin, cursor, 2)
        assert not page.resync_required
        ids += [c.entity_id for c in page.changes]
        assert page.next_cursor >= cursor
        cursor, more = page.next_cursor, page.more
    return ids


async def test_a_new_origin_has_watermark_zero(central: Central) -> None:
    assert await central.client.watermark(uuid.uuid4()) == 0


async def test_a_push_moves_the_watermark(central: Central) -> None:
    origin, batch = uuid.uuid4(), creations(1, 3)
    result = await central.client.push(origin, 0, batch, SCHEMA)
    assert (result.acked_seq, result.rejected) == (3, [])
    assert await central.client.watermark(origin) == 3
    more = await central.client.push(origin, 3, creations(4, 2), SCHEMA)
    assert more.acked_seq == 5 and await central.client.watermark(origin) == 5


async def test_a_repeated_push_is_skipped(central: Central) -> None:
    origin, batch = uuid.uuid4(), creations(1, 3)
    await central.client.push(origin, 0, batch, SCHEMA)
    again = await central.client.push(origin, 0, batch, SCHEMA)
    assert (again.acked_seq, again.rejected) == (3, [])
    ids = await pulled_ids(central.client, uuid.uuid4())
    assert [i for i in ids if i in {c.entity_id for c in batch}] == [c.entity_id for c in batch]  # applied once


async def test_a_gap_is_refused_with_central_s_watermark(central: Central) -> None:
    origin = uuid.uuid4()
    await central.client.push(origin, 0, creations(1, 3), SCHEMA)
    with pytest.raises(SequenceGap) as gap:
        await central.client.push(origin, 5, creations(6, 2), SCHEMA)
    assert gap.value.watermark == 3 and is_transient(gap.value)
    assert await central.client.watermark(origin) == 3


async def test_a_change_that_cannot_apply_is_rejected_alone(central: Central) -> None:
    origin = uuid.uuid4()
    good, bad, later = creations(1, 3)
    bad = replace(bad, snapshot={**bad.snapshot, "name": ""})
    result = await central.client.push(origin, 0, [good, bad, later], SCHEMA)
    assert result.acked_seq == 3
    assert [(r.seq, r.entity_id) for r in result.rejected] == [(2, bad.entity_id)]
    assert "name" in result.rejected[0].reason
    ids = await pulled_ids(central.client, uuid.uuid4())
    assert good.entity_id in ids and later.entity_id in ids and bad.entity_id not in ids


async def test_a_pull_leaves_out_the_origin_s_own_changes(central: Central) -> None:
    origin = uuid.uuid4()
    mine = creations(1, 2, name="edge")
    await central.client.push(origin, 0, mine, SCHEMA)
    made = await central.use_cases.entities["tool_item"].create(
        {"name": "central's", "tool_type": ToolType.OTHER}, entity_id=None, caller=SYSTEM
    )
    own = await pulled_ids(central.client, origin)
    assert made.id in own and not {c.entity_id for c in mine} & set(own)
    other = await pulled_ids(central.client, uuid.uuid4())
    assert {c.entity_id for c in mine} <= set(other) and made.id in other
    page = await central.client.pull(origin, 0, 1000)
    pulled = next(c for c in page.changes if c.entity_id == made.id)
    assert pulled.snapshot["name"] == "central's" and pulled.operation == ChangeOperation.CREATE
    assert page.central_id != origin and not page.more


async def test_a_snapshot_comes_in_pages(central: Central) -> None:
    origin = uuid.uuid4()
    await central.client.push(origin, 0, creations(1, 5), SCHEMA)
    head = await central.client.snapshot(origin)
    assert head.as_of_seq >= 5 and head.rows == [] and head.next_page_token == ""
    rows, token, pages = [], "", 0
    while True:
        page = await central.client.snapshot(origin, "tool_item", page_size=2, page_token=token)
        rows += page.rows
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages >= 3 and len(rows) == 5
    assert [r["id"] for r in rows] == sorted(r["id"] for r in rows)
    assert {r["name"] for r in rows} == {f"item {i}" for i in range(1, 6)}


async def test_refusals_are_our_errors_and_permanent(central: Central) -> None:
    origin = uuid.uuid4()
    with pytest.raises(FailedPrecondition) as ahead:
        await central.client.push(origin, 0, creations(1, 1), "9999")
    assert ahead.value.reason == "SCHEMA_AHEAD" and not is_transient(ahead.value)
    with pytest.raises(InvalidArgument) as kind:
        await central.client.snapshot(origin, "no_such_kind", page_size=10)
    assert not is_transient(kind.value)
    with pytest.raises(PermissionDenied) as denied:
        await central.unscoped.watermark(origin)
    assert not is_transient(denied.value)
