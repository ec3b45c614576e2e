"""The store: one generic repository for every entity kind, inside a unit of work (one transaction).

`Store.write()` yields a transaction in which the entity row, its change record and (later) its audit entry
are written together. On SQLite writers queue on one lock and take the database lock up front
(BEGIN IMMEDIATE); on PostgreSQL the version check in UPDATE/DELETE keeps concurrent writers honest.
Database exceptions are mapped to the domain error tree here, once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import asyncpg
import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.domain.entities import ChangeOperation, Revision, Versioned
from server.domain.errors import Aborted, AlreadyExists, FailedPrecondition, InvalidArgument, SmoothError, Unavailable
from server.domain.identity import ApiKey, AuditEntry, AuditFilter
from server.domain.query import ListQuery, Page
from server.domain.registry import KINDS, EntityKind, references_to
from server.domain.schema import JsonText, fields_of, to_json
from server.store import query as q
from server.store.engine import WRITE_OPTION, create_engine, is_sqlite
from server.store.tables import (
    ENTITY_TABLES,
    MEMBER_TABLES,
    api_keys,
    audit_head,
    audit_log,
    changes,
    collector_state,
    collector_unmatched,
    replication_state,
    request_log,
    sync_conflicts,
    sync_origins,
    sync_rejections,
)

log = structlog.get_logger("smooth_edge.store")


def _encode(
    dialect: sa.Dialect, table: sa.Table, columns: Sequence[str], rows: Sequence[dict[str, Any]]
) -> list[tuple[Any, ...]]:
    """Rows through their columns' own type processing (JSON, enums, UTC times); JsonText passes as it is."""
    processors = _processors(dialect, table, tuple(columns))
    return [
        tuple(
            row[c] if p is None or type(row[c]) is JsonText else p(row[c])
            for c, p in zip(columns, processors, strict=True)
        )
        for row in rows
    ]


@functools.cache
def _processors(dialect: sa.Dialect, table: sa.Table, columns: tuple[str, ...]) -> list[Callable[[Any], Any] | None]:
    return [table.c[c].type.dialect_impl(dialect).bind_processor(dialect) for c in columns]


def _columns(kind: EntityKind) -> list[str]:
    return [f.name for f in fields_of(kind.cls) if f.kind != "members"]


def _map_db_error(exc: Exception) -> SmoothError:
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


