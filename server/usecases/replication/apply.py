"""Applying another store's changes, shared by central (push, the arbiter) and the edge (pull).

Every change is checked by the rulebook, as an API write is. A change that cannot apply — malformed, breaking
a rule, referring to what this store lacks — is recorded as rejected and never blocks the ones after it. Only
transient database errors fail the whole batch (it is sent again); anything unexpected fails it loudly.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from server.domain.entities import ChangeOperation, Revision, Versioned
from server.domain.errors import (
    Aborted,
    FailedPrecondition,
    InvalidArgument,
    PermissionDenied,
    SmoothError,
    Unavailable,
)
from server.domain.registry import KINDS, EntityKind
from server.domain.rulebook import PARENT_FIRST, normalized
from server.domain.schema import JsonText, to_json
from server.usecases import rulebook
from server.usecases.entities import REQUEST_ID_MAX_LEN
from server.usecases.ports import Transaction
from server.usecases.replication import ownership
from server.validation.rules import check_entity
from server.validation.snapshots import decode_entity, json_value_problem

log = structlog.get_logger("smooth_edge.replication")

PARSE_SLICE = 250  # changes parsed between two turns of the event loop
STORE_ID_KEY = "origin_id"
NIL = uuid.UUID(int=0)


@dataclass(frozen=True, slots=True)
class Rejected:
    seq: int
    entity_type: str
    entity_id: uuid.UUID
    reason: str


async def store_id(tx: Transaction, now: datetime) -> uuid.UUID:
    """This store's id (made once): an edge's origin_id, central's central_id."""
    value = await tx.replication_value(STORE_ID_KEY)
    if value is None:
        value = str(uuid.uuid4())
        await tx.set_replication_value(STORE_ID_KEY, value, now)
    return uuid.UUID(str(value))


