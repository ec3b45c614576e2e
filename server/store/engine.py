"""Engine set-up: SQLite pragmas (WAL, foreign keys, busy timeout, BEGIN IMMEDIATE for writers) or PostgreSQL."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from server.domain.schema import load_json

BUSY_TIMEOUT_MS = 10_000
# The inline engine runs statements on the event loop's thread: SQLite may wait only briefly there; a writer
# of another process holding the lock longer is waited for without blocking the loop (Store.write).
INLINE_BUSY_TIMEOUT_MS = 20
WRITE_OPTION = "smooth_write"


def database_url(db: str) -> str:
    """Accept a SQLAlchemy URL or a plain file path (the edge default: a SQLite file)."""
    if "://" in db:
        url = make_url(db)
        if url.get_backend_name() == "sqlite" and url.drivername != "sqlite+aiosqlite":
            url = url.set(drivername="sqlite+aiosqlite")
        if url.get_backend_name() == "postgresql" and url.drivername != "postgresql+asyncpg":
            url = url.set(drivername="postgresql+asyncpg")
        return url.render_as_string(hide_password=False)
    return f"sqlite+aiosqlite:///{Path(db).expanduser().resolve()}"


class DatabaseLocationError(Exception):
    """A SQLite file that cannot be opened or created where it is (SQLite itself says only "unable to open database
    file"). `remedy` is left to the caller, which knows where the path came from."""

    def __init__(self, message: str, path: Path, kind: Literal["missing", "not_a_directory", "not_writable"]) -> None:
        super().__init__(message)
        self.path = path
        self.kind = kind


def check_sqlite_location(url: str) -> None:
    """Raise DatabaseLocationError when the SQLite file of `url` could not be opened for writing: its directory
    is missing or not writable (WAL mode writes -wal and -shm files beside the file), or the file is read-only."""
    parsed = make_url(database_url(url))
    name = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or name in ("", ":memory:") or name.startswith("file:"):
        return
    path = Path(name)
    directory = path.parent
    if not directory.exists():
        raise DatabaseLocationError(f"the database directory {directory} does not exist", path, "missing")
    if not directory.is_dir():
        raise DatabaseLocationError(f"{directory} is not a directory", path, "not_a_directory")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DatabaseLocationError(
            f"the database directory {directory} is not writable by this user (SQLite writes its journal there)",
            path,
            "not_writable",
        )
    if path.exists() and not os.access(path, os.R_OK | os.W_OK):
        raise DatabaseLocationError(f"the database file {path} is not writable by this user", path, "not_writable")


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine for `url` with our connection settings applied on every new connection."""
    url = database_url(url)
    if make_url(url).get_backend_name() == "sqlite":
        check_sqlite_location(url)
        engine = create_async_engine(url, pool_size=8, max_overflow=0, json_deserializer=load_json, **kwargs)
        _configure_sqlite(engine.sync_engine, BUSY_TIMEOUT_MS)
        return engine
    # Custom plans for every execution: a generic plan cached while a table was small (a fresh central) keeps
    # scanning it sequentially after it has grown, until an ANALYZE that may come much later.
    server_settings = {"plan_cache_mode": "force_custom_plan"}
    engine = create_async_engine(
        url,
        pool_size=10,
        max_overflow=10,
        connect_args={"server_settings": server_settings},
        json_deserializer=load_json,
        **kwargs,
    )
    sa.event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server closed (a restart, pg_terminate_backend, an idle timeout) is
    replaced before anyone uses it. asyncpg learns of the close on the event loop as it happens, so asking costs
    no round trip; SQLAlchemy's pool_pre_ping sent a query before every checkout, a quarter of a Get's round
    trips (issue 11). The pool replaces a connection refused here with a new one."""
    if dbapi_connection.driver_connection.is_closed():
        raise sa_exc.DisconnectionError("the server closed this pooled connection")


def create_inline_engine(url: str) -> sa.Engine:
    """A synchronous engine on the same SQLite file, for statements run inline on the event loop's thread
    (server/store/inline.py). Connections never wait for the pool: transactions there rarely overlap."""
    sync_url = make_url(database_url(url)).set(drivername="sqlite")
    # Every transaction there ends in an explicit commit or rollback: no reset on return to the pool.
    engine = sa.create_engine(
        sync_url,
        poolclass=sa.pool.QueuePool,
        pool_size=8,
        max_overflow=-1,
        pool_reset_on_return=None,
        json_deserializer=load_json,
    )
    _configure_sqlite(engine, INLINE_BUSY_TIMEOUT_MS, raw_begin=True)

    @sa.event.listens_for(engine, "connect")
    def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
        # A commit never checkpoints on the loop's thread: the store's checkpointer does (store/checkpointer.py).
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")

    return engine


def _configure_sqlite(engine: sa.Engine, busy_timeout_ms: int, *, raw_begin: bool = False) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let us emit BEGIN ourselves (pysqlite's implicit transactions cannot do BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (
            "PRAGMA journal_mode=WAL",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={busy_timeout_ms}",
            # NORMAL is durable across process crashes in WAL mode; a power cut may undo the last commits
            # (DESIGN decision 7 says how replication copes).
            "PRAGMA synchronous=NORMAL",
        ):
            cursor.execute(pragma)
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        # Writers take the write lock up front, so two writers never deadlock on a lock upgrade.
        immediate = conn.get_execution_options().get(WRITE_OPTION, False)
        if raw_begin and not immediate and conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
            return  # a read begun on the driver already (repository._raw_read): SQLAlchemy joins it
        if raw_begin:  # a synchronous driver: straight to it (SQLAlchemy's statement machinery costs more)
            sql = "BEGIN IMMEDIATE" if immediate else "BEGIN"
            try:
                conn.connection.dbapi_connection.execute(sql)  # type: ignore[union-attr]
            except sqlite3.Error as exc:  # raised as SQLAlchemy would, so the store maps it like any other
                raise sa_exc.DBAPIError.instance(sql, (), exc, sqlite3.Error) from exc
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
