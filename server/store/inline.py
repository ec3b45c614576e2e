"""SQLite driven inline from the event loop: a synchronous connection whose statements run at once, on the
loop's thread, behind the same awaitable surface the store uses for an async connection.

A statement on a local SQLite file takes microseconds; aiosqlite's hop to its thread and back for every
statement cost most of a Get (issue 11). Writers are still one at a time (Store.write's lock), and a writer of
another process is waited for without blocking the loop (Store.write retries BEGIN IMMEDIATE).
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc


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

    async def insert(self, table: sa.Table, row: dict[str, Any]) -> None:
        """One row straight to the driver: the SQL compiled once per (table, columns) and the values through the
        columns' own bind processors, as SQLAlchemy would send them (its execution machinery was about half the
        cost of an API Create)."""
        sql, names, processors = _compiled_insert(self.dialect, table, tuple(row))
        params = tuple(row[n] if p is None else p(row[n]) for n, p in zip(names, processors, strict=True))
        dbapi = self.sync.connection.dbapi_connection
        assert dbapi is not None
        try:
            dbapi.execute(sql, params)
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, params, exc, sqlite3.Error) from exc


def raw_pragma(conn: sa.Connection, pragma: str) -> None:
    """Run a pragma outside any transaction (SQLAlchemy would begin one first; some pragmas refuse that)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    dbapi.execute(pragma)


@functools.cache
def _compiled_insert(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]
) -> tuple[str, tuple[str, ...], tuple[Any, ...]]:
    """(SQL, parameter names in order, bind processors) of an INSERT of `columns` into `table`."""
    compiled = table.insert().compile(dialect=dialect, column_keys=list(columns))
    names = tuple(compiled.positiontup or ())
    processors = tuple(table.c[n].type._cached_bind_processor(dialect) for n in names)
    return compiled.string, names, processors