def rejection_reason(exc: SmoothError) -> str:
    """What a rejection records: the refusal's reason code (as the API's ErrorInfo gives it) and message."""
    return f"{exc.reason}: {exc.message}"[:1000] if exc.reason else exc.message[:1000]


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

    On central, each run of plain creates and updates (`parse_bulk`) goes through the bulk path in a handful of
    statements; what is left — deletes, tool sets, users, conflicts, invalid changes — is applied change by
    change between the runs, in order. One delete no longer sends a whole batch down the slow path (issue 11).
    """
    if not batch:
        return []
    if not arbiter:
        return await _apply_careful(tx, origin_id, batch, now, arbiter=False)
    if parsed is None:
        parsed = parse_bulk(batch)
    by_seq = {p.change.sequence: p for p in parsed}

    def run_class(change: Revision) -> str:  # runs are all plain writes, all plain deletes, or careful
        if change.sequence not in by_seq:
            return "careful"
        return "delete" if change.operation == ChangeOperation.DELETE else "write"

    rejected: list[Rejected] = []
    start = 0
    while start < len(batch):
        cls = run_class(batch[start])
        end = start
        while end < len(batch) and run_class(batch[end]) == cls:
            end += 1
        run = batch[start:end]
        if cls == "careful" or not await _try_bulk(tx, origin_id, [by_seq[c.sequence] for c in run], now):
            rejected += await _apply_careful(tx, origin_id, run, now, arbiter=True)
        start = end
    return rejected


async def _try_bulk(tx: Transaction, origin_id: uuid.UUID, parsed: Parsed, now: datetime) -> bool:
    """The bulk path for one run, under a savepoint: False (having written nothing) when the run needs the
    careful path."""
    apply = _apply_bulk_deletes if parsed[0].change.operation == ChangeOperation.DELETE else _apply_bulk
    try:
        async with tx.savepoint():
            return await apply(tx, origin_id, parsed, now)
    except (Unavailable, Aborted):
        raise
    except SmoothError as exc:
        # The database refused what the rulebook let through (a race, or a rule it keeps alone): the careful
        # path finds the change and rejects it alone.
        log.warning("sync.bulk_refused", error=exc.message, reason=exc.reason)
        return False


async def _apply_careful(
    tx: Transaction, origin_id: uuid.UUID, batch: Sequence[Revision], now: datetime, *, arbiter: bool
) -> list[Rejected]:
    """Change by change: first all of them under one savepoint (two round trips instead of two per change), and
    when one cannot apply, again one savepoint each, so that only that one is set aside."""
    try:
        async with tx.savepoint():
            for change in batch:
                await _apply(tx, origin_id, change, now, arbiter=arbiter)
        return []
    except (Unavailable, Aborted):
        raise
    except SmoothError:
        pass  # some change in the batch cannot apply: redo it change by change to set only that one aside
    rejected: list[Rejected] = []
    for change in batch:
        try:
            async with tx.savepoint():
                await _apply(tx, origin_id, change, now, arbiter=arbiter)
        except (Unavailable, Aborted):
            raise  # transient: the whole batch fails and is sent again, nothing is recorded as rejected
        except SmoothError as exc:
            reason = _storable_text(rejection_reason(exc), 1000)
            entity_type = _storable_text(change.entity_type, 32)
            rejected.append(Rejected(change.sequence, entity_type, change.entity_id, reason))
            await tx.insert_rejection(
                {
                    "origin_id": origin_id,
                    "seq": change.sequence,
                    "entity_type": entity_type,
                    "entity_id": change.entity_id,
                    "reason": reason,
                    "data": storable_snapshot(change.snapshot),
                    "created_at": now,
                }
            )
    return rejected


def storable_snapshot(snapshot: Any) -> dict[str, Any]:
    """A rejected change's data as every engine can store it: the snapshot, unless it is the reason it was
    rejected (NUL, NaN, lone surrogates, absurd nesting cannot be stored in a JSON column)."""
    if type(snapshot) is dict and json_value_problem(snapshot) is None:
        return snapshot
    return {"unstorable": json_value_problem(snapshot) or "not a JSON object"}


def _storable_text(text: str, limit: int) -> str:
    """Text as a text column of every engine takes it (no NUL, valid Unicode), cut to `limit`."""
    if "\x00" in text or json_value_problem(text) is not None:
        text = repr(text)
    return text[:limit]


# Kinds the bulk path handles: no member lists (tool sets) and no special rules (users).
BULK_KINDS = frozenset({"tool_item", "tool_assembly", "tool_instance", "tool_preset", "tool_usage"})


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


async def parse_bulk_yielding(batch: Sequence[Revision]) -> Parsed:
    """`parse_bulk` in slices, handing the event loop back between them: a push being applied meanwhile gets
    its database answers handled at once instead of after the whole parse."""
    parsed: Parsed = []
    for start in range(0, len(batch), PARSE_SLICE):
        if start:
            await asyncio.sleep(0)
        parsed += parse_bulk(batch[start : start + PARSE_SLICE])
    return parsed


def parse_bulk(batch: Sequence[Revision]) -> Parsed:
    """The changes the bulk path can take, decoded and validated, with their change records' data: CPU only,
    done before the write transaction. A change left out (a delete, a tool set or user, a malformed or invalid
    snapshot) is applied change by change, where it is decided or rejected alone."""
    parsed: Parsed = []
    for change in batch:
        kind = KINDS.get(change.entity_type)
        if (
            change.defect
            or kind is None
            or kind.name not in BULK_KINDS
            or (change.operation == ChangeOperation.CREATE and change.version != 1)
        ):
            continue
        try:
            entity = decode_entity(kind.cls, change.snapshot)
        except InvalidArgument:
            continue
        if entity.id != change.entity_id or entity.version != change.version or check_entity(entity):
            continue
        parsed.append(ParsedChange(kind, entity, change, _snapshot(entity, change)))
    return parsed


async def _apply_bulk(tx: Transaction, origin_id: uuid.UUID, parsed: Parsed, now: datetime) -> bool:
    """The common case in a handful of statements: only creates and updates that are newer than what this store
    has and that the rulebook accepts. Returns False (having written nothing) for anything else, and the caller
    takes the change-by-change path, which handles conflicts, deletes and rejections."""
    by_kind: dict[str, dict[uuid.UUID, Versioned]] = {}
    for p in parsed:
        by_kind.setdefault(p.kind.name, {})[p.entity.id] = p.entity  # the last state of each entity wins
    existing: dict[str, set[uuid.UUID]] = {}
    for name, entities in by_kind.items():
        versions = await tx.versions_of(KINDS[name], list(entities))
        existing[name] = set(versions)
        newest: dict[uuid.UUID, int] = dict(versions)
        for p in parsed:
            if p.kind.name != name:
                continue
            known = newest.get(p.entity.id)
            if known is None and p.change.operation != ChangeOperation.CREATE:
                return False  # an update of what this store lacks: the careful path decides
            if known is not None and p.entity.version <= known:
                return False  # a duplicate or a conflict: the careful path decides
            newest[p.entity.id] = p.entity.version
        if await tx.ids_with_history(KINDS[name], [i for i in entities if i not in versions]):
            return False  # deleted here earlier: the careful path decides
    states = [e for entities in by_kind.values() for e in entities.values()]
    if await rulebook.check(tx, states, valid={p.entity.id for p in parsed}):  # parse_bulk ran check_entity
        return False  # the careful path rejects exactly the changes that break a rule
    if not await _actors_known(tx, parsed):
        return False
    for name in PARENT_FIRST:
        if name in by_kind:
            new = [e for i, e in by_kind[name].items() if i not in existing[name]]
            updated = [e for i, e in by_kind[name].items() if i in existing[name]]
            await tx.bulk_insert(KINDS[name], new)  # COPY on PostgreSQL
            if updated:
                await tx.bulk_upsert(KINDS[name], updated)
    await _append_changes(tx, origin_id, parsed, now)
    return True


async def _apply_bulk_deletes(tx: Transaction, origin_id: uuid.UUID, parsed: Parsed, now: datetime) -> bool:
    """Deletes of what this store has at the same or an older version and nothing references, in a few statements
    per kind. False (having written nothing) for anything else: the careful path decides conflicts, deletes of
    what is already gone, and refuses deletes of what is still referenced."""
    by_kind: dict[str, list[ParsedChange]] = {}
    for p in parsed:
        by_kind.setdefault(p.kind.name, []).append(p)
    for name, changes in by_kind.items():
        ids = [p.entity.id for p in changes]
        if len(set(ids)) != len(ids):
            return False
        current = await tx.get_many(KINDS[name], ids)
        for p in changes:
            existing = current.get(p.entity.id)
            if existing is None or (existing.version > p.entity.version and to_json(existing) != to_json(p.entity)):
                return False
        if await tx.referenced(name, ids):
            return False
    if not await _actors_known(tx, parsed):
        return False
    for name in reversed(PARENT_FIRST):
        if name in by_kind:
            await tx.delete_rows(KINDS[name], [p.entity.id for p in by_kind[name]])
    await _append_changes(tx, origin_id, parsed, now)
    return True


async def _actors_known(tx: Transaction, parsed: Parsed) -> bool:
    """Every actor the changes name is a user this store has (the careful path rejects the others)."""
    actors = sorted({p.change.actor_id for p in parsed if p.change.actor_id is not None})
    return not actors or len(await tx.versions_of(KINDS["user"], actors)) == len(actors)


async def _append_changes(tx: Transaction, origin_id: uuid.UUID, parsed: Parsed, now: datetime) -> None:
    """The change records of changes applied in bulk, as they arrived (their origin and sequence kept)."""
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


async def decode_change(tx: Transaction, change: Revision, *, arbiter: bool) -> tuple[EntityKind, Versioned]:
    """The change's kind and entity, or InvalidArgument saying what is malformed about it."""
    if change.defect:
        raise InvalidArgument(f"malformed change: {change.defect}", reason="MALFORMED_CHANGE")
    if len(change.request_id) > REQUEST_ID_MAX_LEN or "\x00" in change.request_id:
        raise InvalidArgument(
            f"request_id: at most {REQUEST_ID_MAX_LEN} characters, no NUL characters", reason="MALFORMED_CHANGE"
        )
    kind = KINDS.get(change.entity_type)
    if kind is None:
        raise InvalidArgument(
            f"unknown entity type {change.entity_type[:40]!r}: one of {', '.join(KINDS)}", reason="UNKNOWN_KIND"
        )
    entity = normalized(decode_entity(kind.cls, change.snapshot))
    if entity.id != change.entity_id:
        raise InvalidArgument("the snapshot's id differs from the change's entity_id", reason="MALFORMED_CHANGE")
    if entity.version != change.version:
        raise InvalidArgument(
            f"the snapshot is at version {entity.version}, the change says {change.version}",
            reason="MALFORMED_CHANGE",
        )
    if change.operation == ChangeOperation.CREATE and entity.version != 1:
        raise InvalidArgument(
            f"a CREATE starts at version 1, not {entity.version}: send the entity's whole history",
            reason="MALFORMED_CHANGE",
        )
    if arbiter and change.actor_id is not None and not await tx.versions_of(KINDS["user"], [change.actor_id]):
        raise FailedPrecondition(
            f"actor {change.actor_id} is not a user central knows: push the user first", reason="UNKNOWN_ACTOR"
        )
    return kind, entity


