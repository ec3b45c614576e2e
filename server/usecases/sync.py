"""Central side of replication: apply a batch of one edge's changes and that edge's watermark in one
transaction (DESIGN decision 7). Already-applied sequences are skipped, a gap is refused, and a change that can
never apply is recorded as rejected without blocking the ones after it.

Applying a change writes the entity exactly as the edge had it (its version included) and a change record on
central that names the origin, so central keeps the full history of every edge.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from server.domain import failpoints
from server.domain.entities import ChangeOperation, Revision, Versioned
from server.domain.errors import (
    Aborted,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    PermissionDenied,
    SmoothError,
    Unavailable,
)
from server.domain.identity import AuditEntry, Principal, Scope
from server.domain.registry import KINDS, EntityKind
from server.domain.schema import fields_of, from_json, to_json
from server.store.repository import JsonText, Store, Transaction
from server.usecases import audit
from server.usecases.listing import build_query, encode_token, page_size_of
from server.usecases.tokens import decode_position, encode_position
from server.validation.rules import check_entity

MAX_BATCH = 5_000
TURN_WAIT_S = 10.0  # how long a push that arrived before its predecessor waits for it to be applied
ORPHAN_WAIT_S = 0.5  # ... and for it to arrive at all
PARSE_SLICE = 250  # changes parsed between two turns of the event loop
PULL_LIMIT = 1_000
STORE_ID_KEY = "origin_id"


@dataclass(frozen=True, slots=True)
class Rejected:
    seq: int
    entity_type: str
    entity_id: uuid.UUID
    reason: str


def schema_order(version: str) -> tuple[int, str]:
    """Alembic revisions here are zero-padded numbers ("0003"): compare them as numbers."""
    return (int(version), version) if version.isdigit() else (-1, version)


class SyncApplier:
    def __init__(
        self, store: Store, clock: Callable[[], datetime], schema_version: str, *, central: bool = False
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
        parsed: Parsed | None,
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
            if parsed is not None:
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


async def store_id(tx: Transaction, now: datetime) -> uuid.UUID:
    """This store's id (made once): an edge's origin_id, central's central_id."""
    value = await tx.replication_value(STORE_ID_KEY)
    if value is None:
        value = str(uuid.uuid4())
        await tx.set_replication_value(STORE_ID_KEY, value, now)
    return uuid.UUID(str(value))


async def apply_changes(
    tx: Transaction,
    origin_id: uuid.UUID,
    batch: Sequence[Revision],
    now: datetime,
    *,
    arbiter: bool = False,
    parsed: Parsed | None = None,
) -> list[Rejected]:
    """Apply another store's changes in order; each that cannot apply is recorded as rejected, never blocking.

    `arbiter` is central: it decides conflicts. An edge skips a change older than its own version (central
    decides, and its decision arrives with a newer version).
    """
    if not batch:
        return []
    if arbiter:
        if parsed is None:
            parsed = parse_bulk(batch)
        try:
            if parsed is not None:
                async with tx.savepoint():
                    if await _apply_bulk(tx, origin_id, parsed, now):
                        return []
        except (Unavailable, Aborted):
            raise
        except (SmoothError, ValueError, KeyError, TypeError):
            pass  # the database refused something the checks let through: take the careful path
    try:
        # Fast path: the whole batch under one savepoint (two round trips instead of two per change).
        async with tx.savepoint():
            for change in batch:
                await _apply(tx, origin_id, change, now, arbiter=arbiter)
        return []
    except (Unavailable, Aborted):
        raise
    except (SmoothError, ValueError, KeyError, TypeError):
        pass  # something in the batch cannot apply: redo it change by change to set only that one aside
    rejected: list[Rejected] = []
    for change in batch:
        try:
            async with tx.savepoint():
                await _apply(tx, origin_id, change, now, arbiter=arbiter)
        except (Unavailable, Aborted):
            raise  # transient: the whole batch fails and is sent again, nothing is recorded as rejected
        except (SmoothError, ValueError, KeyError, TypeError) as exc:
            reason = exc.message if isinstance(exc, SmoothError) else f"{type(exc).__name__}: {exc}"
            rejected.append(Rejected(change.sequence, change.entity_type, change.entity_id, reason[:1000]))
            await tx.insert_rejection(
                {
                    "origin_id": origin_id,
                    "seq": change.sequence,
                    "entity_type": change.entity_type[:32],
                    "entity_id": change.entity_id,
                    "reason": reason[:1000],
                    "data": change.snapshot,
                    "created_at": now,
                }
            )
    return rejected


