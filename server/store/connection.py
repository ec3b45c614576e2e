"""What every row class of a transaction shares: the open connection, statement execution, savepoints,
bulk inserts (COPY on PostgreSQL) and the one mapping of database exceptions to the domain error tree.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from server.domain.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, SmoothError, Unavailable
from server.domain.schema import JsonText
from server.store.inline import InlineConnection

log = structlog.get_logger("smooth_edge.store")


def map_db_error(exc: Exception) -> SmoothError:
    """Database exceptions -> domain errors (the only place that knows driver messages).

    Clients get a generic message (driver text can quote other rows' values); the log gets the details.
    """
    orig = getattr(exc, "orig", exc)
    text = str(orig)
    lowered = text.lower()
    sqlstate = str(getattr(orig, "sqlstate", "") or getattr(getattr(orig, "__cause__", None), "sqlstate", "") or "")
    log.warning("store.database_error", error=text[:500], kind=type(orig).__name__, sqlstate=sqlstate)
    if isinstance(exc, sa_exc.IntegrityError) or sqlstate.startswith("23"):  # (raw driver errors: COPY)
        if "unique" in lowered or "duplicate key" in lowered:
            return AlreadyExists("a unique value is already taken", reason="UNIQUE_VIOLATION")
        if "foreign key" in lowered:
            return FailedPrecondition(
                "a referenced row is missing or the row is still referenced", reason="FOREIGN_KEY_VIOLATION"
            )
        return InvalidArgument(
            "the database refused the values (a required field or a check)", reason="CONSTRAINT_VIOLATION"
        )
    if sqlstate in ("40001", "40P01") or "deadlock" in lowered or "could not serialize" in lowered:
        return Aborted("the write collided with another one; retry it", reason="WRITE_CONFLICT")
    if isinstance(exc, sa_exc.DataError) or sqlstate.startswith("22"):
        return InvalidArgument("the database refused a value (out of range or malformed)", reason="BAD_VALUE")
    if isinstance(exc, sa_exc.StatementError) and not isinstance(exc, sa_exc.DBAPIError):
        return InvalidArgument("a value cannot be stored (wrong type)", reason="BAD_VALUE")
    return Unavailable("the database is unavailable or failed; retry shortly", reason="DATABASE_UNAVAILABLE")


def encode(
    dialect: sa.Dialect, table: sa.Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Rows through their columns' own type processing (JSON, enums, UTC times); JsonText passes as it is."""
    processors = bind_processors(dialect, table, tuple(columns))
    return [
        tuple(
            row[c] if p is None or type(row[c]) is JsonText else p(row[c])
            for c, p in zip(columns, processors, strict=True)
        )
        for row in rows
    ]


@functools.cache
def bind_processors(
    dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]
) -> list[Callable[[Any], Any] | None]:
    """Each column's bind processor (None: the value passes unchanged), made once per dialect and table."""
    return [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]


def in_list(
    value: sa.ColumnElement[Any], dialect: str, name: str, element: sa.types.TypeEngine[Any]
) -> sa.ColumnElement[bool]:
    """`value` is one of a list bound as one parameter `name` (of `element`s; its value from `list_value`), as
    `in_id_list` for ids: SQLite's json_each over a JSON array, PostgreSQL's `= ANY` of an array."""
    if dialect == "postgresql":
        return value == sa.any_(sa.bindparam(name, type_=postgresql.ARRAY(element)))
    listed: sa.Select[Any] = sa.select(sa.column("value")).select_from(
        sa.func.json_each(sa.bindparam(name, type_=sa.String))
    )
    return value.in_(listed)


def list_value(values: Sequence[Any], dialect: str) -> Any:
    """The parameter of `in_list` for plain JSON values (strings, numbers)."""
    return list(values) if dialect == "postgresql" else json.dumps(list(values))


def in_id_list(column: sa.ColumnElement[Any], dialect: str) -> sa.ColumnElement[bool]:
    """`column` (a Uuid) is one of a list of ids bound as one parameter, `id_list` (its value from
    `id_list_value`): SQLite's json_each over a JSON array of the ids as it stores them (32 hex digits), PostgreSQL's
    `= ANY` of an array. One statement text whatever the count, compiled (and on PostgreSQL prepared) once, where an
    expanding IN list is rendered anew for each count by SQLAlchemy's own execution; both probe the column's index
    for each id (issue 11: most of a collector batch's reads, and central's checks of a pushed batch)."""
    # On SQLite the stored text is compared with the array's strings as they are (no UUID processing).
    value = column if dialect == "postgresql" else sa.type_coerce(column, sa.String)
    return in_list(value, dialect, "id_list", sa.Uuid())


def id_list_value(ids: Sequence[Any], dialect: str) -> Any | None:
    """The `id_list` parameter of `in_id_list` for these ids; None when one of them is not a UUID (the caller then
    takes the ordinary IN list, which refuses it as before)."""
    if not all(type(i) is uuid.UUID for i in ids):
        return None
    return list(ids) if dialect == "postgresql" else json.dumps([i.hex for i in ids])


