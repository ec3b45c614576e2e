"""Entity rows of every kind (the `Entities` port): one generic implementation driven by the registry and the
tables, member lists (tool set members) included; single-row writes with optimistic locking and the bulk
writes of replication.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from server.domain import toollife
from server.domain.entities import ToolInstance, Versioned
from server.domain.query import ListQuery, Page
from server.domain.registry import KINDS, EntityKind, references_to
from server.domain.schema import fields_of
from server.store import query as q
from server.store.connection import (
    Connection,
    bind_processors,
    id_list_value,
    in_id_list,
    in_list,
    list_value,
    map_db_error,
)
from server.store.inline import InlineConnection
from server.store.tables import ENTITY_TABLES, MEMBER_TABLES


@functools.cache
def _columns(kind: EntityKind) -> tuple[str, ...]:
    return tuple(f.name for f in fields_of(kind.cls) if f.kind != "members")


def _instance_life(entity: Versioned) -> dict[str, Any]:
    assert isinstance(entity, ToolInstance)
    level, fraction = toollife.summary(entity.tool_life_state)
    return {"life_level": level, "life_remaining": fraction}


# Columns the store keeps from an entity's fields as every row is written, whoever writes it (the use cases,
# replication from another store): not fields, never read back into entities (tables.py says what each is for).
DERIVED: dict[str, tuple[tuple[str, ...], Any]] = {
    "tool_instance": (("life_level", "life_remaining"), _instance_life),
}


@functools.cache
def _write_columns(kind: EntityKind) -> tuple[str, ...]:
    derived = DERIVED.get(kind.name)
    return _columns(kind) + (derived[0] if derived else ())


def _row(kind: EntityKind, entity: Versioned) -> dict[str, Any]:
    """The row of an entity: its fields' columns and the derived ones."""
    values = {c: getattr(entity, c) for c in _columns(kind)}
    derived = DERIVED.get(kind.name)
    if derived is not None:
        values.update(derived[1](entity))
    return values


