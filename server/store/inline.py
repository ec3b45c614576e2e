"""SQLite driven inline from the event loop: a synchronous connection whose statements run at once, on the
loop's thread, behind the same awaitable surface the store uses for an async connection.

A statement on a local SQLite file takes microseconds; aiosqlite's hop to its thread and back for every
statement cost most of a Get (issue 11). Writers are still one at a time (Store.write's lock), and a writer of
another process is waited for without blocking the loop (Store.write retries BEGIN IMMEDIATE).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


class InlineNested:
    """A savepoint of an inline connection."""

    def __init__(self, nested: sa.NestedTransaction) -> None:
        self._nested = nested

    async def rollback(self) -> None:
        self._nested.rollback()

    async def commit(self) -> None:
        self._nested.commit()


class InlineConnection:
    """The part of `AsyncConnection` the store uses, over a synchronous connection."""

    def __init__(self, conn: sa.Connection) -> None:
        self.sync = conn
        self.dialect = conn.dialect

    async def execute(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        return self.sync.execute(statement, params)

    async def begin_nested(self) -> InlineNested:
        return InlineNested(self.sync.begin_nested())


def raw_pragma(conn: sa.Connection, pragma: str) -> None:
    """Run a pragma outside any transaction (SQLAlchemy would begin one first; some pragmas refuse that)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute(pragma)
