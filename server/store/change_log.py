"""The change log (the `ChangeLog` port): the append-only `changes` table that is at once version history and
replication outbox, its sequence, and the request log that makes retried writes idempotent.
"""

from __future__ import annotations

import dataclasses
import functools
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from server.domain.entities import ChangeOperation, Revision, Versioned
from server.domain.registry import EntityKind
from server.domain.schema import to_json
from server.store.connection import Connection, id_list_value, in_id_list
from server.store.tables import changes, request_log


def revision_of(r: Any) -> Revision:
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


class ChangeLogRows(Connection):
    """Change records and request ids; every change written in one transaction carries its `tx_id`."""

    # --- writes --------------------------------------------------------------------------------------

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
        data: dict[str, Any] | None = None,
    ) -> None:
        """`data`: the entity's snapshot (`to_json`) when the caller has it already (the audit entry shares it)."""
        await self._insert(
            changes,
            {
                "origin_id": origin[0] if origin else None,
                "origin_seq": origin[1] if origin else None,
                "tx_id": self.tx_id,
                "entity_type": kind.name,
                "entity_id": entity.id,
                "version": entity.version,
                "operation": operation,
                "data": to_json(entity) if data is None else data,
                "actor_id": actor_id,
                "request_id": request_id,
                "change_time": at,
            },
        )

    async def bulk_append_changes(self, rows: Sequence[dict[str, Any]]) -> None:
        await self.insert_rows(changes, [{"tx_id": self.tx_id, **r} for r in rows])

    async def renumber_local_changes_after(self, after: int, above: int) -> int:
        """Move this store's own change records with a sequence above `after` to sequences above `above`, in
        their order (an edge whose earlier sequences another store has already seen under other changes: a
        restored copy). Returns how many moved."""
        last = await self.last_local_seq()
        offset = max(above, last) - after
        moved = (
            await self._execute(
                sa.update(changes)
                .where(changes.c.seq > after, changes.c.origin_id.is_(None))
                .values(seq=changes.c.seq + offset)
            )
        ).rowcount
        await self.ensure_sequence_above(last + offset)
        return int(moved)

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

    # --- one entity's history ------------------------------------------------------------------------

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
        return [revision_of(r) for r in (await self._execute(stmt)).mappings().all()]

    async def has_history(self, kind: EntityKind, entity_id: uuid.UUID) -> bool:
        return bool(await self._fetch(_HAS_HISTORY, {"b_id": entity_id, "b_type": kind.name}))

    async def ids_with_history(self, kind: EntityKind, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        listed = id_list_value(ids, self._dialect)
        if listed is not None:
            rows = await self._fetch(_with_history(self._dialect), {"b_type": kind.name, "id_list": listed})
            return {r[0] for r in rows}
        stmt = (
            sa.select(changes.c.entity_id)
            .where(changes.c.entity_type == kind.name, changes.c.entity_id.in_(list(ids)))
            .distinct()
        )
        return {r[0] for r in (await self._execute(stmt)).all()}

    # --- the outbox ------------------------------------------------------------------------------------

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
            return [dataclasses.replace(revision_of({**r, "data": {}}), snapshot_json=r["data_text"]) for r in rows]
        return [revision_of(r) for r in rows]

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
        return [revision_of(r) for r in (await self._execute(stmt)).mappings().all()]

    async def oldest_change_seq(self) -> int:
        return int((await self._execute(sa.select(sa.func.min(changes.c.seq)))).scalar() or 0)

    async def last_local_seq(self) -> int:
        return int((await self._execute(sa.select(sa.func.max(changes.c.seq)))).scalar() or 0)

    # --- idempotent requests -------------------------------------------------------------------------

    async def find_request(self, caller: str, request_id: str) -> tuple[str, uuid.UUID] | None:
        rows = await self._fetch(_FIND_REQUEST, {"b_caller": caller, "b_request_id": request_id})
        return (str(rows[0][0]), rows[0][1]) if rows else None

    async def remember_request(
        self, caller: str, request_id: str, method: str, entity_id: uuid.UUID, at: datetime
    ) -> None:
        await self._insert(
            request_log,
            {"caller": caller, "request_id": request_id, "method": method, "entity_id": entity_id, "created_at": at},
        )


# Built once (SQLAlchemy neither builds them nor computes their cache keys again per call): the idempotency
# lookup was a third of an in-process Create with a request_id (issue 11).
_FIND_REQUEST = sa.select(request_log.c.method, request_log.c.entity_id).where(
    request_log.c.caller == sa.bindparam("b_caller"), request_log.c.request_id == sa.bindparam("b_request_id")
)


@functools.cache
def _with_history(dialect: str) -> sa.Select[Any]:
    return (
        sa.select(changes.c.entity_id)
        .where(changes.c.entity_type == sa.bindparam("b_type"), in_id_list(changes.c.entity_id, dialect))
        .distinct()
    )


_HAS_HISTORY = (
    sa.select(changes.c.seq)
    .where(changes.c.entity_id == sa.bindparam("b_id"), changes.c.entity_type == sa.bindparam("b_type"))
    .limit(1)
)
