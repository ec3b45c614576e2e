"""The MES queries and the change stream's reads (the `MesQueries` port, issue 13). Each query is an index range:
tool life by (life_remaining, id, life_level), calibration by (calibration_due, id), usages by start_time (with
the machine or the instance first when given), presets by machine_id, changes by seq; the benchmark prints the
plans (tests/bench/bench_mes.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa

from server.domain.entities import Revision, ToolInstanceStatus, Versioned
from server.domain.mes import InstanceScope, UsageFilter, UsageGrouping, UsageTotals
from server.domain.registry import KINDS
from server.store.change_log import revision_of
from server.store.entity_rows import EntityRows
from server.store.tables import ENTITY_TABLES, changes

_INSTANCES = ENTITY_TABLES["tool_instance"]
_PRESETS = ENTITY_TABLES["tool_preset"]
_USAGES = ENTITY_TABLES["tool_usage"]
_ASSEMBLIES = ENTITY_TABLES["tool_assembly"]


def _scope_terms(scope: InstanceScope) -> list[sa.ColumnElement[bool]]:
    terms: list[sa.ColumnElement[bool]] = []
    if scope.machine_id is not None:
        on_machine = sa.select(_PRESETS.c.tool_instance_id).where(_PRESETS.c.machine_id == scope.machine_id)
        terms.append(_INSTANCES.c.id.in_(on_machine))
    if scope.tool_item_id is not None:
        # The item's instances, then those of the assemblies it is in: two index searches (an OR of the two
        # columns would make SQLite walk the whole ordering index instead; a tool item has a few instances).
        item = scope.tool_item_id
        direct, held = _INSTANCES.alias("of_item"), _INSTANCES.alias("of_assembly")
        of_item = sa.select(direct.c.id).where(direct.c.tool_item_id == item)
        of_assemblies = (
            sa.select(held.c.id)
            .select_from(_ASSEMBLIES.join(held, held.c.tool_assembly_id == _ASSEMBLIES.c.id))
            .where(sa.or_(_ASSEMBLIES.c.cutter_id == item, _ASSEMBLIES.c.holder_id == item))
        )
        terms.append(_INSTANCES.c.id.in_(sa.union_all(of_item, of_assemblies)))
    return terms


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def _after(columns: Sequence[sa.ColumnElement[Any]], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    return sa.tuple_(*columns) > sa.tuple_(*(sa.literal(v, type_=c.type) for c, v in zip(columns, values, strict=True)))


class MesRows(EntityRows):
    """Reads for the MES use cases (server/usecases/mes.py, server/usecases/change_stream.py)."""

    async def tool_life_page(
        self, scope: InstanceScope, min_level: int, after: tuple[float, uuid.UUID] | None, limit: int
    ) -> list[Versioned]:
        """Instances at `min_level` or past it, least remaining life first (life_remaining, then id)."""
        terms = [*_scope_terms(scope), _INSTANCES.c.life_level >= min_level]
        order = [_INSTANCES.c.life_remaining, _INSTANCES.c.id]
        if after is not None:
            terms.append(_after(order, after))
        return await self._load(KINDS["tool_instance"], *terms, order=order, limit=limit)

    async def calibration_due_page(
        self, scope: InstanceScope, before: date, after: tuple[date, uuid.UUID] | None, limit: int
    ) -> list[Versioned]:
        """Instances (not RETIRED) with calibration_due before a date, soonest first."""
        terms = [
            *_scope_terms(scope),
            _INSTANCES.c.calibration_due < before,
            _INSTANCES.c.status != ToolInstanceStatus.RETIRED,
        ]
        order = [_INSTANCES.c.calibration_due, _INSTANCES.c.id]
        if after is not None:
            terms.append(_after(order, after))
        return await self._load(KINDS["tool_instance"], *terms, order=order, limit=limit)

    async def preset_machines(self, instance_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, dict[str, uuid.UUID]]:
        """Per instance: machine_id -> the id of its preset there (the default one when it has several)."""
        if not instance_ids:
            return {}
        stmt = (
            sa.select(_PRESETS.c.tool_instance_id, _PRESETS.c.machine_id, _PRESETS.c.id)
            .where(_PRESETS.c.tool_instance_id.in_(list(instance_ids)))
            .order_by(_PRESETS.c.is_default, _PRESETS.c.id)
        )
        out: dict[uuid.UUID, dict[str, uuid.UUID]] = {}
        for instance_id, machine_id, preset_id in await self._fetch(stmt):
            out.setdefault(instance_id, {})[machine_id] = preset_id  # the default (sorted last) wins
        return out

    async def instances_on_machine(self, machine_id: str) -> set[uuid.UUID]:
        stmt = sa.select(_PRESETS.c.tool_instance_id).where(_PRESETS.c.machine_id == machine_id)
        return {r[0] for r in await self._fetch(stmt)}

    async def open_usage_machines(self, instance_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, set[str]]:
        """Per instance: the machines where a usage of it is open."""
        if not instance_ids:
            return {}
        stmt = sa.select(_USAGES.c.tool_instance_id, _USAGES.c.machine_id).where(
            _USAGES.c.tool_instance_id.in_(list(instance_ids)), _USAGES.c.end_time.is_(None)
        )
        out: dict[uuid.UUID, set[str]] = {}
        for instance_id, machine_id in await self._fetch(stmt):
            out.setdefault(instance_id, set()).add(machine_id)
        return out

    async def sister_instances(
        self,
        keys: Sequence[tuple[uuid.UUID | None, uuid.UUID | None]],
        due_from: date,
        exclude: Sequence[uuid.UUID],
        limit: int,
    ) -> dict[tuple[uuid.UUID | None, uuid.UUID | None], list[Versioned]]:
        """For each (tool_item_id, tool_assembly_id) key: AVAILABLE instances of the same assembly (or, without
        one, the same tool item), calibrated and not due before `due_from`, most remaining life first, at most
        `limit` — one statement for every key (ranked per assembly and per item), then one read of the rows."""
        assemblies = sorted({a for _, a in keys if a is not None})
        items = sorted({i for i, a in keys if a is None and i is not None})
        t = _INSTANCES
        ranked = []
        for tag, column, ids in (("a", t.c.tool_assembly_id, assemblies), ("i", t.c.tool_item_id, items)):
            if not ids:
                continue
            rank = sa.func.row_number().over(partition_by=column, order_by=[t.c.life_remaining.desc(), t.c.id])
            terms = [column.in_(ids), t.c.status == ToolInstanceStatus.AVAILABLE, t.c.calibration_due >= due_from]
            if exclude:
                terms.append(t.c.id.not_in(list(exclude)))
            ranked.append(
                sa.select(
                    sa.literal(tag).label("tag"), column.label("key"), t.c.id.label("id"), rank.label("rank")
                ).where(*terms)
            )
        if not ranked:
            return {}
        union = (ranked[0] if len(ranked) == 1 else sa.union_all(*ranked)).subquery()
        stmt = sa.select(union.c.tag, union.c.key, union.c.id).where(union.c.rank <= limit).order_by(union.c.rank)
        rows = (await self._execute(stmt)).all()
        found = await self.get_many(KINDS["tool_instance"], sorted({_as_uuid(r.id) for r in rows}))
        out: dict[tuple[uuid.UUID | None, uuid.UUID | None], list[Versioned]] = {}
        for row in rows:
            entity = found.get(_as_uuid(row.id))
            if entity is not None:
                key = _as_uuid(row.key)
                out.setdefault((None, key) if row.tag == "a" else (key, None), []).append(entity)
        return out

    async def usage_totals(
        self, flt: UsageFilter, group: UsageGrouping | None, after_key: Any, limit: int
    ) -> list[tuple[Any, UsageTotals]]:
        """Totals per group key (sorted, after `after_key`), or one row of totals over everything (`group` None)."""
        u = _USAGES
        metrics = u.c.usage_metrics
        terms: list[sa.ColumnElement[bool]] = [u.c.start_time >= flt.start, u.c.start_time < flt.end]
        for name in ("machine_id", "program_name", "operator"):
            value = getattr(flt, name)
            if value:
                terms.append(u.c[name] == value)
        if flt.tool_instance_id is not None:
            terms.append(u.c.tool_instance_id == flt.tool_instance_id)
        source: sa.FromClause = u
        key: sa.ColumnElement[Any] | None = None
        if group is UsageGrouping.TOOL_ITEM:
            i, a = _INSTANCES, _ASSEMBLIES
            source = u.join(i, i.c.id == u.c.tool_instance_id).outerjoin(a, a.c.id == i.c.tool_assembly_id)
            key = sa.func.coalesce(i.c.tool_item_id, a.c.cutter_id, a.c.holder_id, type_=sa.Uuid())
        elif group is not None:
            key = u.c[group.value]
        columns: list[sa.ColumnElement[Any]] = [
            sa.func.count(),
            sa.func.sum(sa.case((u.c.end_time.is_(None), 1), else_=0)),
            *(
                sa.func.sum(metrics[m].as_float())
                for m in ("time_in_spindle_s", "spindle_runtime_s", "cycles", "parts")
            ),
            sa.func.min(u.c.start_time),
            sa.func.max(u.c.start_time),
        ]
        if key is None:
            stmt = sa.select(*columns).select_from(source).where(*terms)
            return [(None, _totals(row)) for row in await self._fetch(stmt)]
        if after_key is not None:
            terms.append(key > sa.literal(after_key, type_=key.type))
        stmt = sa.select(key, *columns).select_from(source).where(*terms).group_by(key).order_by(key).limit(limit)
        return [(row[0], _totals(tuple(row)[1:])) for row in await self._fetch(stmt)]

    # --- the change stream ----------------------------------------------------------------------------

    async def change_page(self, after_seq: int, entity_types: Sequence[str], limit: int) -> tuple[int, list[Revision]]:
        """(the newest sequence looked at, the changes of the given kinds among them): up to `limit` changes after
        a sequence, oldest first, in one statement; the snapshots of other kinds are not decoded."""
        columns = [c for c in changes.c if c.name != "data"]
        stmt = (
            sa.select(*columns, sa.type_coerce(changes.c.data, sa.Text()).label("data_text"))
            .where(changes.c.seq > after_seq)
            .order_by(changes.c.seq)
            .limit(limit)
        )
        rows = (await self._execute(stmt)).mappings().all()
        wanted = set(entity_types)
        out = [
            revision_of({**r, "data": _json(r["data_text"])}) for r in rows if not wanted or r["entity_type"] in wanted
        ]
        return (int(rows[-1]["seq"]) if rows else after_seq), out

    async def snapshot_before(self, entity_id: uuid.UUID, seq: int) -> Any:
        """The snapshot of an entity's change just before sequence `seq` (None: it has none kept)."""
        stmt = (
            sa.select(changes.c.data)
            .where(changes.c.entity_id == entity_id, changes.c.seq < seq)
            .order_by(changes.c.seq.desc())
            .limit(1)
        )
        return (await self._execute(stmt)).scalar()

    async def change_bounds(self) -> tuple[int, int]:
        """(oldest, newest) sequence of the change log; (0, 0) when it is empty."""
        oldest, newest = tuple(
            (await self._execute(sa.select(sa.func.min(changes.c.seq), sa.func.max(changes.c.seq)))).one()
        )
        return int(oldest or 0), int(newest or 0)


def _json(value: Any) -> Any:
    """A JSON column read as text: SQLite gives the text, asyncpg decodes JSONB whatever it is coerced to."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def _totals(row: Sequence[Any]) -> UsageTotals:
    count, open_count, in_spindle, running, cycles, parts, first, last = tuple(row)
    return UsageTotals(
        usages=int(count or 0),
        open_usages=int(open_count or 0),
        time_in_spindle_s=float(in_spindle or 0.0),
        spindle_runtime_s=float(running or 0.0),
        cycles=float(cycles or 0.0),
        parts=float(parts or 0.0),
        first_start=_utc(first),
        last_start=_utc(last),
    )


def _utc(value: Any) -> datetime | None:
    """An aggregate's timestamp: SQLite returns MIN/MAX of a time column as text, PostgreSQL as a datetime."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
