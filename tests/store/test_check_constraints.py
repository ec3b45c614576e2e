"""The database enforces the entity text limits itself (issue 9): raw INSERTs that bypass the use cases, into a
SQLite file and a PostgreSQL database migrated by Alembic, are refused beyond a limit or blank where required.
Every text field of every entity kind is covered, read from `fields_of`, so a new field is covered without a
test change. Also the migration that adds the limits: it keeps every row, and names the rows that break them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from conftest import fresh_pg_database
from sqlalchemy.ext.asyncio import AsyncEngine

from server.domain.entities import ToolUsage
from server.domain.errors import FailedPrecondition
from server.domain.registry import KINDS
from server.domain.schema import FieldInfo, field_map, fields_of
from server.store import migrate
from server.store.engine import create_engine
from server.store.tables import ENTITY_TABLES, tool_set_instances, tool_set_presets

BEFORE_LIMITS = "0003"  # the revision before the text limits
NOW = datetime(2026, 11, 28, 8, 30, tzinfo=UTC)
ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]

TEXT_FIELDS = [(kind.name, f) for kind in KINDS.values() for f in fields_of(kind.cls) if f.kind == "text"]
REQUIRED = [(kind, f) for kind, f in TEXT_FIELDS if f.required]
OPTIONAL = [(kind, f) for kind, f in TEXT_FIELDS if not f.required]


def _ids(case: tuple[str, FieldInfo]) -> str:
    return f"{case[0]}.{case[1].name}"


def _value(f: FieldInfo, parents: Mapping[str, uuid.UUID]) -> Any:
    """A valid stored value of field `f`; references point at `parents` (kind -> id) where there is one."""
    if f.kind == "uuid":
        return uuid.uuid4() if f.name == "id" else parents.get(f.ref or "")
    if f.kind == "text":
        return f"{f.name}-{uuid.uuid4().hex[:8]}"  # unique (e-mails, serial numbers), short of every limit
    if f.kind == "timestamp":
        return NOW
    if f.kind == "date":
        return NOW.date()
    if f.kind == "int":
        return 1
    if f.kind == "enum":
        assert f.enum_cls is not None
        return next(iter(f.enum_cls))
    return {"bool": False, "json": {}, "tags": []}[f.kind]


def row(kind: str, parents: Mapping[str, uuid.UUID], **overrides: Any) -> dict[str, Any]:
    """A row of `kind` that the database accepts, with `overrides`."""
    values = {f.name: _value(f, parents) for f in fields_of(KINDS[kind].cls) if f.kind != "members"}
    return {**values, **overrides}


async def insert(engine: AsyncEngine, kind: str, values: Mapping[str, Any]) -> None:
    """Insert the values of the columns the database has at its revision (a later migration may add fields)."""
    table = ENTITY_TABLES[kind]
    async with engine.begin() as conn:
        present = await conn.run_sync(lambda sync: _columns_now(sync, table.name))
        assert present, f"{table.name} does not exist at this revision"
        await conn.execute(table.insert().values({k: v for k, v in values.items() if k in present}))


def _columns_now(sync: sa.Connection, table: str) -> set[str]:
    """The columns `table` has at the database's revision (none: it does not exist yet)."""
    inspector = sa.inspect(sync)
    return {c["name"] for c in inspector.get_columns(table)} if inspector.has_table(table) else set()


async def _tables_now(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names()))


async def seed(engine: AsyncEngine) -> dict[str, uuid.UUID]:
    """One row of every kind, parents first (the registry's order), and a tool set holding an instance and a
    preset; returns kind -> id."""
    parents: dict[str, uuid.UUID] = {}
    existing = await _tables_now(engine)
    for kind in KINDS:
        if ENTITY_TABLES[kind].name not in existing:
            continue  # a kind a later revision adds
        values = row(kind, parents)
        await insert(engine, kind, values)
        parents[kind] = values["id"]
    async with engine.begin() as conn:
        await conn.execute(
            tool_set_instances.insert().values(
                tool_set_id=parents["tool_set"], tool_instance_id=parents["tool_instance"]
            )
        )
        await conn.execute(
            tool_set_presets.insert().values(tool_set_id=parents["tool_set"], tool_preset_id=parents["tool_preset"])
        )
    return parents


