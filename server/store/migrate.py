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
    _refuse_newer(await current_revision(engine))
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
    _refuse_newer(current)
    if current != head:
        state = "empty (never migrated)" if current is None else f"at revision {current}"
        raise FailedPrecondition(
            f"the database is {state}, but this version of smooth-edge needs revision {head}: "
            "run `smooth-edge migrate --db ...` first, or start with --migrate",
            reason="SCHEMA_NOT_AT_HEAD",
            metadata={"state": state, "head": head},
        )


def _refuse_newer(current: str | None) -> None:
    """A revision this code does not know was written by a newer smooth-edge: migrating cannot help, and serving
    would write rows the newer schema does not expect (issue 14: upgrade = migrate first, refuse a newer schema)."""
    script = ScriptDirectory.from_config(alembic_config())
    if current is None or current in {rev.revision for rev in script.walk_revisions()}:
        return
    raise FailedPrecondition(
        f"the database was written by a newer smooth-edge (schema revision {current}; this version knows up to "
        f"{head_revision()}): upgrade smooth-edge, or restore a backup taken before the upgrade",
        reason="SCHEMA_NEWER_THAN_CODE",
        metadata={"current": current, "head": head_revision()},
    )