async def _apply(tx: Transaction, origin_id: uuid.UUID, change: Revision, now: datetime, *, arbiter: bool) -> None:
    """One change, as the other store had it."""
    kind, entity = await decode_change(tx, change, arbiter=arbiter)
    existing = await tx.get(kind, entity.id)
    origin = (origin_id, change.sequence)
    if arbiter and kind.name == "user" and (existing is not None or change.operation == ChangeOperation.DELETE):
        # Edges bring their users to central (owners of what they made) but never change central's accounts.
        raise PermissionDenied("an edge cannot change or delete a user that central already has", reason="CENTRAL_USER")
    if change.operation == ChangeOperation.DELETE:
        if existing is None:
            return  # already gone
        if existing.version > entity.version and to_json(existing) != to_json(entity):
            if not arbiter:
                return  # central decides; its decision comes with a newer version
            if not ownership.edge_owns(kind):
                # Central's newer version wins over the edge's delete: re-issue it so the edge gets it back.
                await _decide(tx, kind, existing, entity, "CENTRAL", existing, origin, now)
                return
        await _delete(tx, kind, entity, change, origin, now)
        return
    if existing is None:
        last = await _last_version(tx, kind, entity.id)
        if last:
            # Deleted here while the other side changed it.
            if arbiter:
                winner = ownership.resolve_deleted(kind)
                await _decide(tx, kind, None, entity, winner, entity if winner == "EDGE" else None, origin, now)
                return
            if entity.version <= last:
                return  # the edge's history already has this version (its delete): central's decision follows
        elif change.operation == ChangeOperation.UPDATE:
            raise FailedPrecondition(
                f"an UPDATE of {kind.label} {entity.id}, which this store never had: send its CREATE first",
                reason="UNKNOWN_ENTITY",
            )
    elif existing.version >= entity.version:
        if to_json(existing) == to_json(entity):
            return  # already applied
        if not arbiter:
            return  # central decides; its decision comes with a newer version
        winner, resolved = ownership.resolve(kind, existing, entity)
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
    await rulebook.enforce(tx, entity)
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
        listed = ", ".join(f"{n} by {where}" for where, n in sorted(refs.items()))
        raise FailedPrecondition(
            f"{kind.label} {entity.id} is still referenced here ({listed})", reason="STILL_REFERENCED"
        )
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
    """The newest version this store's history holds of the entity (0: none)."""
    last = await tx.revisions(kind, entity_id, 0, 1, newest=True)
    return last[0].version if last else 0