class EntityRows(Connection):
    """Repository operations on entity rows; every entity kind goes through the same code."""

    # --- reads ---------------------------------------------------------------------------------------

    async def get(self, kind: EntityKind, entity_id: uuid.UUID) -> Versioned | None:
        items = await self._load_prepared(kind, _by_id(kind), {"id": entity_id})
        return items[0] if items else None

    async def get_many(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Versioned]:
        if not ids:
            return {}
        if len(ids) == 1:  # the by-id statement: no late-rendered IN list (the common case: one reference)
            items = await self._load_prepared(kind, _by_id(kind), {"id": ids[0]})
        elif (listed := id_list_value(ids, self._dialect)) is not None:
            items = await self._load_prepared(kind, _by_id_list(kind, self._dialect), {"id_list": listed})
        else:
            items = await self._load_prepared(kind, _by_ids(kind), {"ids": list(ids)})
        return {item.id: item for item in items}

    async def find_by(self, kind: EntityKind, field: str, value: Any) -> list[Versioned]:
        return await self._load(kind, ENTITY_TABLES[kind.name].c[field] == value, limit=10)

    async def find_in(self, kind: EntityKind, field: str, values: Sequence[Any]) -> list[Versioned]:
        """Every entity whose `field` is one of `values` (one query)."""
        if not values:
            return []
        return await self._load(kind, ENTITY_TABLES[kind.name].c[field].in_(list(values)))

    async def list_page(self, query: ListQuery) -> Page:
        stmt, params = q.page_select(_select_all(query.kind), ENTITY_TABLES[query.kind.name], query, self._dialect)
        items = await self._load_prepared(query.kind, stmt, params)
        more = len(items) > query.page_size
        items = items[: query.page_size]
        return Page(items, q.row_position(query, items[-1]) if more and items else None)

    async def _load(
        self,
        kind: EntityKind,
        *conditions: sa.ColumnElement[bool],
        order: Sequence[sa.ColumnElement[Any]] = (),
        limit: int | None = None,
    ) -> list[Versioned]:
        stmt = _select_all(kind).where(*conditions).order_by(*order)
        if limit is not None:
            stmt = stmt.limit(limit)
        return await self._load_prepared(kind, stmt, None)

    async def _load_prepared(
        self, kind: EntityKind, stmt: sa.Select[Any], params: dict[str, Any] | None
    ) -> list[Versioned]:
        """Entities of a SELECT of `_columns(kind)`. On inline SQLite the rows come undecoded and a row whose
        state was decoded before is not decoded again (`DecodedCache`): a hot Get or a List page of rows read
        before costs a lookup per row (issue 11)."""
        if not isinstance(self._conn, InlineConnection) or _has_members(kind):
            return await self._entities(kind, (await self._execute(stmt, params)).all())
        try:
            raw = self._conn.select_raw(stmt, params)
        except sa_exc.StatementError as exc:
            raise map_db_error(exc) from exc
        cache = self._conn.decoded
        version_at, updated_at = _state_columns(kind)
        columns = _columns(kind)
        out: list[Versioned] = []
        for row in raw.rows:
            key = (kind.name, row[0], row[version_at], row[updated_at])
            entity = cache.get(key)
            if entity is None:
                entity = kind.cls(**dict(zip(columns, raw.decoded(row), strict=True)))
                if self._conn.keeps_decoded:
                    cache.put(key, entity)
            out.append(entity)
        return out

    async def _entities(self, kind: EntityKind, rows: Sequence[sa.Row[Any]]) -> list[Versioned]:
        """Entities from rows of `_columns(kind)` (id first), with their member lists."""
        columns = _columns(kind)
        members = await self._members(kind, [r[0] for r in rows]) if _has_members(kind) else {}
        out: list[Versioned] = []
        for r in rows:
            values: dict[str, Any] = dict(zip(columns, r, strict=True))
            values.update(members.get(r[0], {}))
            out.append(kind.cls(**values))
        return out

    async def _members(self, kind: EntityKind, ids: list[uuid.UUID]) -> dict[uuid.UUID, dict[str, list[Any]]]:
        member_fields = [f.name for f in fields_of(kind.cls) if f.kind == "members"]
        if not member_fields or not ids:
            return {}
        out: dict[uuid.UUID, dict[str, list[Any]]] = {i: {name: [] for name in member_fields} for i in ids}
        for name in member_fields:
            table, column = MEMBER_TABLES[name]
            stmt = (
                sa.select(table.c.tool_set_id, table.c[column])
                .where(table.c.tool_set_id.in_(ids))
                .order_by(table.c.tool_set_id, table.c[column])
            )
            for row in (await self._execute(stmt)).mappings().all():
                out[row["tool_set_id"]][name].append(row[column])
        return out

    async def count_references(self, target: str, entity_id: uuid.UUID) -> dict[str, int]:
        """How many rows of each kind point at this entity (what blocks its deletion)."""
        out: dict[str, int] = {}
        for kind, field in references_to(target):
            if field in MEMBER_TABLES:
                table, column = MEMBER_TABLES[field]
                cond = table.c[column] == entity_id
            else:
                table = ENTITY_TABLES[kind.name]
                cond = table.c[field] == entity_id
            n = (await self._execute(sa.select(sa.func.count()).select_from(table).where(cond))).scalar_one()
            if n:
                out[f"{kind.name}.{field}"] = int(n)
        return out

    async def referenced(self, target: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these entities some row still points at (one query per referencing field)."""
        out: set[uuid.UUID] = set()
        if not ids:
            return out
        for kind, field in references_to(target):
            if field in MEMBER_TABLES:
                table, column = MEMBER_TABLES[field]
                col = table.c[column]
            else:
                col = ENTITY_TABLES[kind.name].c[field]
            out.update(r[0] for r in (await self._execute(sa.select(col).where(col.in_(list(ids))).distinct())).all())
        return out

    async def versions_of(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        if not ids:
            return {}
        listed = id_list_value(ids, self._dialect)
        if listed is not None:
            rows = await self._fetch(_versions_by_id_list(kind, self._dialect), {"id_list": listed})
            return {r[0]: int(r[1]) for r in rows}
        table = ENTITY_TABLES[kind.name]
        stmt = sa.select(table.c.id, table.c.version).where(table.c.id.in_(list(ids)))
        return {r["id"]: int(r["version"]) for r in (await self._execute(stmt)).mappings().all()}

    async def open_usage_counts(self, instance_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many usages of each instance are open (no end_time); instances without any are left out. One
        instance (every usage the collector writes) takes a statement built once, with no late-rendered IN list."""
        if len(instance_ids) == 1:
            rows = await self._fetch(_open_usages_of_one(), {"id": instance_ids[0]})
        elif (listed := id_list_value(instance_ids, self._dialect)) is not None:
            rows = await self._fetch(_open_usages_of_list(self._dialect), {"id_list": listed})
        else:
            rows = await self._fetch(_open_usages_of_many(), {"ids": list(instance_ids)})
        return {r[0]: int(r[1]) for r in rows}

    async def measurements_of(
        self, instance_id: uuid.UUID, before: tuple[datetime, uuid.UUID] | None, limit: int
    ) -> list[Versioned]:
        """An instance's measurements, newest first (measured_at, then id), after the keyset position `before`."""
        table = ENTITY_TABLES["tool_measurement"]
        conditions = [table.c.tool_instance_id == instance_id]
        if before is not None:
            at, last_id = before
            conditions.append(
                sa.tuple_(table.c.measured_at, table.c.id)
                < sa.tuple_(sa.literal(at, type_=table.c.measured_at.type), sa.literal(last_id, type_=sa.Uuid()))
            )
        order = [table.c.measured_at.desc(), table.c.id.desc()]
        return await self._load(KINDS["tool_measurement"], *conditions, order=order, limit=limit)

    async def usages_around(self, instance_id: uuid.UUID, at: datetime, each_side: int = 20) -> list[Versioned]:
        """The usages of an instance nearest to `at`: up to `each_side` starting at or after it (oldest first) and
        as many starting before it (newest first): where a measurement taken at `at` is the wear before or after."""
        table = ENTITY_TABLES["tool_usage"]
        kind = KINDS["tool_usage"]
        mine = table.c.tool_instance_id == instance_id
        later = await self._load(kind, mine, table.c.start_time >= at, order=[table.c.start_time], limit=each_side)
        earlier = await self._load(
            kind, mine, table.c.start_time < at, order=[table.c.start_time.desc()], limit=each_side
        )
        return [*later, *earlier]

    async def presets_on_machine(self, machine_id: str) -> list[Versioned]:
        return await self._load(KINDS["tool_preset"], ENTITY_TABLES["tool_preset"].c.machine_id == machine_id)

    async def preset_instances(
        self, machine_ids: Sequence[str], tool_numbers: Sequence[int]
    ) -> list[tuple[str, Any, uuid.UUID | None]]:
        """(machine_id, tool number, tool_instance_id) of the presets on these machines with these T numbers.

        The T number is `parameters.tool_number` as stored; the caller applies its own reading of it.
        """
        params = {
            "machines": list_value(machine_ids, self._dialect),
            "numbers": list_value([float(n) for n in tool_numbers], self._dialect),
        }
        return [(r[0], r[1], r[2]) for r in await self._fetch(_presets_by_number(self._dialect), params)]

    # --- writes --------------------------------------------------------------------------------------

    async def insert(self, kind: EntityKind, entity: Versioned) -> None:
        await self._insert(ENTITY_TABLES[kind.name], _row(kind, entity))
        if _has_members(kind):
            await self._write_members(kind, entity, replace=False)

    async def update(self, kind: EntityKind, entity: Versioned, expected_version: int) -> bool:
        """Write all columns if the row still has `expected_version`; False when it does not."""
        row = _row(kind, entity)
        values = {c: row[c] for c in _updated_columns(kind)}
        changed = await self._change(
            _update_if_version(kind), {**values, "b_id": entity.id, "b_version": expected_version}
        )
        if changed != 1:
            return False
        if _has_members(kind):
            await self._write_members(kind, entity, replace=True)
        return True

    async def delete(self, kind: EntityKind, entity_id: uuid.UUID, expected_version: int) -> bool:
        table = ENTITY_TABLES[kind.name]
        result = await self._execute(table.delete().where(table.c.id == entity_id, table.c.version == expected_version))
        return result.rowcount == 1

    async def _write_members(self, kind: EntityKind, entity: Versioned, *, replace: bool) -> None:
        for f in fields_of(kind.cls):
            if f.kind != "members":
                continue
            table, column = MEMBER_TABLES[f.name]
            if replace:
                await self._execute(table.delete().where(table.c.tool_set_id == entity.id))
            ids = getattr(entity, f.name)
            if ids:
                await self._execute(table.insert(), [{"tool_set_id": entity.id, column: i} for i in ids])

    async def upsert(self, kind: EntityKind, entity: Versioned) -> None:
        """Write an entity exactly as given (replication applies another store's state), in one statement."""
        table = ENTITY_TABLES[kind.name]
        values = _row(kind, entity)
        insert = self._upsert_into(table)
        statement = insert.values(values).on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in values if c != "id"}
        )
        await self._execute(statement)
        await self._write_members(kind, entity, replace=True)

    async def delete_row(self, kind: EntityKind, entity_id: uuid.UUID) -> None:
        table = ENTITY_TABLES[kind.name]
        await self._execute(table.delete().where(table.c.id == entity_id))

    async def delete_rows(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> None:
        """Many rows of a kind without member lists, in one statement."""
        table = ENTITY_TABLES[kind.name]
        await self._execute(table.delete().where(table.c.id.in_(list(ids))))

    # --- bulk (replication fast path) -----------------------------------------------------------------

    async def bulk_upsert(self, kind: EntityKind, entities: Sequence[Versioned]) -> None:
        """Many entities in one executemany (the kind has no member lists)."""
        table = ENTITY_TABLES[kind.name]
        rows = [_row(kind, e) for e in entities]
        insert = self._upsert_into(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in rows[0] if c != "id"}
        )
        await self._execute(statement, rows)

    async def bulk_insert(self, kind: EntityKind, entities: Sequence[Versioned]) -> None:
        """New entities in one statement (the kind has no member lists)."""
        table, columns = ENTITY_TABLES[kind.name], _write_columns(kind)
        rows = [_row(kind, e) for e in entities]
        if self._dialect == "postgresql" and entities:
            processors = bind_processors(self._conn.dialect, table, columns)
            records = [
                tuple(value if p is None else p(value) for p, value in zip(processors, row.values(), strict=True))
                for row in rows
            ]
            await self._copy(table, list(columns), records)
            return
        await self.insert_rows(table, rows)

    async def bulk_update(
        self,
        kind: EntityKind,
        updates: Sequence[tuple[Versioned, int]],
        stored: Mapping[uuid.UUID, Versioned] | None = None,
    ) -> bool:
        """(entity, expected version) pairs in one executemany per set of columns written; False when a row no
        longer had its version. `stored`: the states the rows hold (as read in this transaction): then only the
        columns an update changes are written, so SQLite maintains only the indexes over them (an instance's status
        change touched all ten of tool_instances' indexes, a collector batch's largest statement, issue 11)."""
        names = _updated_columns(kind)
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for e, v in updates:
            row = _row(kind, e)
            before = stored.get(e.id) if stored is not None else None
            columns = names if before is None or type(before) is not type(e) else _changed(kind, names, before, row)
            groups.setdefault(columns, []).append({"_id": e.id, "_expected": v, **{c: row[c] for c in columns}})
        for columns, rows in groups.items():
            statement = _bulk_update_statement(kind, columns)
            if isinstance(self._conn, InlineConnection) or self._conn.dialect.supports_sane_multi_rowcount:
                if await self._change_many(statement, rows) != len(rows):
                    return False
            else:
                await self._execute(statement, rows)
        if isinstance(self._conn, InlineConnection) or self._conn.dialect.supports_sane_multi_rowcount:
            return True
        found = await self.versions_of(kind, [e.id for e, _ in updates])
        return all(found.get(e.id) == e.version for e, _ in updates)


