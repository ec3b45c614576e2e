"""What the collector keeps between runs (the `CollectorState` port): each machine's tracker state and the
usages whose T number had no preset yet (`collector_unmatched`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.store.connection import Connection
from server.store.tables import collector_state, collector_unmatched


class CollectorRows(Connection):
    """Tracker state per machine and unmatched usages."""

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
        insert = self._upsert_into(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.machine_id], set_={"state": insert.excluded.state, "updated_at": at}
        )
        await self._execute(statement, [{"machine_id": m, "state": s, "updated_at": at} for m, s in states.items()])

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
        insert = self._upsert_into(table)
        statement = insert.on_conflict_do_update(
            index_elements=[table.c.id], set_={c: insert.excluded[c] for c in rows[0] if c not in ("id", "created_at")}
        )
        await self._execute(statement, list(rows))

    async def delete_unmatched_many(self, row_ids: Sequence[uuid.UUID]) -> None:
        await self._execute(collector_unmatched.delete().where(collector_unmatched.c.id.in_(list(row_ids))))

    async def delete_unmatched(self, row_id: uuid.UUID) -> None:
        await self._execute(collector_unmatched.delete().where(collector_unmatched.c.id == row_id))