# Kinds the bulk path handles: no member lists (tool sets) and no special rules (users).
BULK_KINDS = frozenset({"tool_item", "tool_assembly", "tool_instance", "tool_preset", "tool_usage"})
BULK_ORDER = ("tool_item", "tool_assembly", "tool_instance", "tool_preset", "tool_usage")


@dataclass(frozen=True, slots=True)
class ParsedChange:
    """A change for the bulk path, decoded, validated and encoded before the write lock."""

    kind: EntityKind
    entity: Versioned
    change: Revision
    data: dict[str, Any] | JsonText  # the change record's data


Parsed = list[ParsedChange]


def _snapshot(entity: Versioned, change: Revision) -> dict[str, Any] | JsonText:
    """The change record's data: the entity as this store encodes it; the JSON text as it arrived when that is
    the same object (it is, unless the sender wrote extra keys or other spellings), which saves encoding it."""
    data = to_json(entity)
    return JsonText(change.snapshot_json) if change.snapshot_json and data == change.snapshot else data


async def parse_bulk_yielding(batch: Sequence[Revision]) -> Parsed | None:
    """`parse_bulk` in slices, handing the event loop back between them: a push being applied meanwhile gets
    its database answers handled at once instead of after the whole parse."""
    parsed: Parsed = []
    for start in range(0, len(batch), PARSE_SLICE):
        if start:
            await asyncio.sleep(0)
        part = parse_bulk(batch[start : start + PARSE_SLICE])
        if part is None:
            return None
        parsed += part
    return parsed


def parse_bulk(batch: Sequence[Revision]) -> Parsed | None:
    """The bulk path's entities, decoded and validated, and their change records' data: CPU only, done before
    the write transaction. None when some change needs the careful path (a delete, a tool set or user, an
    invalid or odd snapshot)."""
    parsed: Parsed = []
    for change in batch:
        kind = KINDS.get(change.entity_type)
        if kind is None or kind.name not in BULK_KINDS or change.operation == ChangeOperation.DELETE:
            return None
        try:
            entity = from_json(kind.cls, change.snapshot)
        except (ValueError, KeyError, TypeError):
            return None
        if entity.id != change.entity_id or check_entity(entity):
            return None
        parsed.append(ParsedChange(kind, entity, change, _snapshot(entity, change)))
    return parsed


async def _apply_bulk(tx: Transaction, origin_id: uuid.UUID, parsed: Parsed, now: datetime) -> bool:
    """The common case in a handful of statements: only creates and updates that are newer than what this store
    has, valid, with their references present. Returns False (having written nothing) for anything else, and
    the caller takes the change-by-change path, which handles conflicts, deletes and rejections."""
    by_kind: dict[str, dict[uuid.UUID, Versioned]] = {}
    for p in parsed:
        by_kind.setdefault(p.kind.name, {})[p.entity.id] = p.entity  # the last state of each entity wins
    present: dict[str, set[uuid.UUID]] = {}
    existing: dict[str, set[uuid.UUID]] = {}
    for name, entities in by_kind.items():
        versions = await tx.versions_of(KINDS[name], list(entities))
        existing[name] = set(versions)
        present[name] = set(versions) | set(entities)
        newest: dict[uuid.UUID, int] = dict(versions)
        for p in parsed:
            if p.kind.name != name:
                continue
            if p.entity.id in newest and p.entity.version <= newest[p.entity.id]:
                return False  # a duplicate or a conflict: the careful path decides
            newest[p.entity.id] = p.entity.version
        if await tx.ids_with_history(KINDS[name], [i for i in entities if i not in versions]):
            return False  # deleted here earlier: the careful path decides
    for name, entities in by_kind.items():
        for f in fields_of(KINDS[name].cls):
            if f.ref is None or f.kind == "members":
                continue
            wanted = {getattr(e, f.name) for e in entities.values()} - {None}
            known = present.get(f.ref, set())
            missing = [i for i in wanted if i not in known]
            if missing and len(await tx.versions_of(KINDS[f.ref], missing)) != len(missing):
                return False
        unique = UNIQUE_FIELDS.get(name)
        if unique is not None:
            values = [getattr(e, unique) for e in entities.values()]
            if len(set(values)) != len(values):
                return False
            owners = await tx.owners_of_values(KINDS[name], unique, values)
            if any(owners[getattr(e, unique)] != e.id for e in entities.values() if getattr(e, unique) in owners):
                return False
    for name in BULK_ORDER:
        if name in by_kind:
            new = [e for i, e in by_kind[name].items() if i not in existing[name]]
            updated = [e for i, e in by_kind[name].items() if i in existing[name]]
            await tx.bulk_insert(KINDS[name], new)  # COPY on PostgreSQL
            if updated:
                await tx.bulk_upsert(KINDS[name], updated)
    await tx.bulk_append_changes(
        [
            {
                "entity_type": p.kind.name,
                "entity_id": p.entity.id,
                "version": p.entity.version,
                "operation": p.change.operation,
                "data": p.data,
                "actor_id": p.change.actor_id,
                "request_id": p.change.request_id,
                "change_time": now,
                "origin_id": origin_id,
                "origin_seq": p.change.sequence,
            }
            for p in parsed
        ]
    )
    return True