class Transaction:
    """Repository operations on one open connection; every entity kind goes through the same code."""

    def __init__(self, conn: AsyncConnection) -> None:
        self._conn = conn
        self._dialect = conn.dialect.name
        self.tx_id = uuid.uuid4()

    async def _execute(self, statement: Any, params: Any = None) -> sa.CursorResult[Any]:
        try:
            result: sa.CursorResult[Any] = await self._conn.execute(statement, params)
            return result
        except (sa_exc.StatementError, TimeoutError) as exc:
            raise _map_db_error(exc) from exc

    # --- reads ---------------------------------------------------------------------------------------

    async def get(self, kind: EntityKind, entity_id: uuid.UUID) -> Versioned | None:
        items = await self._load(kind, ENTITY_TABLES[kind.name].c.id == entity_id)
        return items[0] if items else None

    async def get_many(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Versioned]:
        if not ids:
            return {}
        items = await self._load(kind, ENTITY_TABLES[kind.name].c.id.in_(list(ids)))
        return {item.id: item for item in items}

    async def find_by(self, kind: EntityKind, field: str, value: Any) -> list[Versioned]:
        return await self._load(kind, ENTITY_TABLES[kind.name].c[field] == value, limit=10)

    async def find_in(self, kind: EntityKind, field: str, values: Sequence[Any]) -> list[Versioned]:
        """Every entity whose `field` is one of `values` (one query)."""
        if not values:
            return []
        return await self._load(kind, ENTITY_TABLES[kind.name].c[field].in_(list(values)))

    async def list_page(self, query: ListQuery) -> Page:
        table = ENTITY_TABLES[query.kind.name]
        conditions = q.where_terms(table, query.terms, self._dialect)
        if query.private_viewer is not None and "is_global" in table.c:
            conditions.append(sa.or_(table.c.is_global.is_(True), table.c.owner_id == query.private_viewer))
        after = q.keyset_after(table, query)
        if after is not None:
            conditions.append(after)
        items = await self._load(query.kind, *conditions, order=q.order_by(table, query), limit=query.page_size + 1)
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
        table = ENTITY_TABLES[kind.name]
        stmt = sa.select(*(table.c[c] for c in _columns(kind))).where(*conditions).order_by(*order)
        if limit is not None:
            stmt = stmt.limit(limit)
        rows = (await self._execute(stmt)).mappings().all()
        members = await self._members(kind, [r["id"] for r in rows])
        return [kind.cls(**{**dict(r), **members.get(r["id"], {})}) for r in rows]

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

    async def revisions(
        self, kind: EntityKind, entity_id: uuid.UUID, after_seq: int, limit: int, *, newest: bool = False
    ) -> list[Revision]:
        stmt = (
            sa.select(changes)
            .where(
                changes.c.entity_id == entity_id,
                changes.c.entity_type == kind.name,
                changes.c.seq > after_seq,
            )
            .order_by(changes.c.seq.desc() if newest else changes.c.seq)
            .limit(limit)
        )
        return [_revision(r) for r in (await self._execute(stmt)).mappings().all()]

    async def find_request(self, caller: str, request_id: str) -> tuple[str, uuid.UUID] | None:
        stmt = sa.select(request_log.c.method, request_log.c.entity_id).where(
            request_log.c.caller == caller, request_log.c.request_id == request_id
        )
        row = (await self._execute(stmt)).mappings().first()
        return (str(row["method"]), row["entity_id"]) if row is not None else None

    async def has_history(self, kind: EntityKind, entity_id: uuid.UUID) -> bool:
        stmt = sa.select(changes.c.seq).where(changes.c.entity_id == entity_id, changes.c.entity_type == kind.name)
        return (await self._execute(stmt.limit(1))).first() is not None

    # --- writes --------------------------------------------------------------------------------------

    async def insert(self, kind: EntityKind, entity: Versioned) -> None:
        table = ENTITY_TABLES[kind.name]
        await self._execute(table.insert().values({c: getattr(entity, c) for c in _columns(kind)}))
        await self._write_members(kind, entity, replace=False)

    async def update(self, kind: EntityKind, entity: Versioned, expected_version: int) -> bool:
        """Write all columns if the row still has `expected_version`; False when it does not."""
        table = ENTITY_TABLES[kind.name]
        values = {c: getattr(entity, c) for c in _columns(kind) if c not in ("id", "created_at", "owner_id")}
        result = await self._execute(
            table.update().where(table.c.id == entity.id, table.c.version == expected_version).values(values)
        )
        if result.rowcount != 1:
            return False
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

    async def append_change(
        self,
        kind: EntityKind,
        entity: Versioned,
        operation: ChangeOperation,
        *,
        actor_id: uuid.UUID | None,
        request_id: str,
        at: datetime,
        origin: tuple[uuid.UUID, int] | None = None,
    ) -> None:
        await self._execute(
            changes.insert().values(
                origin_id=origin[0] if origin else None,
                origin_seq=origin[1] if origin else None,
                tx_id=self.tx_id,
                entity_type=kind.name,
                entity_id=entity.id,
                version=entity.version,
                operation=operation,
                data=to_json(entity),
                actor_id=actor_id,
                request_id=request_id,
                change_time=at,
            )
        )

    async def remember_request(
        self, caller: str, request_id: str, method: str, entity_id: uuid.UUID, at: datetime
    ) -> None:
        await self._execute(
            request_log.insert().values(
                caller=caller, request_id=request_id, method=method, entity_id=entity_id, created_at=at
            )
        )

    # --- API keys ----------------------------------------------------------------------------------------

    async def insert_api_key(self, key: ApiKey) -> None:
        await self._execute(api_keys.insert().values(_row(key)))

    async def api_key_by_key_id(self, key_id: str) -> ApiKey | None:
        row = (await self._execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
        return ApiKey(**row) if row is not None else None

    async def api_key(self, key_uuid: uuid.UUID) -> ApiKey | None:
        row = (await self._execute(sa.select(api_keys).where(api_keys.c.id == key_uuid))).mappings().first()
        return ApiKey(**row) if row is not None else None

    async def list_api_keys(self, user_id: uuid.UUID | None, after: uuid.UUID | None, limit: int) -> list[ApiKey]:
        stmt = sa.select(api_keys).order_by(api_keys.c.id).limit(limit)
        if user_id is not None:
            stmt = stmt.where(api_keys.c.user_id == user_id)
        if after is not None:
            stmt = stmt.where(api_keys.c.id > after)
        return [ApiKey(**r) for r in (await self._execute(stmt)).mappings().all()]

    async def set_api_key_times(self, key_uuid: uuid.UUID, **times: datetime | None) -> None:
        await self._execute(api_keys.update().where(api_keys.c.id == key_uuid).values(**times))

    async def revoke_user_keys(self, user_id: uuid.UUID, at: datetime) -> list[ApiKey]:
        """Revoke every live key of a user; returns the keys it revoked."""
        live = [
            ApiKey(**r)
            for r in (
                await self._execute(
                    sa.select(api_keys).where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                )
            )
            .mappings()
            .all()
        ]
        if live:
            await self._execute(api_keys.update().where(api_keys.c.id.in_([k.id for k in live])).values(revoked_at=at))
        return live

    # --- audit log ---------------------------------------------------------------------------------------

    async def audit_head(self) -> tuple[int, str]:
        """(sequence, hash) of the newest entry; (0, "") for an empty log. Writers are serialized, so this is safe."""
        row = (await self._execute(sa.select(audit_head.c.seq, audit_head.c.hash))).mappings().first()
        return (int(row["seq"]), str(row["hash"])) if row is not None else (0, "")

    async def insert_audit(self, entry: AuditEntry) -> None:
        """Insert an entry with its own sequence and move the head to it."""
        await self._execute(audit_log.insert().values(_row(entry)))
        moved = await self._execute(
            audit_head.update().where(audit_head.c.id == 1).values(seq=entry.seq, hash=entry.hash)
        )
        if moved.rowcount == 0:
            await self._execute(audit_head.insert().values(id=1, seq=entry.seq, hash=entry.hash))

    async def insert_audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Insert sealed entries (in sequence order) and move the head to the last one."""
        await self._execute(audit_log.insert(), [_row(e) for e in entries])
        last = entries[-1]
        moved = await self._execute(
            audit_head.update().where(audit_head.c.id == 1).values(seq=last.seq, hash=last.hash)
        )
        if moved.rowcount == 0:
            await self._execute(audit_head.insert().values(id=1, seq=last.seq, hash=last.hash))

    async def audit_entries(self, flt: AuditFilter, after_seq: int, limit: int) -> list[AuditEntry]:
        conditions = []
        if flt.actor_id is not None:
            conditions.append(audit_log.c.actor_id == flt.actor_id)
        for name in ("entity_type", "entity_id", "action"):
            if getattr(flt, name):
                conditions.append(audit_log.c[name] == getattr(flt, name))
        if flt.start_time is not None:
            conditions.append(audit_log.c.occurred_at >= flt.start_time)
        if flt.end_time is not None:
            conditions.append(audit_log.c.occurred_at < flt.end_time)
        stmt = (
            sa.select(audit_log).where(audit_log.c.seq > after_seq, *conditions).order_by(audit_log.c.seq).limit(limit)
        )
        return [AuditEntry(**r) for r in (await self._execute(stmt)).mappings().all()]

    # --- collector -----------------------------------------------------------------------------------------

    async def collector_state(self, machine_id: str) -> dict[str, Any] | None:
        stmt = sa.select(collector_state.c.state).where(collector_state.c.machine_id == machine_id)
        value = (await self._execute(stmt)).scalar()
        return dict(value) if value is not None else None

    async def save_collector_state(self, machine_id: str, state: dict[str, Any], at: datetime) -> None:
        updated = await self._execute(
            collector_state.update()
            .where(collector_state.c.machine_id == machine_id)
            .values(state=state, updated_at=at)
        )
        if updated.rowcount == 0:
            await self._execute(collector_state.insert().values(machine_id=machine_id, state=state, updated_at=at))

    async def save_collector_states(self, states: dict[str, dict[str, Any]], at: datetime) -> None:
        """Many machines' tracker states in one executemany upsert."""
        table = collector_state
        insert = pg_insert(table) if self._dialect == "postgresql" else sqlite_insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.machine_id], set_={"state": insert.excluded.state, "updated_at": at}
        )
        await self._execute(statement, [{"machine_id": m, "state": s, "updated_at": at} for m, s in states.items()])

    async def preset_instances(
        self, machine_ids: Sequence[str], tool_numbers: Sequence[int]
    ) -> list[tuple[str, Any, uuid.UUID | None]]:
        """(machine_id, tool number, tool_instance_id) of the presets on these machines with these T numbers.

        The T number is `parameters.tool_number` as stored; the caller applies its own reading of it.
        """
        table = ENTITY_TABLES["tool_preset"]
        number = table.c.parameters["tool_number"]
        stmt = sa.select(table.c.machine_id, number.label("number"), table.c.tool_instance_id).where(
            # as_float: the schema's "integer" admits 3.0, which PostgreSQL will not cast to an integer
            table.c.machine_id.in_(list(machine_ids)),
            number.as_float().in_([float(n) for n in tool_numbers]),
        )
        return [(r["machine_id"], r["number"], r["tool_instance_id"]) for r in (await self._execute(stmt)).mappings()]

    async def presets_on_machine(self, machine_id: str) -> list[Versioned]:
        return await self._load(KINDS["tool_preset"], ENTITY_TABLES["tool_preset"].c.machine_id == machine_id)

    async def unmatched(
        self, *, machine_id: str | None = None, tool_number: int | None = None, row_id: uuid.UUID | None = None
    ) -> list[dict[str, Any]]:
        table = collector_unmatched
        conditions = []
        if machine_id is not None:
            conditions.append(table.c.machine_id == machine_id)
        if tool_number is not None:
            conditions.append(table.c.tool_number == tool_number)
        if row_id is not None:
            conditions.append(table.c.id == row_id)
        stmt = sa.select(table).where(*conditions).order_by(table.c.start_time)
        return [dict(r) for r in (await self._execute(stmt)).mappings().all()]

    async def upsert_unmatched(self, row: dict[str, Any]) -> None:
        table = collector_unmatched
        updated = await self._execute(table.update().where(table.c.id == row["id"]).values(row))
        if updated.rowcount == 0:
            await self._execute(table.insert().values(row))

    async def upsert_unmatched_many(self, rows: Sequence[dict[str, Any]]) -> None:
        table = collector_unmatched
        insert = pg_insert(table) if self._dialect == "postgresql" else sqlite_insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in rows[0] if c not in ("id", "created_at")}
        )
        await self._execute(statement, list(rows))

    async def delete_unmatched_many(self, row_ids: Sequence[uuid.UUID]) -> None:
        await self._execute(collector_unmatched.delete().where(collector_unmatched.c.id.in_(list(row_ids))))

    async def delete_unmatched(self, row_id: uuid.UUID) -> None:
        await self._execute(collector_unmatched.delete().where(collector_unmatched.c.id == row_id))

    # --- replication -------------------------------------------------------------------------------------

    async def replication_value(self, key: str) -> Any:
        stmt = sa.select(replication_state.c.value).where(replication_state.c.key == key)
        return (await self._execute(stmt)).scalar()

    async def set_replication_value(self, key: str, value: Any, at: datetime) -> None:
        table = replication_state
        updated = await self._execute(table.update().where(table.c.key == key).values(value=value, updated_at=at))
        if updated.rowcount == 0:
            await self._execute(table.insert().values(key=key, value=value, updated_at=at))

    async def local_changes(self, after_seq: int, limit: int, *, as_text: bool = False) -> list[Revision]:
        """This store's own changes (not ones replicated into it) after a sequence, oldest first.

        `as_text`: the snapshots as their stored JSON text (`snapshot_json`, `snapshot` left empty), for a sender
        that passes them on as they are (the replicator), without decoding and encoding them again.
        """
        columns: list[sa.ColumnElement[Any]] = [c for c in changes.c if not (as_text and c.name == "data")]
        if as_text:
            columns.append(sa.type_coerce(changes.c.data, sa.Text()).label("data_text"))
        stmt = (
            sa.select(*columns)
            .where(changes.c.seq > after_seq, changes.c.origin_id.is_(None))
            .order_by(changes.c.seq)
            .limit(limit)
        )
        rows = (await self._execute(stmt)).mappings().all()
        if as_text:
            return [dataclasses.replace(_revision({**r, "data": {}}), snapshot_json=r["data_text"]) for r in rows]
        return [_revision(r) for r in rows]

    async def local_backlog(self, after_seq: int) -> tuple[int, int, datetime | None]:
        """(count, newest local seq, time of the oldest) of local changes after `after_seq`."""
        stmt = sa.select(
            sa.func.count().label("n"),
            sa.func.max(changes.c.seq).label("newest"),
            sa.func.min(changes.c.change_time).label("oldest"),
        ).where(changes.c.seq > after_seq, changes.c.origin_id.is_(None))
        row = (await self._execute(stmt)).mappings().one()
        oldest = row["oldest"]
        if isinstance(oldest, str):  # SQLite returns aggregate timestamps as text
            oldest = datetime.fromisoformat(oldest).replace(tzinfo=UTC)
        elif isinstance(oldest, datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=UTC)
        return int(row["n"] or 0), int(row["newest"] or after_seq), oldest

    async def changes_after(self, after_seq: int, limit: int) -> list[Revision]:
        """Every change after a sequence, whatever its origin, oldest first (what central serves to pulls)."""
        stmt = sa.select(changes).where(changes.c.seq > after_seq).order_by(changes.c.seq).limit(limit)
        return [_revision(r) for r in (await self._execute(stmt)).mappings().all()]

    async def oldest_change_seq(self) -> int:
        return int((await self._execute(sa.select(sa.func.min(changes.c.seq)))).scalar() or 0)

    async def last_local_seq(self) -> int:
        return int((await self._execute(sa.select(sa.func.max(changes.c.seq)))).scalar() or 0)

    async def ensure_sequence_above(self, seq: int) -> None:
        """Never hand out a change sequence at or below `seq` (SQLite: after a power cut undid commits)."""
        if self._dialect == "sqlite":
            await self._execute(
                sa.text("UPDATE sqlite_sequence SET seq = :s WHERE name = 'changes' AND seq < :s"), {"s": seq}
            )
            await self._execute(
                sa.text(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'changes', :s "
                    "WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'changes')"
                ),
                {"s": seq},
            )

    async def sync_watermark(self, origin_id: uuid.UUID) -> int:
        stmt = sa.select(sync_origins.c.last_seq).where(sync_origins.c.origin_id == origin_id)
        return int((await self._execute(stmt)).scalar() or 0)

    async def set_sync_watermark(
        self, origin_id: uuid.UUID, seq: int, schema_version: str, at: datetime, owner_id: uuid.UUID | None = None
    ) -> None:
        table = sync_origins
        values = {"last_seq": seq, "schema_version": schema_version, "updated_at": at}
        updated = await self._execute(table.update().where(table.c.origin_id == origin_id).values(values))
        if updated.rowcount == 0:
            await self._execute(table.insert().values(origin_id=origin_id, owner_id=owner_id, **values))

    async def sync_origin_owner(self, origin_id: uuid.UUID) -> tuple[bool, uuid.UUID | None]:
        """(known, owner) of an origin."""
        stmt = sa.select(sync_origins.c.owner_id).where(sync_origins.c.origin_id == origin_id)
        row = (await self._execute(stmt)).first()
        return (row is not None, row[0] if row is not None else None)

    # --- bulk (replication fast path) -----------------------------------------------------------------

    async def versions_of(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        table = ENTITY_TABLES[kind.name]
        stmt = sa.select(table.c.id, table.c.version).where(table.c.id.in_(list(ids)))
        return {r["id"]: int(r["version"]) for r in (await self._execute(stmt)).mappings().all()}

    async def ids_with_history(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        stmt = (
            sa.select(changes.c.entity_id)
            .where(changes.c.entity_type == kind.name, changes.c.entity_id.in_(list(ids)))
            .distinct()
        )
        return {r[0] for r in (await self._execute(stmt)).all()}

    async def owners_of_values(self, kind: EntityKind, field: str, values: Sequence[Any]) -> dict[Any, uuid.UUID]:
        table = ENTITY_TABLES[kind.name]
        stmt = sa.select(table.c[field].label("value"), table.c.id).where(table.c[field].in_(list(values)))
        return {r["value"]: r["id"] for r in (await self._execute(stmt)).mappings().all()}

    async def bulk_upsert(self, kind: EntityKind, entities: Sequence[Versioned]) -> None:
        """Many entities in one executemany (the kind has no member lists)."""
        table = ENTITY_TABLES[kind.name]
        rows = [{c: getattr(e, c) for c in _columns(kind)} for e in entities]
        insert = pg_insert(table) if self._dialect == "postgresql" else sqlite_insert(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in rows[0] if c != "id"}
        )
        await self._execute(statement, rows)

    async def bulk_insert(self, kind: EntityKind, entities: Sequence[Versioned]) -> None:
        """New entities in one statement (the kind has no member lists)."""
        table, columns = ENTITY_TABLES[kind.name], _columns(kind)
        if self._dialect == "postgresql" and entities:
            processors = _processors(self._conn.dialect, table, tuple(columns))
            records = [
                tuple(
                    value if p is None else p(value)
                    for p, value in zip(processors, [getattr(e, c) for c in columns], strict=True)
                )
                for e in entities
            ]
            await self._copy(table, columns, records)
            return
        await self.insert_rows(table, [{c: getattr(e, c) for c in columns} for e in entities])

    async def insert_rows(self, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
        """Insert many rows (same keys in each): COPY on PostgreSQL (binary, one round trip, no per-row
        statement), executemany elsewhere. Values go through the columns' own type processing either way."""
        if not rows:
            return
        if self._dialect != "postgresql":
            plain = [{k: json.loads(v) if type(v) is JsonText else v for k, v in row.items()} for row in rows]
            await self._execute(table.insert(), plain)
            return
        columns = list(rows[0])
        await self._copy(table, columns, _encode(self._conn.dialect, table, columns, rows))

    async def _copy(self, table: sa.Table, columns: list[str], records: list[tuple[Any, ...]]) -> None:
        if not records:
            return
        raw = await self._conn.get_raw_connection()
        try:
            await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)  # type: ignore[union-attr]
        except asyncpg.PostgresError as exc:
            raise _map_db_error(exc) from exc
        except (asyncpg.InterfaceError, ValueError, TypeError) as exc:
            log.warning("store.copy_refused", table=table.name, error=str(exc)[:500])
            raise InvalidArgument("a value cannot be stored (wrong type)", reason="BAD_VALUE") from exc

    async def bulk_update(self, kind: EntityKind, updates: Sequence[tuple[Versioned, int]]) -> bool:
        """(entity, expected version) pairs in one executemany; False when a row no longer had its version."""
        table = ENTITY_TABLES[kind.name]
        names = [c for c in _columns(kind) if c not in ("id", "created_at", "owner_id")]
        statement = (
            table.update()
            .where(table.c.id == sa.bindparam("_id"), table.c.version == sa.bindparam("_expected"))
            .values({c: sa.bindparam(c) for c in names})
        )
        rows = [{"_id": e.id, "_expected": v, **{c: getattr(e, c) for c in names}} for e, v in updates]
        result = await self._execute(statement, rows)
        if self._conn.dialect.supports_sane_multi_rowcount:
            return result.rowcount == len(rows)
        found = await self.versions_of(kind, [e.id for e, _ in updates])
        return all(found.get(e.id) == e.version for e, _ in updates)

    async def bulk_append_changes(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.insert_rows(changes, [{"tx_id": self.tx_id, **r} for r in rows])

    async def insert_conflict(self, row: dict[str, Any]) -> None:
        await self._execute(sync_conflicts.insert().values(row))

    async def conflicts(self, entity_id: uuid.UUID | None, after_seq: int, limit: int) -> list[dict[str, Any]]:
        stmt = sa.select(sync_conflicts).where(sync_conflicts.c.seq > after_seq)
        if entity_id is not None:
            stmt = stmt.where(sync_conflicts.c.entity_id == entity_id)
        stmt = stmt.order_by(sync_conflicts.c.seq).limit(limit)
        return [dict(r) for r in (await self._execute(stmt)).mappings().all()]

    async def insert_rejection(self, row: dict[str, Any]) -> None:
        await self._execute(sync_rejections.insert().values(row))

    async def upsert(self, kind: EntityKind, entity: Versioned) -> None:
        """Write an entity exactly as given (replication applies another store's state), in one statement."""
        table = ENTITY_TABLES[kind.name]
        values = {c: getattr(entity, c) for c in _columns(kind)}
        insert = pg_insert(table) if self._dialect == "postgresql" else sqlite_insert(table)
        statement = insert.values(values).on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in values if c != "id"}
        )
        await self._execute(statement)
        await self._write_members(kind, entity, replace=True)

    async def delete_row(self, kind: EntityKind, entity_id: uuid.UUID) -> None:
        table = ENTITY_TABLES[kind.name]
        await self._execute(table.delete().where(table.c.id == entity_id))

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: a failure inside rolls back only what was done inside."""
        nested = await self._conn.begin_nested()
        try:
            yield
        except BaseException:
            await nested.rollback()
            raise
        else:
            await nested.commit()


def _revision(r: Any) -> Revision:
    return Revision(
        sequence=r["seq"],
        entity_type=r["entity_type"],
        entity_id=r["entity_id"],
        version=r["version"],
        operation=r["operation"],
        change_time=r["change_time"],
        actor_id=r["actor_id"],
        request_id=r["request_id"],
        snapshot=r["data"],
        tx_id=r["tx_id"],
        origin_id=r["origin_id"],
    )


# A constant key for pg_advisory_xact_lock: one writer at a time on PostgreSQL.
WRITE_LOCK = 0x5E_A0D1


def _row(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


async def _sqlite_pragma(conn: AsyncConnection, pragma: str) -> None:
    """Run a pragma outside any transaction (SQLAlchemy would begin one first; some pragmas refuse that)."""
    raw = await conn.get_raw_connection()
    cursor = await raw.driver_connection.execute(pragma)  # type: ignore[union-attr]
    await cursor.close()


class Store:
    """Owns the engine. `async with Store(url) as store:` opens it; leaving disposes every connection."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        self._write_lock = asyncio.Lock()
        # Called after every committed write (the replicator wakes on them); must not block.
        self.on_commit: list[Callable[[], None]] = []

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("the store is not open; use `async with Store(url)`")
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def __aenter__(self) -> Store:
        self._engine = create_engine(self.url)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Transaction]:
        try:
            async with self.engine.connect() as conn:
                async with conn.begin():
                    yield Transaction(conn)
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise _map_db_error(exc) from exc

    @asynccontextmanager
    async def write(self, *, durable: bool = False) -> AsyncIterator[Transaction]:
        """One atomic unit of work: everything written inside commits together or not at all.

        `durable`: on SQLite, this commit is fsynced (synchronous=FULL), and with it every earlier commit in the
        WAL — what the replicator does before central may see a sequence.
        """
        sqlite = is_sqlite(self.engine)
        if sqlite:
            await self._write_lock.acquire()
        try:
            async with self.engine.connect() as conn:
                if sqlite:
                    conn = await conn.execution_options(**{WRITE_OPTION: True})
                    if durable:
                        await _sqlite_pragma(conn, "PRAGMA synchronous=FULL")
                try:
                    async with conn.begin():
                        if not sqlite:
                            # One writer at a time, as on SQLite: every write appends to the audit chain anyway,
                            # and this keeps `changes.seq` in commit order (the replication outbox), no deadlocks.
                            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK})
                        yield Transaction(conn)
                finally:
                    if sqlite and durable:
                        await _sqlite_pragma(conn, "PRAGMA synchronous=NORMAL")
        except (sa_exc.StatementError, OSError, TimeoutError) as exc:
            raise _map_db_error(exc) from exc
        finally:
            if sqlite:
                self._write_lock.release()
        for callback in self.on_commit:
            callback()
