"""Edge side of replication: central's changes pulled and applied with the new cursor in one transaction, and
the full resync from central's snapshot when the cursor is older than what central keeps."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from server.domain.entities import ChangeOperation, Revision
from server.domain.errors import Aborted, InvalidArgument, SmoothError, Unavailable
from server.domain.registry import KINDS
from server.domain.rulebook import PARENT_FIRST, normalized
from server.domain.schema import to_json
from server.usecases import rulebook
from server.usecases.listing import build_query
from server.usecases.ports import Transaction, UnitOfWork
from server.usecases.replication.apply import Rejected, apply_changes, rejection_reason, store_id
from server.validation.snapshots import decode_entity

PULL_CURSOR_KEY = "pull_cursor"


class PullApplier:
    """Edge side of the pull: central's changes and the new cursor saved in one transaction."""

    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

    async def store_id(self) -> uuid.UUID:
        """This edge's origin id (made once, the first time it is asked)."""
        async with self.store.write() as tx:
            return await store_id(tx, self._clock())

    async def cursor(self) -> int:
        async with self.store.read() as tx:
            return int(await tx.replication_value(PULL_CURSOR_KEY) or 0)

    async def apply(self, central_id: uuid.UUID, changes: Sequence[Revision], cursor: int) -> list[Rejected]:
        now = self._clock()
        async with self.store.write() as tx:
            if cursor <= int(await tx.replication_value(PULL_CURSOR_KEY) or 0):
                return []  # a stale or repeated answer: already applied
            rejected = await apply_changes(tx, central_id, changes, now)
            await tx.set_replication_value(PULL_CURSOR_KEY, cursor, now)
        return rejected


RESYNC_ORDER = PARENT_FIRST  # a snapshot applies parents first so references resolve; deletes go in reverse


class ResyncApplier:
    """Edge side of a full resync: central's entities replace what this edge had replicated."""

    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

    async def apply_kind(self, central_id: uuid.UUID, kind_name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert central's entities of one kind, unless this edge holds a newer local version (still to push)."""
        kind = KINDS[kind_name]
        now = self._clock()
        async with self.store.write() as tx:
            for data in rows:
                try:
                    entity = normalized(decode_entity(kind.cls, data))
                except InvalidArgument as exc:
                    await _reject_resync(tx, central_id, kind_name, data, exc, now)
                    continue
                existing = await tx.get(kind, entity.id)
                if existing is not None and (existing.version > entity.version or to_json(existing) == data):
                    continue
                try:
                    async with tx.savepoint():
                        await rulebook.enforce(tx, entity)
                        await tx.upsert(kind, entity)
                        await tx.append_change(
                            kind,
                            entity,
                            ChangeOperation.UPDATE,
                            actor_id=None,
                            request_id="resync",
                            at=now,
                            origin=(central_id, 0),
                        )
                except (Unavailable, Aborted):
                    raise
                except SmoothError as exc:
                    await _reject_resync(tx, central_id, kind_name, data, exc, now)

    async def finish(self, central_id: uuid.UUID, kept: dict[str, set[uuid.UUID]], as_of: int) -> int:
        """Delete what central no longer has (unless it is this edge's own unpushed work); set the cursor."""
        now = self._clock()
        removed = 0
        async with self.store.write() as tx:
            # Never delete what this edge made itself (pending or not): only what came from central.
            own = {c.entity_id for c in await tx.local_changes(0, 10_000_000)}
            for kind_name in reversed(RESYNC_ORDER):
                kind = KINDS[kind_name]
                query = build_query(kind, page_size=1000, page_token="", filter_text="", order_by="id")
                while True:
                    page = await tx.list_page(query)
                    for entity in page.items:
                        if entity.id in kept[kind_name] or entity.id in own:
                            continue
                        if await tx.count_references(kind.name, entity.id):
                            continue  # still used by local work: keep it rather than break references
                        await tx.delete_row(kind, entity.id)
                        await tx.append_change(
                            kind,
                            entity,
                            ChangeOperation.DELETE,
                            actor_id=None,
                            request_id="resync",
                            at=now,
                            origin=(central_id, 0),
                        )
                        removed += 1
                    if page.last_position is None:
                        break
                    query = dataclasses.replace(query, after=page.last_position)
            await tx.set_replication_value(PULL_CURSOR_KEY, as_of, now)
        return removed


async def _reject_resync(
    tx: Transaction, central_id: uuid.UUID, kind_name: str, data: Any, exc: SmoothError, now: datetime
) -> None:
    """A snapshot row this edge cannot take: kept as a rejection, the resync goes on."""
    raw_id = data.get("id") if isinstance(data, dict) else None
    try:
        entity_id = uuid.UUID(raw_id) if isinstance(raw_id, str) else uuid.UUID(int=0)
    except ValueError:
        entity_id = uuid.UUID(int=0)
    await tx.insert_rejection(
        {
            "origin_id": central_id,
            "seq": entity_id.int >> 66,  # no central sequence: key by 62 bits of the id
            "entity_type": kind_name,
            "entity_id": entity_id,
            "reason": f"resync: {rejection_reason(exc)}"[:1000],
            "data": data if isinstance(data, dict) else {},
            "created_at": now,
        }
    )
