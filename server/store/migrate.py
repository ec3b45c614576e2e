"""Schema migrations: upgrade to head, and the start-up check that refuses a database not at head."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

import migrations
from server.domain.errors import FailedPrecondition

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revisions"
    return head


async def current_revision(engine: AsyncEngine) -> str | None:
    def _current(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with engine.connect() as conn:
        return await conn.run_sync(_current)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, "upgrade", revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    await _run(engine, "downgrade", revision)


async def _run(engine: AsyncEngine, action: str, revision: str) -> None:
    cfg = alembic_config()

    def _go(conn: Connection) -> None:
        cfg.attributes["connection"] = conn
        getattr(command, action)(cfg, revision)

    async with engine.connect() as conn:
        await conn.run_sync(_go)
        await conn.commit()


async def ensure_at_head(engine: AsyncEngine) -> None:
    """Refuse to serve a database whose schema is not the one this code was written for."""
    current, head = await current_revision(engine), head_revision()
    if current != head:
        state = "empty (never migrated)" if current is None else f"at revision {current}"
        raise FailedPrecondition(
            f"the database is {state}, but this version of smooth-edge needs revision {head}: "
            "run `smooth-edge migrate --db ...` first, or start with --migrate",
            reason="SCHEMA_NOT_AT_HEAD",
        )
