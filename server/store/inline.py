"""SQLite driven inline from the event loop: a synchronous connection whose statements run at once, on the
loop's thread, behind the same awaitable surface the store uses for an async connection.

A statement on a local SQLite file takes microseconds; aiosqlite's hop to its thread and back for every
statement cost most of a Get (issue 11). Writers are still one at a time (Store.write's lock), and a writer of
another process is waited for without blocking the loop (Store.write retries BEGIN IMMEDIATE).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.util import LRUCache

from server.domain.schema import JsonText

# Compiled SELECTs by SQLAlchemy's own cache key (the statement's shape, not its values), for `select_raw`.
_COMPILED: LRUCache[Any, Any] = LRUCache(500)

Processor = Callable[[Any], Any] | None


class InlineNested:
    """A savepoint of an inline connection, straight on the driver (group commit opens one per unit of work)."""

    def __init__(self, dbapi: sqlite3.Connection, name: str) -> None:
        self._dbapi = dbapi
        self._name = name
        on_driver(dbapi, f"SAVEPOINT {name}")

    async def rollback(self) -> None:
        on_driver(self._dbapi, f"ROLLBACK TO {self._name}")
        on_driver(self._dbapi, f"RELEASE {self._name}")

    async def commit(self) -> None:
        on_driver(self._dbapi, f"RELEASE {self._name}")


def on_driver(dbapi: sqlite3.Connection, sql: str) -> None:
    """One statement without parameters straight on the driver; its error raised as SQLAlchemy would raise it, so
    the store maps it like any other."""
    try:
        dbapi.execute(sql)
    except sqlite3.Error as exc:
        raise sa_exc.DBAPIError.instance(sql, (), exc, sqlite3.Error) from exc


class DecodedCache:
    """Decoded entities by (kind, id, version, updated_at) as the database holds them (undecoded): a row
    read again decodes nothing. An entity's state never changes without its version changing (a replicated state
    written at the same version carries its own updated_at), and entities are immutable, so sharing them is safe.
    Bounded: the oldest entries go first. One per store (two databases may hold the same id)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[tuple[Any, ...], Any] = {}

    def get(self, key: tuple[Any, ...]) -> Any:
        return self._items.get(key)

    def put(self, key: tuple[Any, ...], value: Any) -> None:
        items = self._items
        items[key] = value
        if len(items) > self._size:
            del items[next(iter(items))]