def _changed(kind: EntityKind, names: tuple[str, ...], before: Versioned, row: dict[str, Any]) -> tuple[str, ...]:
    """The columns of `names` whose value differs from `before`'s (version and updated_at always). A JSON value
    counts as unchanged only when it is the very object `before` holds (an entity copied with
    dataclasses.replace shares it): `{"a": 1} == {"a": 1.0}`, but their texts differ. A scalar, when of the same
    type and equal (True == 1, 1 == 1.0)."""
    old = _row(kind, before)
    out = []
    for c in names:
        a, b = old[c], row[c]
        if c in _ALWAYS_WRITTEN or (a is not b and (type(a) is not type(b) or isinstance(a, dict | list) or a != b)):
            out.append(c)
    return tuple(out)


_ALWAYS_WRITTEN = frozenset({"version", "updated_at"})


@functools.cache
def _bulk_update_statement(kind: EntityKind, columns: tuple[str, ...]) -> sa.Update:
    table = ENTITY_TABLES[kind.name]
    return (
        table.update()
        .where(table.c.id == sa.bindparam("_id"), table.c.version == sa.bindparam("_expected"))
        .values({c: sa.bindparam(c) for c in columns})
    )


@functools.cache
def _state_columns(kind: EntityKind) -> tuple[int, int]:
    """Where version and updated_at are among `_columns(kind)`: with the id, what identifies a state."""
    columns = _columns(kind)
    return columns.index("version"), columns.index("updated_at")


