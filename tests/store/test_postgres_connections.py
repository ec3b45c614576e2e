"""The store's PostgreSQL connections (central mode): reads take one round trip, and connections the server
dropped (a restart, pg_terminate_backend, an idle timeout) are replaced before use, so no call fails on them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import asyncpg
import pytest
import sqlalchemy as sa

from server.domain.registry import KINDS
from server.store import migrate
from server.store.repository import Store

pytestmark = pytest.mark.postgres


async def _terminate_others(url: str) -> int:
    """Drop every other connection to the test database, as a server restart would, and wait until their backends
    are gone (their sockets closed); how many were dropped."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    try:
        dropped = len(await conn.fetch(f"SELECT pg_terminate_backend(pid) {others}"))
        for _ in range(200):
            if not await conn.fetchval(f"SELECT count(*) {others}"):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("terminated backends still running after 10 s")
        await asyncio.sleep(0.05)  # the loop reads the closed sockets
        return dropped
    finally:
        await conn.close()


async def test_connections_the_server_dropped_are_replaced_before_use(pg_database: str) -> None:
    kind = KINDS["tool_item"]
    now = datetime.now(UTC)

    async def add(store: Store) -> uuid.UUID:
        item_id = uuid.uuid4()
        async with store.write() as tx:
            entity = kind.cls(id=item_id, name=f"item {item_id}", created_at=now, updated_at=now, version=1)
            await tx.insert(kind, entity)
        return item_id

    async with Store(pg_database) as store:
        await migrate.upgrade(store.engine)
        first = await add(store)
        async with store.read() as tx:  # pooled connections for reads and writes
            assert await tx.get(kind, first) is not None
        assert await _terminate_others(pg_database) >= 1
        for _ in range(3):  # every pooled connection is dead: each checkout must find that out, not the caller
            async with store.read() as tx:
                assert await tx.get(kind, first) is not None
        second = await add(store)
        async with store.read() as tx:
            assert set(await tx.get_many(kind, [first, second])) == {first, second}


async def test_a_read_runs_without_a_transaction(pg_database: str) -> None:
    """Reads run in autocommit: no BEGIN and COMMIT round trips around a Get. What a read sees is unchanged:
    READ COMMITTED took a snapshot per statement anyway. Each statement is its own transaction, so two statements
    of a read have different virtual transaction ids; those of a write share one."""
    vxid = sa.text("SELECT virtualtransaction FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'virtualxid'")
    async with Store(pg_database) as store:
        await migrate.upgrade(store.engine)
        async with store.read() as tx:
            assert await tx.get(KINDS["tool_item"], uuid.uuid4()) is None
            first, second = [(await tx._execute(vxid)).scalar_one() for _ in range(2)]
            assert first != second
        async with store.write() as tx:  # writes stay transactions
            first, second = [(await tx._execute(vxid)).scalar_one() for _ in range(2)]
            assert first == second
