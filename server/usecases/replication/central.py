"""Central side of replication: apply a batch of one edge's changes and that edge's watermark in one
transaction (DESIGN decision 7). Already-applied sequences are skipped, a gap is refused, and a change that can
never apply is recorded as rejected without blocking the ones after it.

Applying a change writes the entity exactly as the edge had it (its version included) and a change record on
central that names the origin, so central keeps the full history of every edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from server.domain import failpoints
from server.domain.entities import Revision
from server.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied
from server.domain.identity import AuditEntry, Principal, Scope
from server.domain.registry import KINDS
from server.domain.schema import to_json
from server.usecases import audit
from server.usecases.listing import build_query, encode_token, page_size_of
from server.usecases.ports import Transaction, UnitOfWork
from server.usecases.replication.apply import Parsed, Rejected, apply_changes, parse_bulk_yielding, store_id
from server.usecases.tokens import decode_position, encode_position

MAX_BATCH = 5_000
TURN_WAIT_S = 10.0  # how long a push that arrived before its predecessor waits for it to be applied
ORPHAN_WAIT_S = 0.5  # ... and for it to arrive at all
PULL_LIMIT = 1_000


def schema_order(version: str) -> tuple[int, str]:
    """Alembic revisions here are zero-padded numbers ("0003"): compare them as numbers."""
    return (int(version), version) if version.isdigit() else (-1, version)


class SyncApplier:
    def __init__(
        self, store: UnitOfWork, clock: Callable[[], datetime], schema_version: str, *, central: bool = False
    ) -> None:
        self.store = store
        self._clock = clock
        self.schema_version = schema_version
        self.central = central
        # Per origin, the watermark the last push through this process committed (pushes wait their turn on it).
        self._positions: dict[uuid.UUID, int] = {}
        self._ended: dict[uuid.UUID, int] = {}  # per origin, pushes that ended without moving it
        self._active: dict[uuid.UUID, int] = {}  # per origin, pushes being applied now
        self._turns = asyncio.Condition()

    def _require_central(self) -> None:
        if not self.central:
            raise FailedPrecondition(
                "this is an edge agent, not the central store: point the replicator at `smooth-edge central`",
                reason="NOT_CENTRAL",
            )

    async def watermark(self, origin_id: uuid.UUID, principal: Principal | None) -> int:
        _require_sync(principal)
        self._require_central()
        async with self.store.read() as tx:
            return await tx.sync_watermark(origin_id)

    async def push(
        self,
        origin_id: uuid.UUID,
        after_seq: int,
        batch: Sequence[Revision],
        schema_version: str,
        *,
        principal: Principal | None,
        peer: str = "",
    ) -> tuple[int, list[Rejected]]:
        """Apply the changes after central's watermark; returns the new watermark and what was rejected."""
        _require_sync(principal)
        self._require_central()
        watermark: int | None = None
        await self._announce(origin_id, None, starting=True)
        try:
            self._check_batch(after_seq, batch, schema_version)
            # CPU work before the write lock: it overlaps the previous push's writes
            parsed = await parse_bulk_yielding(batch)
            await self._wait_turn(origin_id, after_seq)
            watermark, rejected = await self._push(origin_id, after_seq, batch, parsed, schema_version, principal, peer)
        finally:
            await self._announce(origin_id, watermark)
        return watermark, rejected

    def _check_batch(self, after_seq: int, batch: Sequence[Revision], schema_version: str) -> None:
        if len(batch) > MAX_BATCH:
            raise InvalidArgument.of([FieldViolation("changes", f"at most {MAX_BATCH} changes per batch")])
        seqs = [c.sequence for c in batch]
        if any(b <= a for a, b in itertools.pairwise(seqs)) or (seqs and seqs[0] <= after_seq):
            raise InvalidArgument.of([FieldViolation("changes", "sequences must increase and follow after_seq")])
        if schema_order(schema_version) > schema_order(self.schema_version):
            raise FailedPrecondition(
                f"the edge's schema {schema_version} is newer than central's {self.schema_version}: "
                "upgrade central first; the edge keeps its changes until then",
                reason="SCHEMA_AHEAD",
                metadata={"central_schema": self.schema_version},
            )

    async def _wait_turn(self, origin_id: uuid.UUID, after_seq: int) -> None:
        """A push that arrives before its predecessor (an edge keeps several in flight) waits for it to commit
        rather than being refused as a gap. It waits up to TURN_WAIT_S while another push of that origin is
        being applied, up to ORPHAN_WAIT_S while none is (a real gap is refused quickly), and stops as soon as a
        push of that origin ends without moving it (the predecessor failed: the gap is real)."""
        known = self._positions.get(origin_id)
        if known is None or after_seq <= known:
            return
        loop = asyncio.get_running_loop()
        start = loop.time()
        ended = self._ended.get(origin_id, 0)
        async with self._turns:
            while self._positions.get(origin_id, 0) < after_seq and self._ended.get(origin_id, 0) == ended:
                others = self._active.get(origin_id, 0) - 1
                remaining = start + (TURN_WAIT_S if others > 0 else ORPHAN_WAIT_S) - loop.time()
                if remaining <= 0:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._turns.wait(), remaining)

    async def _announce(self, origin_id: uuid.UUID, watermark: int | None, *, starting: bool = False) -> None:
        async with self._turns:
            if starting:
                self._active[origin_id] = self._active.get(origin_id, 0) + 1
            else:
                self._active[origin_id] = self._active.get(origin_id, 1) - 1
                if not self._active[origin_id]:
                    del self._active[origin_id]
                if watermark is None:
                    self._ended[origin_id] = self._ended.get(origin_id, 0) + 1
                else:
                    self._positions[origin_id] = max(watermark, self._positions.get(origin_id, 0))
            self._turns.notify_all()

    async def _push(
        self,
        origin_id: uuid.UUID,
        after_seq: int,
        batch: Sequence[Revision],
        parsed: Parsed,
        schema_version: str,
        principal: Principal | None,
        peer: str,
    ) -> tuple[int, list[Rejected]]:
        now = self._clock()
        async with self.store.write() as tx:
            await _check_origin_owner(tx, origin_id, principal)
            watermark = await tx.sync_watermark(origin_id)
            if after_seq > watermark:
                raise FailedPrecondition(
                    f"central has applied this edge only up to {watermark}, but the batch follows {after_seq}: "
                    "resend from the watermark",
                    reason="SEQUENCE_GAP",
                    metadata={"watermark": str(watermark)},
                )
            fresh = [c for c in batch if c.sequence > watermark]
            parsed = [p for p in parsed if p.change.sequence > watermark]
            rejected = await apply_changes(tx, origin_id, fresh, now, arbiter=True, parsed=parsed)
            if fresh:
                failpoints.hit("central-mid-apply")  # applied, not committed
            if fresh:
                watermark = fresh[-1].sequence
                await tx.set_sync_watermark(
                    origin_id, watermark, schema_version, now, principal.user_id if principal else None
                )
                await audit.append(
                    tx,
                    AuditEntry(
                        occurred_at=now,
                        actor_id=principal.user_id if principal else None,
                        api_key_id=principal.api_key_id if principal else None,
                        action="sync.push",
                        entity_type="origin",
                        entity_id=str(origin_id),
                        entity_version=watermark,
                        peer=peer[:200],
                        detail=f"applied {len(fresh) - len(rejected)} change(s) up to {watermark}, "
                        f"rejected {len(rejected)}",
                    ),
                )
        return watermark, rejected

    async def conflicts(
        self, entity_id: uuid.UUID | None, *, page_size: int, page_token: str
    ) -> tuple[list[dict[str, Any]], str]:
        self._require_central()
        size = page_size_of(page_size)
        after = decode_position("c", page_token)
        async with self.store.read() as tx:
            rows = await tx.conflicts(entity_id, after, size + 1)
        more = len(rows) > size
        rows = rows[:size]
        return rows, (encode_position("c", rows[-1]["seq"]) if more else "")

    async def snapshot(
        self, entity_type: str, *, page_size: int, page_token: str, principal: Principal | None
    ) -> tuple[int, list[dict[str, Any]], str]:
        """(as_of_seq, entity snapshots, next token) of one entity type, for a full resync."""
        _require_sync(principal)
        self._require_central()
        async with self.store.read() as tx:
            as_of = await tx.last_local_seq()
        if not entity_type:
            return as_of, [], ""
        kind = KINDS.get(entity_type)
        if kind is None:
            raise InvalidArgument.of([FieldViolation("entity_type", f"one of {', '.join(KINDS)}")])
        query = build_query(kind, page_size=page_size, page_token=page_token, filter_text="", order_by="id")
        async with self.store.read() as tx:
            page = await tx.list_page(query)
        token = "" if page.last_position is None else encode_token(query, "", "id", page.last_position)
        return as_of, [to_json(e) for e in page.items], token

    async def pull(
        self, origin_id: uuid.UUID, after_seq: int, limit: int, *, principal: Principal | None
    ) -> tuple[list[Revision], int, bool, uuid.UUID, bool]:
        """(changes, next cursor, more, central id, resync required) for an edge pulling after `after_seq`."""
        _require_sync(principal)
        self._require_central()
        limit = min(limit or PULL_LIMIT, PULL_LIMIT)
        async with self.store.write() as tx:
            central_id = await store_id(tx, self._clock())
        async with self.store.read() as tx:
            oldest = await tx.oldest_change_seq()
            if after_seq and oldest and after_seq < oldest - 1:
                return [], after_seq, False, central_id, True
            scanned = await tx.changes_after(after_seq, limit)
        mine = [c for c in scanned if c.origin_id != origin_id]
        cursor = scanned[-1].sequence if scanned else after_seq
        return mine, cursor, len(scanned) == limit, central_id, False


async def _check_origin_owner(tx: Transaction, origin_id: uuid.UUID, principal: Principal | None) -> None:
    """An origin belongs to the user whose sync key first pushed for it; other keys may not act for it."""
    if principal is None:
        return
    known, owner = await tx.sync_origin_owner(origin_id)
    if known and owner is not None and owner != principal.user_id:
        raise PermissionDenied(
            f"origin {origin_id} replicates with another sync key; each edge uses its own key",
            reason="ORIGIN_OF_ANOTHER_KEY",
        )


def _require_sync(principal: Principal | None) -> None:
    if principal is not None and not principal.has(Scope.SYNC):
        raise PermissionDenied("replication needs a key with the sync scope", reason="MISSING_SCOPE")