@functools.cache
def _has_members(kind: EntityKind) -> bool:
    return any(f.kind == "members" for f in fields_of(kind.cls))


@functools.cache
def _select_all(kind: EntityKind) -> sa.Select[Any]:
    """SELECT of `_columns(kind)`, built once (each call adds its WHERE to a copy: selects are immutable)."""
    table = ENTITY_TABLES[kind.name]
    return sa.select(*(table.c[c] for c in _columns(kind)))


@functools.cache
def _by_id(kind: EntityKind) -> sa.Select[Any]:
    return _select_all(kind).where(ENTITY_TABLES[kind.name].c.id == sa.bindparam("id"))


@functools.cache
def _by_id_list(kind: EntityKind, dialect: str) -> sa.Select[Any]:
    return _select_all(kind).where(in_id_list(ENTITY_TABLES[kind.name].c.id, dialect))


@functools.cache
def _versions_by_id_list(kind: EntityKind, dialect: str) -> sa.Select[Any]:
    table = ENTITY_TABLES[kind.name]
    return sa.select(table.c.id, table.c.version).where(in_id_list(table.c.id, dialect))


@functools.cache
def _by_ids(kind: EntityKind) -> sa.Select[Any]:
    return _select_all(kind).where(ENTITY_TABLES[kind.name].c.id.in_(sa.bindparam("ids", expanding=True)))


