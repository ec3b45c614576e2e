"""Replication bookkeeping (the `ReplicationState` port): key-value state (the edge's origin id, cursors),
per-origin watermarks on central, and the conflicts and rejections replication records.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.store.connection import Connection
from server.store.tables import replication_state, sync_conflicts, sync_origins, sync_rejections


class ReplicationRows(Connection):
    """Replication state, watermarks, conflicts and rejections."""

    async def replication_value(self, key: str) -> Any:
        stmt = sa.select(replication_state.c.value).where(replication_state.c.key == key)
        return (await self._execute(stmt)).scalar()

    async def set_replication_value(self, key: str, value: Any, at: datetime) -> None:
        table = replication_state
        updated = await self._execute(table.update().where(table.c.key == key).values(value=value, updated_at=at))
        if updated.rowcount == 0:
            await self._execute(table.insert().values(key=key, value=value, updated_at=at))

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