@asynccontextmanager
async def _url(request: pytest.FixtureRequest, directory: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield str(directory / "limits.db")
        return
    async with fresh_pg_database(request.getfixturevalue("pg_url")) as url:
        yield url


@asynccontextmanager
async def empty_database(request: pytest.FixtureRequest, directory: Path) -> AsyncIterator[AsyncEngine]:
    """An engine on a new, empty database of the kind `request.param` names."""
    async with _url(request, directory) as url:
        engine = create_engine(url)
        try:
            yield engine
        finally:
            await engine.dispose()


@dataclass
class Migrated:
    engine: AsyncEngine
    parents: dict[str, uuid.UUID]  # one row of every kind, for references


@pytest.fixture(scope="module", params=ENGINES)
async def migrated(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Migrated]:
    """A database at head, shared by the module's insert tests."""
    async with empty_database(request, tmp_path_factory.mktemp("limits")) as engine:
        await migrate.upgrade(engine)
        yield Migrated(engine, await seed(engine))


@pytest.fixture(params=ENGINES)
async def empty(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    async with empty_database(request, tmp_path) as engine:
        yield engine


def _check(kind: str, f: FieldInfo, rule: str) -> str:
    """The constraint's name, which both engines quote when they refuse a row."""
    return f"ck_{ENTITY_TABLES[kind].name}_{f.name}_{rule}"


def _limit(f: FieldInfo) -> int:
    assert f.max_len is not None, f"text field {f.name} without max_len"
    return f.max_len


@pytest.mark.parametrize(("kind", "f"), TEXT_FIELDS, ids=[_ids(c) for c in TEXT_FIELDS])
async def test_a_text_at_its_limit_is_stored(migrated: Migrated, kind: str, f: FieldInfo) -> None:
    """Counted in characters on both engines: 'é' is two bytes in UTF-8."""
    values = row(kind, migrated.parents, **{f.name: "é" * _limit(f)})
    await insert(migrated.engine, kind, values)
    table = ENTITY_TABLES[kind]
    async with migrated.engine.connect() as conn:
        stored = await conn.scalar(sa.select(table.c[f.name]).where(table.c.id == values["id"]))
    assert stored == values[f.name]


@pytest.mark.parametrize(("kind", "f"), TEXT_FIELDS, ids=[_ids(c) for c in TEXT_FIELDS])
async def test_a_text_over_its_limit_is_refused(migrated: Migrated, kind: str, f: FieldInfo) -> None:
    values = row(kind, migrated.parents, **{f.name: "a" * (_limit(f) + 1)})
    with pytest.raises(sa.exc.IntegrityError, match=_check(kind, f, "max_len")):
        await insert(migrated.engine, kind, values)


@pytest.mark.parametrize("blank", ["", "   "], ids=["empty", "spaces"])
@pytest.mark.parametrize(("kind", "f"), REQUIRED, ids=[_ids(c) for c in REQUIRED])
async def test_a_required_text_that_is_blank_is_refused(
    migrated: Migrated, kind: str, f: FieldInfo, blank: str
) -> None:
    values = row(kind, migrated.parents, **{f.name: blank})
    with pytest.raises(sa.exc.IntegrityError, match=_check(kind, f, "not_blank")):
        await insert(migrated.engine, kind, values)


@pytest.mark.parametrize(("kind", "f"), OPTIONAL, ids=[_ids(c) for c in OPTIONAL])
async def test_an_optional_text_may_be_empty(migrated: Migrated, kind: str, f: FieldInfo) -> None:
    await insert(migrated.engine, kind, row(kind, migrated.parents, **{f.name: ""}))


async def _row_counts(engine: AsyncEngine) -> dict[str, int]:
    existing = await _tables_now(engine)
    tables = [t for t in (*ENTITY_TABLES.values(), tool_set_instances, tool_set_presets) if t.name in existing]
    async with engine.connect() as conn:
        return {t.name: await conn.scalar(sa.select(sa.func.count()).select_from(t)) or 0 for t in tables}


async def test_the_limits_migration_keeps_every_row_and_the_foreign_keys(empty: AsyncEngine) -> None:
    """On SQLite it rebuilds every entity table: with foreign keys on, that would delete tool set members (ON
    DELETE CASCADE); the rows stay, and the connections the application gets afterwards enforce foreign keys."""
    await migrate.upgrade(empty, BEFORE_LIMITS)
    ids = await seed(empty)
    counts = await _row_counts(empty)
    assert set(counts.values()) == {1}
    await migrate.upgrade(empty)
    assert {t: n for t, n in (await _row_counts(empty)).items() if t in counts} == counts
    items = ENTITY_TABLES["tool_item"]
    with pytest.raises(sa.exc.IntegrityError):
        async with empty.begin() as conn:
            await conn.execute(items.delete().where(items.c.id == ids["tool_item"]))
    await migrate.downgrade(empty, BEFORE_LIMITS)
    assert await _row_counts(empty) == counts
    with pytest.raises(sa.exc.IntegrityError):
        async with empty.begin() as conn:
            await conn.execute(items.delete().where(items.c.id == ids["tool_item"]))


async def test_rows_beyond_the_limits_stop_the_migration_and_are_named(empty: AsyncEngine) -> None:
    await migrate.upgrade(empty, BEFORE_LIMITS)
    parents = await seed(empty)
    notes_limit = _limit(field_map(ToolUsage)["notes"])
    blank = row("tool_item", parents, name="   ")  # passed 0001's `name <> ''`
    too_long = row("tool_usage", parents, notes="n" * (notes_limit + 1))  # TEXT before 0004 on both engines
    await insert(empty, "tool_item", blank)
    await insert(empty, "tool_usage", too_long)

    with pytest.raises(FailedPrecondition) as refused:
        await migrate.upgrade(empty)
    message = refused.value.message
    assert "tool_items.name: 1 row(s) blank" in message
    assert f"tool_usages.notes: 1 row(s) longer than {notes_limit}" in message
    assert blank["id"].hex in message.replace("-", "") and too_long["id"].hex in message.replace("-", "")
    assert await migrate.current_revision(empty) == BEFORE_LIMITS

    items, usages = ENTITY_TABLES["tool_item"], ENTITY_TABLES["tool_usage"]
    async with empty.begin() as conn:
        await conn.execute(items.update().where(items.c.id == blank["id"]).values(name="End mill"))
        await conn.execute(usages.update().where(usages.c.id == too_long["id"]).values(notes=""))
    await migrate.upgrade(empty)
    assert await migrate.current_revision(empty) == migrate.head_revision()
