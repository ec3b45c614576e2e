"""The store's unit of work: `Store` opens transactions, and `Transaction` is every port at once, composed of
the row classes by concern (entity_rows, change_log, identity_rows, collector_rows, replication_rows).

`Store.write()` yields a transaction in which the entity row, its change record and its audit entry are
written together. On SQLite writers queue on one lock and take the database lock up front (BEGIN IMMEDIATE);
on PostgreSQL one advisory lock makes writers take turns. Database exceptions are mapped to the domain error
tree once, in server/store/connection.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.store.change_log import ChangeLogRows
from server.store.collector_rows import CollectorRows
from server.store.connection import map_db_error
from server.store.engine import WRITE_OPTION, create_engine, is_sqlite
from server.store.entity_rows import EntityRows
from server.store.identity_rows import IdentityRows
from server.store.replication_rows import ReplicationRows


class Transaction(EntityRows, ChangeLogRows, IdentityRows, CollectorRows, ReplicationRows):
    """Every store operation on one open connection: the row classes of each concern over one `Connection`."""


# A constant key for pg_advisory_xact_lock: one writer at a time on PostgreSQL.
WRITE_LOCK = 0x5E_A0D1


async def _sqlite_pragma(conn: AsyncConnection, pragma: str) -> None:
    """Run a pragma outside any transaction (SQLAlchemy would begin one first; some pragmas refuse that)."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(pragma)  # type: ignore[union-attr]
    await cursor.close()


class Store:
    """Owns the engine. `async with Store(url) as store:` opens it; leaving disposes every connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        # Called after every committed write (the replicator wakes on them); must not block.
        self.on_commit: list[Callable[[], None]] = []

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not open; use `async with Store(url)`")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def __aenter__(self) -> Store:
        self._engine = create_engine(self.url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        try:
            async with self.engine.connect() as conn:
                async with conn.begin():
                    yield Transaction(conn)
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc

    @asynccontextmanager
    async def write(self, *, durable: bool = False) -> AsyncIterator[Transaction]:
        """One atomic unit of work: everything written inside commits together or not at all.

        `durable`: on SQLite, this commit is fsynced (synchronous=FULL), and with it every earlier commit in the
        WAL — what the replicator does before central may see a sequence.
        """
        sqlite = is_sqlite(self.engine)
        if sqlite:
            await self._write_lock.acquire()
        try:
            async with self.engine.connect() as conn:
                if sqlite:
                    conn = await conn.execution_options(**{WRITE_OPTION: True})
                    if durable:
                        await _sqlite_pragma(conn, "PRAGMA synchronous=FULL")
                try:
                    async with conn.begin():
                        if not sqlite:
                            # One writer at a time, as on SQLite: every write appends to the audit chain anyway,
                            # and this keeps `changes.seq` in commit order (the replication outbox), no deadlocks.
                            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                        yield Transaction(conn)
                finally:
                    if sqlite and durable:
                        await _sqlite_pragma(conn, "PRAGMA synchronous=NORMAL")
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc
        finally:
            if sqlite:
                self._write_lock.release()
        for callback in self.on_commit:
            callback()
