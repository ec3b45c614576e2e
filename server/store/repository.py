"""The store's unit of work: `Store` opens transactions, and `Transaction` is every port at once, composed of
the row classes by concern (entity_rows, change_log, identity_rows, collector_rows, replication_rows).

`Store.write()` yields a transaction in which the entity row, its change record and its audit entry are
written together. On SQLite writers queue on one lock and take the database lock up front (BEGIN IMMEDIATE);
on PostgreSQL one advisory lock makes writers take turns. Database exceptions are mapped to the domain error
tree once, in server/store/connection.py.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.change_log import ChangeLogRows
from server.store.checkpointer import Checkpointer
from server.store.collector_rows import CollectorRows
from server.store.connection import map_db_error
from server.store.engine import BUSY_TIMEOUT_MS, WRITE_OPTION, create_engine, create_inline_engine, is_sqlite
from server.store.group_commit import GroupCommit, Spawn
from server.store.identity_rows import IdentityRows
from server.store.inline import DecodedCache, InlineConnection, on_driver, raw_pragma
from server.store.mes_rows import MesRows
from server.store.replication_rows import ReplicationRows
from server.store.statistics import TableStatistics


class Transaction(MesRows, ChangeLogRows, IdentityRows, CollectorRows, ReplicationRows):
    """Every store operation on one open connection: the row classes of each concern over one `Connection`
    (MesRows builds on EntityRows)."""


# Decoded entities kept for rows read again (server/store/inline.py), all kinds together: about 2 KB each.
DECODED_CACHE_SIZE = 8_192

# SQLite reader connections kept open between reads.
READERS_KEPT = 4

# A constant key for pg_advisory_xact_lock: one writer at a time on PostgreSQL.
WRITE_LOCK = 0x5E_A0D1


class Store:
    """Owns the engine. `async with Store(url) as store:` opens it; leaving disposes every connection.

    `spawn` starts the group-commit writer's task (the agent's supervisor watches it); `on_group` is told the size of
    each group committed together (metrics)."""

    def __init__(self, url: str, *, spawn: Spawn | None = None, on_group: Callable[[int], None] | None = None) -> None:
        self.url = url
        self._spawn = spawn
        self._on_group = on_group
        self._engine: AsyncEngine | None = None
        self._inline: sa.Engine | None = None  # SQLite: statements run inline on the loop (store/inline.py)
        self._write_lock = asyncio.Lock()
        self._group: GroupCommit[Transaction] | None = None
        self._decoded = DecodedCache(DECODED_CACHE_SIZE)
        self._readers: list[sa.Connection] = []  # SQLite reader connections kept open (read())
        self._checkpointer: Checkpointer | None = None  # SQLite: WAL checkpoints off the loop
        self._statistics: TableStatistics | None = None  # PostgreSQL: ANALYZE of tables that grew
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
        if is_sqlite(self._engine):
            self._inline = create_inline_engine(self.url)
            path = self._engine.url.database or ""
            if path not in ("", ":memory:") and not path.startswith("file:"):
                self._checkpointer = Checkpointer(path)
                self._checkpointer.start()
        else:
            self._statistics = TableStatistics(self._engine, self._spawn)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        if self._statistics is not None:
            await self._statistics.stop()
        while self._readers:
            self._readers.pop().close()
        if self._inline is not None:
            self._inline.dispose()
        if self._engine is not None:
            await self._engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        try:
            if self._inline is not None:
                # A reader connection kept open between reads (taking one from the pool and giving it back cost
                # a Get more than its SELECT); reads that overlap (one awaits inside) each take their own.
                sync_conn = self._readers.pop() if self._readers else self._inline.connect()
                try:
                    with _raw_read(sync_conn):
                        yield Transaction(InlineConnection(sync_conn, self._decoded, committed=True))
                finally:
                    if sync_conn.invalidated or sync_conn.in_transaction() or len(self._readers) >= READERS_KEPT:
                        sync_conn.close()
                    else:
                        self._readers.append(sync_conn)
                return
            # Autocommit: each statement is its own transaction, with no BEGIN and COMMIT round trips around it.
            # What a read sees is unchanged: READ COMMITTED takes a snapshot per statement anyway.
            async with self.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                yield Transaction(conn)
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc

    @asynccontextmanager
    async def write(self, *, durable: bool = False) -> AsyncIterator[Transaction]:
        """One atomic unit of work: everything written inside commits together or not at all, before this returns.

        Concurrent units are grouped into one transaction and one commit (on PostgreSQL a round trip and a WAL
        flush; on SQLite a WAL append of the pages they share, about half a Create's cost when alone), each in its
        own savepoint (server/store/group_commit.py). `durable`: on SQLite, this commit is fsynced
        (synchronous=FULL), and with it every earlier commit in the WAL — what the replicator does before central
        may see a sequence; such a unit runs alone.
        """
        if durable:
            async with self._transaction(durable=durable) as tx:
                yield tx
            self._committed()
            return
        if self._group is None:
            self._group = GroupCommit(
                lambda: self._transaction(durable=False),
                _savepoint,
                self._committed,
                spawn=self._spawn,
                on_group=self._on_group,
            )
        async with self._group.unit() as tx:
            yield tx

    @property
    def write_queue_depth(self) -> int:
        """Units of work waiting for the writer."""
        return self._group.depth if self._group is not None else 0

    async def size_bytes(self) -> int:
        """The database's size on disk: SQLite's file with its write-ahead log, or PostgreSQL's database."""
        if self._inline is not None:
            return _sqlite_size(self.engine.url.database or "")
        try:
            async with self.engine.connect() as conn:
                size = await conn.scalar(sa.text("SELECT pg_database_size(current_database())"))
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc
        return int(size or 0)

    def free_bytes(self) -> int | None:
        """Bytes free to this process on the file system of the SQLite file (None on PostgreSQL)."""
        if self._inline is None:
            return None
        path = os.path.dirname(os.path.abspath(self.engine.url.database or "."))
        stats = os.statvfs(path)
        return stats.f_bavail * stats.f_frsize

    def _committed(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.committed()
        for callback in self.on_commit:
            callback()

    @asynccontextmanager
    async def _transaction(self, *, durable: bool) -> AsyncIterator[Transaction]:
        """One exclusive write transaction: writers take turns (SQLite's lock here and BEGIN IMMEDIATE; an advisory
        lock on PostgreSQL, which also keeps `changes.seq` in commit order for the replication outbox)."""
        if self._inline is not None:
            async with self._write_lock:
                async with self._inline_write(durable) as tx:
                    yield tx
            return
        try:
            async with self.engine.connect() as conn, conn.begin():
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                tx = Transaction(conn)
                yield tx
                await tx.write_pending()
            if tx.inserted and self._statistics is not None:
                self._statistics.added(tx.inserted)  # committed: analyze what grew, after it (statistics.py)
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc

    @asynccontextmanager
    async def _inline_write(self, durable: bool) -> AsyncIterator[Transaction]:
        """A SQLite write transaction run inline (server/store/inline.py); the caller holds the write lock."""
        assert self._inline is not None
        try:
            with self._inline.connect().execution_options(**{WRITE_OPTION: True}) as sync_conn:
                if durable:
                    raw_pragma(sync_conn, "PRAGMA synchronous=FULL")
                try:
                    await _begin_immediate(sync_conn)
                    try:
                        tx = Transaction(InlineConnection(sync_conn, self._decoded, committed=False))
                        yield tx
                        await tx.write_pending()
                    except BaseException:
                        sync_conn.rollback()
                        raise
                    sync_conn.commit()
                finally:
                    if durable:
                        raw_pragma(sync_conn, "PRAGMA synchronous=NORMAL")
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise map_db_error(exc) from exc


@contextmanager
def _raw_read(conn: sa.Connection) -> Iterator[None]:
    """A read transaction begun and ended on the driver itself: SQLAlchemy's begin and commit (its transaction
    objects and events) cost a Get more than its SELECT (issue 11). A statement that does go through SQLAlchemy
    inside (`InlineConnection.execute`) joins the transaction already open (engine.py's begin hook sees it) and
    is ended through SQLAlchemy, so both agree on the connection's state."""
    dbapi = conn.connection.dbapi_connection
    assert isinstance(dbapi, sqlite3.Connection)
    on_driver(dbapi, "BEGIN")
    try:
        yield
        if conn.in_transaction():
            conn.commit()
        elif dbapi.in_transaction:
            on_driver(dbapi, "COMMIT")
    finally:
        # Never kept or pooled in a transaction (a writer given it would not begin its own): ended whatever
        # happened above, even when the COMMIT itself failed.
        if conn.in_transaction():
            conn.rollback()
        if dbapi.in_transaction:
            on_driver(dbapi, "ROLLBACK")


async def _begin_immediate(conn: sa.Connection) -> None:
    """BEGIN IMMEDIATE, waiting (without blocking the event loop) while another process holds the write lock."""
    deadline = asyncio.get_running_loop().time() + BUSY_TIMEOUT_MS / 1000
    pause = 0.002
    while True:
        try:
            conn.begin()
            return
        except sa_exc.OperationalError as exc:
            conn.rollback()
            if "locked" not in str(exc.orig) and "busy" not in str(exc.orig):
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.05)


def _sqlite_size(path: str) -> int:
    """The file and its write-ahead log (a stat each: as cheap as the inline statements run on the loop)."""
    return sum(os.path.getsize(p) for p in (path, f"{path}-wal") if os.path.exists(p))


def _savepoint(tx: Transaction) -> AbstractAsyncContextManager[None]:
    return tx.savepoint()
