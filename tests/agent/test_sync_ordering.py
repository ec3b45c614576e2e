"""Central applies an origin's pushes strictly in order even when two are in flight: a push that arrives before
its predecessor waits for it (instead of being refused as a gap), a real gap is still refused, quickly, and a
failed predecessor releases the push waiting behind it. Real PostgreSQL, through the use cases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from conftest import fresh_pg_database
from test_central_client_contract import creations as changes

from server.domain.entities import Revision
from server.domain.errors import FailedPrecondition, InvalidArgument
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.replication.central import ORPHAN_WAIT_S, TURN_WAIT_S


@pytest.fixture
async def central(pg_url: str) -> AsyncIterator[UseCases]:
    async with fresh_pg_database(pg_url) as url, Store(url) as store:
        await migrate.upgrade(store.engine)
        yield build(store, central=True, schema_version=migrate.head_revision())


async def push(uc: UseCases, origin: uuid.UUID, after: int, batch: list[Revision], schema: str = "") -> int:
    watermark, rejected = await uc.sync.push(
        origin, after, batch, schema or migrate.head_revision(), principal=PRINCIPAL
    )
    assert not rejected
    return watermark


PRINCIPAL = None  # a trusted in-process caller (the gRPC layer's sync-key checks are tested elsewhere)


def turn_waits(uc: UseCases, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set when a push begins to wait for its predecessor (a hook on SyncApplier._wait_turn): the
    steps are ordered by it, not by sleeping."""
    entered = asyncio.Event()
    wait_turn = uc.sync._wait_turn

    async def hooked(origin_id: uuid.UUID, after_seq: int) -> None:
        entered.set()
        await wait_turn(origin_id, after_seq)

    monkeypatch.setattr(uc.sync, "_wait_turn", hooked)
    return entered


async def test_a_push_ahead_of_its_predecessor_waits_for_it(central: UseCases, monkeypatch: pytest.MonkeyPatch) -> None:
    origin = uuid.uuid4()
    assert await push(central, origin, 0, changes(1, 5)) == 5  # central now knows this origin's position
    waiting = turn_waits(central, monkeypatch)
    second = asyncio.create_task(push(central, origin, 205, changes(206, 200)))
    await waiting.wait()  # the second arrives first and waits
    assert not second.done()
    assert await push(central, origin, 5, changes(6, 200)) == 205
    assert await second == 405
    assert await central.sync.watermark(origin, PRINCIPAL) == 405


async def test_a_real_gap_is_refused_quickly(central: UseCases) -> None:
    origin = uuid.uuid4()
    await push(central, origin, 0, changes(1, 3))
    began = time.monotonic()
    with pytest.raises(FailedPrecondition) as err:
        await push(central, origin, 10, changes(11, 3))
    assert err.value.reason == "SEQUENCE_GAP" and err.value.metadata["watermark"] == "3"
    # refused after ORPHAN_WAIT_S, not held as long as a push waiting for a predecessor being applied
    assert ORPHAN_WAIT_S < TURN_WAIT_S and time.monotonic() - began < TURN_WAIT_S


async def test_a_failed_predecessor_releases_the_push_behind_it(
    central: UseCases, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = uuid.uuid4()
    await push(central, origin, 0, changes(1, 3))
    waiting = turn_waits(central, monkeypatch)
    second = asyncio.create_task(push(central, origin, 6, changes(7, 3)))
    await waiting.wait()
    with pytest.raises(InvalidArgument):  # the predecessor is malformed (sequences out of order)
        await push(central, origin, 3, list(reversed(changes(4, 3))))
    with pytest.raises(FailedPrecondition) as err:
        await second
    assert err.value.reason == "SEQUENCE_GAP"
    assert await central.sync.watermark(origin, PRINCIPAL) == 3