class Connection:
    """One open connection inside a transaction; the row classes build on it."""

    def __init__(self, conn: AsyncConnection | InlineConnection) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name
        self.tx_id = uuid.uuid4()
        # What this transaction has read or written and may read again without a query (the audit chain's
        # head); forgotten when a savepoint is rolled back.
        self._known: dict[str, Any] = {}
        # What this transaction still has to write before it commits (the audit chain's head: one UPDATE per
        # transaction, not one per unit of work of a group commit); as it was at a savepoint when that is rolled back.
        self._pending: dict[str, Any] = {}
        # Rows this transaction added per table, on PostgreSQL: the store analyzes tables that grew (statistics.py).
        self.inserted: Counter[str] = Counter()

    async def _execute(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        try:
            result: sa.CursorResult[Any] = await self._conn.execute(statement, params)
            return result
        except (sa_exc.StatementError, TimeoutError) as exc:
            raise map_db_error(exc) from exc

    async def _fetch(self, statement: sa.Select[Any], params: dict[str, Any] | None = None) -> list[tuple[Any, ...]]:
        """The rows of a SELECT, decoded: straight from the driver on inline SQLite (server/store/inline.py)."""
        if isinstance(self._conn, InlineConnection):
            try:
                return self._conn.select_raw(statement, params).all()
            except sa_exc.StatementError as exc:
                raise map_db_error(exc) from exc
        return list((await self._execute(statement, params)).all())

    async def _change(self, statement: sa.Executable, params: dict[str, Any] | None = None) -> int:
        """Run one INSERT, UPDATE or DELETE; how many rows it changed (straight to the driver on inline SQLite)."""
        if isinstance(self._conn, InlineConnection):
            try:
                return self._conn.change_raw(statement, params)
            except sa_exc.StatementError as exc:
                raise map_db_error(exc) from exc
        return int((await self._execute(statement, params)).rowcount)

    async def _change_many(self, statement: sa.Executable, rows: Sequence[dict[str, Any]]) -> int:
        """Run one INSERT, UPDATE or DELETE for each of `rows` (an executemany; straight to the driver on inline
        SQLite); how many rows it changed in all."""
        if isinstance(self._conn, InlineConnection):
            try:
                return self._conn.change_many_raw(statement, rows)
            except sa_exc.StatementError as exc:
                raise map_db_error(exc) from exc
        if isinstance(statement, sa.Insert):
            self.inserted[statement.table.name] += len(rows)
        return int((await self._execute(statement, list(rows))).rowcount)

    async def _insert(self, table: sa.Table, row: dict[str, Any]) -> None:
        """Insert one row: straight to the driver on inline SQLite (server/store/inline.py), a Core INSERT elsewhere."""
        if isinstance(self._conn, InlineConnection):
            try:
                await self._conn.insert(table, row)
            except sa_exc.StatementError as exc:
                raise map_db_error(exc) from exc
        else:
            await self._execute(table.insert(), row)
            self.inserted[table.name] += 1

    def _upsert_into(self, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
        """An INSERT of this dialect that can take ON CONFLICT DO UPDATE."""
        return postgresql.insert(table) if self._dialect == "postgresql" else sqlite.insert(table)

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: a failure inside rolls back only what was done inside."""
        nested = await self._conn.begin_nested()
        pending = dict(self._pending)
        try:
            yield
        except BaseException:
            self._known.clear()
            self._pending = pending
            await nested.rollback()
            raise
        else:
            await nested.commit()

    async def insert_rows(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert many rows (same keys in each): COPY on PostgreSQL (binary, one round trip, no per-row
        statement), executemany elsewhere. Values go through the columns' own type processing either way."""
        if not rows:
            return
        if isinstance(self._conn, InlineConnection):
            await self._change_many(table.insert(), rows)
            return
        if self._dialect != "postgresql":
            plain = [{k: json.loads(v) if type(v) is JsonText else v for k, v in row.items()} for row in rows]
            await self._execute(table.insert(), plain)
            return
        columns = list(rows[0])
        await self._copy(table, columns, encode(self._conn.dialect, table, columns, rows))

    async def _copy(self, table: sa.Table, columns: list[str], records: list[tuple[Any, ...]]) -> None:
        if not records:
            return
        assert isinstance(self._conn, AsyncConnection), "COPY is PostgreSQL's (asyncpg)"
        raw = await self._conn.get_raw_connection()
        try:
            await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)  # type: ignore[union-attr]
        except asyncpg.PostgresError as exc:
            raise map_db_error(exc) from exc
        except (asyncpg.InterfaceError, ValueError, TypeError) as exc:
            log.warning("store.copy_refused", table=table.name, error=str(exc)[:500])
            raise InvalidArgument("a value cannot be stored (wrong type)", reason="BAD_VALUE") from exc
        self.inserted[table.name] += len(records)