# Ownership (DESIGN decision 7): usage is the edge's; measurements of a physical tool are the edge's (presetters
# and collectors stand there); everything else — the catalog, presets, sets, users, other instance fields — is
# central's. A conflict keeps the owner's values; the losing version is kept in sync_conflicts.
EDGE_OWNED_KINDS = frozenset({"tool_usage"})
EDGE_OWNED_FIELDS: dict[str, frozenset[str]] = {
    "tool_instance": frozenset({"measurements", "last_calibration", "calibration_due", "status"}),
}


def resolve(kind: EntityKind, central: Versioned, edge: Versioned) -> tuple[str, Versioned]:
    """The deterministic decision for one conflict: (winner, resolved state). No clocks are consulted."""
    if kind.name in EDGE_OWNED_KINDS:
        return "EDGE", edge
    fields = EDGE_OWNED_FIELDS.get(kind.name, frozenset())
    merged = dataclasses.replace(central, **{f: getattr(edge, f) for f in fields})
    return ("MERGED" if to_json(merged) != to_json(central) else "CENTRAL"), merged


async def _apply(tx: Transaction, origin_id: uuid.UUID, change: Revision, now: datetime, *, arbiter: bool) -> None:
    """One change, as the other store had it."""
    kind = KINDS.get(change.entity_type)
    if kind is None:
        raise InvalidArgument(f"unknown entity type {change.entity_type!r}")
    entity = from_json(kind.cls, change.snapshot)
    if entity.id != change.entity_id:
        raise InvalidArgument("the snapshot's id differs from the change's entity_id")
    existing = await tx.get(kind, entity.id)
    origin = (origin_id, change.sequence)
    if arbiter and kind.name == "user" and (existing is not None or change.operation == ChangeOperation.DELETE):
        # Edges bring their users to central (owners of what they made) but never change central's accounts.
        raise PermissionDenied("an edge cannot change or delete a user that central already has")
    if change.operation == ChangeOperation.DELETE:
        if existing is None:
            return  # already gone
        if existing.version > entity.version and to_json(existing) != to_json(entity):
            if not arbiter:
                return  # central decides; its decision comes with a newer version
            if kind.name not in EDGE_OWNED_KINDS:
                # Central's newer version wins over the edge's delete: re-issue it so the edge gets it back.
                await _decide(tx, kind, existing, entity, "CENTRAL", existing, origin, now)
                return
        await _delete(tx, kind, entity, change, origin, now)
        return
    if existing is None and arbiter and await tx.has_history(kind, entity.id):
        # Deleted here while the edge changed it: the owner decides.
        if kind.name in EDGE_OWNED_KINDS:
            await _decide(tx, kind, None, entity, "EDGE", entity, origin, now)
        else:
            await _decide(tx, kind, None, entity, "CENTRAL", None, origin, now)
        return
    if existing is not None and existing.version >= entity.version:
        if to_json(existing) == to_json(entity):
            return  # already applied
        if not arbiter:
            return  # central decides; its decision comes with a newer version
        winner, resolved = resolve(kind, existing, entity)
        await _decide(tx, kind, existing, entity, winner, resolved, origin, now)
        return
    await _write(tx, kind, entity)
    await tx.append_change(
        kind,
        entity,
        change.operation,
        actor_id=change.actor_id,
        request_id=change.request_id,
        at=now,
        origin=origin,
    )


async def _write(tx: Transaction, kind: EntityKind, entity: Versioned) -> None:
    violations = check_entity(entity)
    if violations:
        raise InvalidArgument.of(violations)
    await _check_references(tx, kind, entity)
    await _check_unique(tx, kind, entity)
    await tx.upsert(kind, entity)


async def _delete(
    tx: Transaction,
    kind: EntityKind,
    entity: Versioned,
    change: Revision,
    origin: tuple[uuid.UUID, int] | None,
    now: datetime,
) -> None:
    refs = await tx.count_references(kind.name, entity.id)
    if refs:
        raise FailedPrecondition(f"still referenced here: {refs}")
    await tx.delete_row(kind, entity.id)
    await tx.append_change(
        kind,
        entity,
        ChangeOperation.DELETE,
        actor_id=change.actor_id,
        request_id=change.request_id,
        at=now,
        origin=origin,
    )