def _open_usages(match: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """Open usages (served by the partial index of open usages) counted per instance."""
    usages = ENTITY_TABLES["tool_usage"]
    return (
        sa.select(usages.c.tool_instance_id, sa.func.count())
        .where(match, usages.c.end_time.is_(None))
        .group_by(usages.c.tool_instance_id)
    )


@functools.cache
def _open_usages_of_one() -> sa.Select[Any]:
    return _open_usages(ENTITY_TABLES["tool_usage"].c.tool_instance_id == sa.bindparam("id"))


@functools.cache
def _open_usages_of_many() -> sa.Select[Any]:
    return _open_usages(ENTITY_TABLES["tool_usage"].c.tool_instance_id.in_(sa.bindparam("ids", expanding=True)))


@functools.cache
def _presets_by_number(dialect: str) -> sa.Select[Any]:
    """(machine_id, parameters.tool_number, tool_instance_id) of the presets on a list of machines with a list of
    T numbers, each list one parameter: built once (a collector batch ran it through SQLAlchemy's execution)."""
    table = ENTITY_TABLES["tool_preset"]
    number = table.c.parameters["tool_number"]
    return sa.select(table.c.machine_id, number.label("number"), table.c.tool_instance_id).where(
        in_list(table.c.machine_id, dialect, "machines", sa.String()),
        # as_float: the schema's "integer" admits 3.0, which PostgreSQL will not cast to an integer
        in_list(number.as_float(), dialect, "numbers", sa.Float()),
    )


@functools.cache
def _open_usages_of_list(dialect: str) -> sa.Select[Any]:
    return _open_usages(in_id_list(ENTITY_TABLES["tool_usage"].c.tool_instance_id, dialect))


@functools.cache
def _updated_columns(kind: EntityKind) -> tuple[str, ...]:
    return tuple(c for c in _write_columns(kind) if c not in ("id", "created_at", "owner_id"))


@functools.cache
def _update_if_version(kind: EntityKind) -> sa.Update:
    """UPDATE of every changeable column where the row still has the expected version (b_id, b_version)."""
    table = ENTITY_TABLES[kind.name]
    return (
        table.update()
        .where(table.c.id == sa.bindparam("b_id"), table.c.version == sa.bindparam("b_version"))
        .values({c: sa.bindparam(c) for c in _updated_columns(kind)})
    )