class InlineConnection:
    """The part of `AsyncConnection` the store uses, over a synchronous connection."""

    def __init__(self, conn: sa.Connection, decoded: DecodedCache | None = None, *, committed: bool = True) -> None:
        """`decoded`: the store's cache of decoded entities; `committed`: what this connection reads is committed
        (a read transaction), so it may be kept there — a write transaction's rows may still be rolled back."""
        self.sync = conn
        self.dialect = conn.dialect
        self.decoded = decoded if decoded is not None else DecodedCache(0)
        self.keeps_decoded = committed
        self._savepoints = 0

    async def execute(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        return self.sync.execute(statement, params)

    async def begin_nested(self) -> InlineNested:
        dbapi = self.sync.connection.dbapi_connection
        assert dbapi is not None
        self._savepoints += 1
        return InlineNested(dbapi, f"sp_{self._savepoints}")  # type: ignore[arg-type]

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

    def select_raw(self, statement: sa.Select[Any], params: dict[str, Any] | None = None) -> RawRows:
        """Run a SELECT straight on the driver and return its rows undecoded, with each column's result
        processor: the caller decodes only what it needs (a row whose entity it already holds needs none).

        The statement is compiled once per shape through SQLAlchemy's statement cache, and its parameters go
        through the same bind processors as `execute` would apply; what this skips is SQLAlchemy's execution
        context and result objects, most of a Get's cost on SQLite (issue 11). Statements with
        late-rendered parameters (expanding IN) take the ordinary path.
        """
        compiled, args = self._compiled(statement, params)
        if compiled is None:
            result = self.sync.execute(statement, params)
            return RawRows(result.all(), tuple(None for _ in result.keys()))
        rows = self._run(compiled.string, args).fetchall()
        return RawRows(rows, _result_processors(self.dialect, compiled))

    def change_raw(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> int:
        """Run one INSERT, UPDATE or DELETE as `select_raw` runs a SELECT; return how many rows it changed."""
        compiled, args = self._compiled(statement, params)
        if compiled is None:
            return int(self.sync.execute(statement, params).rowcount)
        return int(self._run(compiled.string, args).rowcount)

    def change_many_raw(self, statement: Any, rows: Sequence[dict[str, Any]]) -> int:
        """Run one INSERT, UPDATE or DELETE for each of `rows` (the same keys in each) in one executemany straight
        on the driver: compiled once, each value through its column's bind processor (a value already JSON text,
        `JsonText`, as it is). SQLAlchemy's executemany cost about 100 us a row (the collector writes hundreds of
        rows a batch, issue 11). Returns how many rows it changed in all."""
        compiled, extracted, collected, _ = statement._compile_w_cache(
            self.dialect, compiled_cache=_COMPILED, column_keys=sorted(rows[0])
        )
        if compiled.literal_execute_params or compiled.post_compile_params:
            return int(self.sync.execute(statement, list(rows)).rowcount)
        # What the statement binds itself (not from the rows): taken from one row's full parameter set.
        fixed: dict[str, Any] = dict(
            compiled.construct_params(
                rows[0], extracted_parameters=extracted, escape_names=False, _collected_params=collected
            )
        )
        binds = compiled._bind_processors
        names = tuple(compiled.positiontup or ())
        processors = tuple(binds.get(n) for n in names)
        args = [
            tuple(
                v if p is None or type(v) is JsonText else p(v)
                for p, v in zip(processors, (row[n] if n in row else fixed[n] for n in names), strict=True)
            )
            for row in rows
        ]
        dbapi = self.sync.connection.dbapi_connection
        assert dbapi is not None
        try:
            return int(dbapi.executemany(compiled.string, args).rowcount)
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(compiled.string, args, exc, sqlite3.Error) from exc

    def _compiled(self, statement: Any, params: dict[str, Any] | None) -> tuple[Any, tuple[Any, ...]]:
        """(compiled statement, driver parameters), or (None, ()) for a statement that needs SQLAlchemy's own
        execution (late-rendered parameters)."""
        compiled, extracted, collected, _ = statement._compile_w_cache(
            self.dialect, compiled_cache=_COMPILED, column_keys=sorted(params or ())
        )
        if compiled.literal_execute_params or compiled.post_compile_params:
            return None, ()
        values = compiled.construct_params(
            params, extracted_parameters=extracted, escape_names=False, _collected_params=collected
        )
        binds = compiled._bind_processors
        return compiled, tuple(binds[k](values[k]) if k in binds else values[k] for k in compiled.positiontup or ())

    def _run(self, sql: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        dbapi = self.sync.connection.dbapi_connection
        assert dbapi is not None
        try:
            return dbapi.execute(sql, args)  # type: ignore[no-any-return]
        except sqlite3.Error as exc:
            raise sa_exc.DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc


class RawRows:
    """Undecoded rows of `select_raw` and the processors that decode each column (None: as it is)."""

    __slots__ = ("processors", "rows")

    def __init__(self, rows: Sequence[tuple[Any, ...]], processors: tuple[Processor, ...]) -> None:
        self.rows = rows
        self.processors = processors

    def decoded(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(v if p is None or v is None else p(v) for v, p in zip(row, self.processors, strict=True))

    def all(self) -> list[tuple[Any, ...]]:
        return [self.decoded(r) for r in self.rows]


def _result_processors(dialect: sa.Dialect, compiled: Any) -> tuple[Processor, ...]:
    cached: tuple[Processor, ...] | None = getattr(compiled, "_smooth_result_processors", None)
    if cached is None:
        cached = tuple(entry.type._cached_result_processor(dialect, None) for entry in compiled._result_columns)
        compiled._smooth_result_processors = cached
    return cached


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