async def _decide(
    tx: Transaction,
    kind: EntityKind,
    central: Versioned | None,
    edge: Versioned,
    winner: str,
    resolved: Versioned | None,
    origin: tuple[uuid.UUID, int],
    now: datetime,
) -> None:
    """Write the decision as a new version above both (so it reaches every edge, the origin included: it is
    recorded as made here) and keep both sides in a conflict record."""
    base = max(central.version if central else 0, edge.version, await _last_version(tx, kind, edge.id))
    version = base + 1
    if resolved is None:  # the decision is "deleted"
        gone = dataclasses.replace(edge, version=version, updated_at=now)
        await tx.append_change(kind, gone, ChangeOperation.DELETE, actor_id=None, request_id="", at=now)
        resolved_data: dict[str, Any] = {}
    else:
        decided = dataclasses.replace(resolved, version=version, updated_at=now)
        await _write(tx, kind, decided)
        await tx.append_change(kind, decided, ChangeOperation.UPDATE, actor_id=None, request_id="", at=now)
        resolved_data = to_json(decided)
    await tx.insert_conflict(
        {
            "origin_id": origin[0],
            "origin_seq": origin[1],
            "entity_type": kind.name,
            "entity_id": edge.id,
            "central_version": central.version if central else 0,
            "edge_version": edge.version,
            "winner": winner,
            "resolved_version": version,
            "central_data": to_json(central) if central else {},
            "edge_data": to_json(edge),
            "resolved_data": resolved_data,
            "created_at": now,
        }
    )


async def _last_version(tx: Transaction, kind: EntityKind, entity_id: uuid.UUID) -> int:
    last = await tx.revisions(kind, entity_id, 0, 1, newest=True)
    return last[0].version if last else 0


async def _check_references(tx: Transaction, kind: EntityKind, entity: Versioned) -> None:
    for f in fields_of(kind.cls):
        if f.ref is None:
            continue
        value = getattr(entity, f.name)
        ids = value if f.kind == "members" else ([value] if value is not None else [])
        found = await tx.get_many(KINDS[f.ref], ids)
        missing = [i for i in ids if i not in found]
        if missing:
            raise FailedPrecondition(
                f"{f.name} refers to {KINDS[f.ref].label} {missing[0]}, which central does not have"
            )


UNIQUE_FIELDS = {"tool_instance": "serial_number", "user": "email"}


async def _check_unique(tx: Transaction, kind: EntityKind, entity: Versioned) -> None:
    name = UNIQUE_FIELDS.get(kind.name)
    if name is not None:
        for other in await tx.find_by(kind, name, getattr(entity, name)):
            if other.id != entity.id:
                raise FailedPrecondition(f"{name} {getattr(entity, name)!r} belongs to another {kind.label} on central")


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


PULL_CURSOR_KEY = "pull_cursor"


class PullApplier:
    """Edge side of the pull: central's changes and the new cursor saved in one transaction."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

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


# Parents before children: a snapshot applies in this order so references resolve.
RESYNC_ORDER = ("user", "tool_item", "tool_assembly", "tool_instance", "tool_preset", "tool_usage", "tool_set")


class ResyncApplier:
    """Edge side of a full resync: central's entities replace what this edge had replicated."""

    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock

    async def apply_kind(self, central_id: uuid.UUID, kind_name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Upsert central's entities of one kind, unless this edge holds a newer local version (still to push)."""
        kind = KINDS[kind_name]
        now = self._clock()
        async with self.store.write() as tx:
            for data in rows:
                entity = from_json(kind.cls, data)
                existing = await tx.get(kind, entity.id)
                if existing is not None and (existing.version > entity.version or to_json(existing) == data):
                    continue
                try:
                    async with tx.savepoint():
                        await _write(tx, kind, entity)
                        await tx.append_change(
                            kind,
                            entity,
                            ChangeOperation.UPDATE,
                            actor_id=None,
                            request_id="resync",
                            at=now,
                            origin=(central_id, 0),
                        )
                except (SmoothError, ValueError) as exc:
                    await tx.insert_rejection(
                        {
                            "origin_id": central_id,
                            "seq": entity.id.int >> 66,  # no central sequence: key by 62 bits of the id
                            "entity_type": kind_name,
                            "entity_id": entity.id,
                            "reason": f"resync: {exc}"[:1000],
                            "data": data,
                            "created_at": now,
                        }
                    )

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
