"""The only writers: generic entity operations (get, list, create, update, delete, revisions, members)
plus each entity's rules. validate -> check references -> apply, with the change record, in one transaction.
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

from server.domain.entities import ChangeOperation, Revision, Versioned
from server.domain.errors import (
    Aborted,
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    NotFound,
    VersionConflict,
)
from server.domain.identity import AuditEntry, Principal
from server.domain.ids import uuid7
from server.domain.registry import KINDS, EntityKind
from server.domain.rulebook import normalized
from server.domain.schema import OUTPUT_ONLY, fields_of, from_json, to_json
from server.usecases import access, audit, rulebook
from server.usecases.listing import build_query, encode_token, page_size_of
from server.usecases.ports import Transaction, UnitOfWork
from server.usecases.tokens import decode_position, encode_position

REQUEST_ID_MAX_LEN = 100


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: the principal (None for trusted in-process callers), the idempotency key and the peer."""

    principal: Principal | None = None
    request_id: str = ""
    peer: str = ""
    # A change the product makes itself (a usage moving its instance IN_USE), not a caller's request: the rules
    # on what callers may change (the status lifecycle's operator transitions) do not apply to it.
    system: bool = False

    @property
    def actor_id(self) -> uuid.UUID | None:
        return self.principal.user_id if self.principal else None


class BatchWrite(NamedTuple):
    """One create (`current` None) or update of `current`, for `EntityService.write_many_in`."""

    current: Versioned | None
    entity_id: uuid.UUID
    values: Mapping[str, Any]
    caller: Caller


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[Any]
    next_page_token: str


class EntityService:
    """Every standard operation for one entity kind, driven by the kind's row in the registry."""

    def __init__(self, store: UnitOfWork, kind: EntityKind, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self.kind = kind
        self._clock = clock

    # --- reads ---------------------------------------------------------------------------------------

    async def get(self, entity_id: uuid.UUID, caller: Caller = Caller()) -> Versioned:
        async with self.store.read() as tx:
            return await self._require(tx, entity_id, caller)

    async def list(
        self, *, page_size: int, page_token: str, filter_text: str, order_by: str, caller: Caller = Caller()
    ) -> ListResult:
        query = build_query(
            self.kind, page_size=page_size, page_token=page_token, filter_text=filter_text, order_by=order_by
        )
        query = dataclasses.replace(query, private_viewer=access.private_viewer(caller.principal, self.kind))
        async with self.store.read() as tx:
            page = await tx.list_page(query)
        token = "" if page.last_position is None else encode_token(query, filter_text, order_by, page.last_position)
        return ListResult(page.items, token)

    async def list_revisions(
        self, entity_id: uuid.UUID, *, page_size: int, page_token: str, caller: Caller = Caller()
    ) -> ListResult:
        size = page_size_of(page_size)
        after = decode_position("r", page_token)
        async with self.store.read() as tx:
            revisions = await tx.revisions(self.kind, entity_id, after, size + 1)
            latest = await tx.get(self.kind, entity_id)
            if latest is None:  # deleted: whoever could read it last may read its history
                last = await tx.revisions(self.kind, entity_id, 0, 1, newest=True)
                latest = from_json(self.kind.cls, last[0].snapshot) if last else None
            if latest is None or not access.can_read(caller.principal, latest):
                raise self._not_found(entity_id)
        more = len(revisions) > size
        revisions = revisions[:size]
        return ListResult(revisions, encode_position("r", revisions[-1].sequence) if more else "")

    # --- writes --------------------------------------------------------------------------------------

    async def create(self, values: Mapping[str, Any], *, entity_id: uuid.UUID | None, caller: Caller) -> Versioned:
        _check_request_id(caller.request_id)
        access.check_create(caller.principal, self.kind)
        async with self.store.write() as tx:
            return await self.create_in(tx, values, entity_id=entity_id, caller=caller)

    async def create_in(
        self, tx: Transaction, values: Mapping[str, Any], *, entity_id: uuid.UUID | None, caller: Caller
    ) -> Versioned:
        """Create inside the caller's transaction (in-process components that write more in the same unit)."""
        replay = await self._replay(tx, caller, "create")
        if replay is not None:
            return replay
        now = self._clock()
        entity = normalized(
            self.kind.cls(
                **self._normalize({k: v for k, v in values.items() if k not in OUTPUT_ONLY}, None),
                id=entity_id or uuid7(),
                owner_id=caller.actor_id,
                created_at=now,
                updated_at=now,
                version=1,
            )
        )
        if not caller.system:
            self._check_change(None, entity, set(values))
        entity = await self._prepare(tx, entity, None, {})
        # An id generated here (a UUIDv7) is new: nothing holds it, nothing references it.
        await rulebook.enforce(tx, entity, new=entity_id is None)
        if entity_id is not None and (
            await tx.get(self.kind, entity.id) is not None or await tx.has_history(self.kind, entity.id)
        ):
            # A deleted entity's id stays taken: its history is kept under it.
            raise AlreadyExists(
                f"{self.kind.label} {entity.id} exists or existed; use a new id (or Update it)",
                reason="ID_TAKEN",
                violations=[FieldViolation("id", "already taken")],
            )
        await tx.insert(self.kind, entity)
        await self._record(tx, None, entity, ChangeOperation.CREATE, caller, now, "create")
        await self._after_write(tx, None, entity, caller, now)
        return entity

    async def update(
        self, entity_id: uuid.UUID, version: int, values: Mapping[str, Any], *, caller: Caller
    ) -> Versioned:
        _check_request_id(caller.request_id)
        if version <= 0:
            raise InvalidArgument.of([FieldViolation("version", "required: send the version you last read")])
        async with self.store.write() as tx:
            return await self.update_in(tx, entity_id, version, values, caller=caller)

    async def update_in(
        self,
        tx: Transaction,
        entity_id: uuid.UUID,
        version: int,
        values: Mapping[str, Any],
        *,
        caller: Caller,
        method: str = "update",
    ) -> Versioned:
        """Update inside the caller's transaction; `version` 0 means "whatever is current" (in-process only).
        `method` names the call in the audit log and the request log (a custom method: "reset_tool_life")."""
        replay = await self._replay(tx, caller, method, entity_id)
        if replay is not None:
            return replay
        current = await self._require(tx, entity_id, caller)
        changes = self._normalize({k: v for k, v in values.items() if k not in OUTPUT_ONLY}, current)
        access.check_change(
            caller.principal, self.kind, current, [k for k, v in changes.items() if getattr(current, k) != v]
        )
        version = version or current.version
        if current.version != version:
            raise _stale(self.kind, current)
        now = self._clock()
        entity = normalized(dataclasses.replace(current, **changes, updated_at=now, version=current.version + 1))
        if not caller.system:
            self._check_change(current, entity, set(changes))
        entity = await self._prepare(tx, entity, current, {})
        await rulebook.enforce(tx, entity, stored=current)
        if not await tx.update(self.kind, entity, version):
            raise _stale(self.kind, await self._require(tx, entity_id))
        await self._record(tx, current, entity, ChangeOperation.UPDATE, caller, now, method)
        await self._after_write(tx, current, entity, caller, now)
        return entity

    async def write_many_in(self, tx: Transaction, writes: Sequence[BatchWrite]) -> builtins.list[Versioned]:
        """Many creates and updates inside the caller's transaction, with a few statements for all of them.

        A write whose `current` is None creates the entity `entity_id`; otherwise it updates `current` (as read
        in this transaction) whatever its version. A later write of the same id in the list builds on the
        earlier one. The same rules as `create_in`/`update_in` apply to each (validation, references, unique
        keys, access, change record, audit); any violation fails the whole call. For trusted in-process writers
        of kinds without member lists (the collector's usages), without request ids.
        """
        if any(w.caller.request_id for w in writes) or any(f.kind == "members" for f in fields_of(self.kind.cls)):
            raise ValueError(f"write_many_in: no request_id, no member lists ({self.kind.label})")
        now = self._clock()
        reads = await self._prefetch(tx, writes)
        latest: dict[uuid.UUID, Versioned] = {}
        steps: list[tuple[Versioned | None, Versioned, Caller]] = []
        created: dict[uuid.UUID, Versioned] = {}  # id -> the entity as first created here
        start_versions: dict[uuid.UUID, int] = {}  # id -> the version it had before this call (updates)
        stored: dict[uuid.UUID, Versioned] = {}  # id -> the state the store holds (updates)
        for current, entity_id, values, caller in writes:
            if current is not None:
                stored.setdefault(entity_id, current)
            current = latest.get(entity_id, current)
            clean = {k: v for k, v in values.items() if k not in OUTPUT_ONLY}
            if current is None:
                entity = self.kind.cls(
                    **self._normalize(clean, None),
                    id=entity_id,
                    owner_id=caller.actor_id,
                    created_at=now,
                    updated_at=now,
                    version=1,
                )
                created[entity_id] = entity
            else:
                changes = self._normalize(clean, current)
                access.check_change(
                    caller.principal, self.kind, current, [k for k, v in changes.items() if getattr(current, k) != v]
                )
                entity = dataclasses.replace(current, **changes, updated_at=now, version=current.version + 1)
                if entity_id not in created:
                    start_versions.setdefault(entity_id, current.version)
            entity = await self._prepare(tx, entity, stored.get(entity_id), reads)
            if current is None:
                created[entity_id] = entity
            steps.append((current, entity, caller))
            latest[entity_id] = entity
        if not steps:
            return []
        # Every state written is checked: the last of each id, and an earlier one too (its change record stays).
        broken = await rulebook.check(tx, list(latest.values()), stored=stored)
        earlier = [after for _, after, _ in steps if after is not latest[after.id]]
        if earlier and not broken:
            broken = await rulebook.check(tx, earlier, stored=stored)
        if broken:
            raise next(iter(broken.values()))
        if created:
            ids = list(created)
            taken = set(await tx.versions_of(self.kind, ids)) | await tx.ids_with_history(self.kind, ids)
            if taken:
                raise AlreadyExists(
                    f"{self.kind.label} {min(taken)} exists or existed; use a new id (or Update it)",
                    reason="ID_TAKEN",
                    violations=[FieldViolation("id", "already taken")],
                )
        if created:
            await tx.bulk_insert(self.kind, [latest[i] for i in created])
        updated = [(latest[i], v) for i, v in start_versions.items()]
        if updated and not await tx.bulk_update(self.kind, updated, stored):
            raise Aborted(f"{self.kind.label}s changed while being written; retry", reason="WRITE_CONFLICT")
        snapshots: dict[int, dict[str, Any]] = {}  # id(entity) -> to_json(entity): each one is encoded once

        def snapshot(entity: Versioned) -> dict[str, Any]:
            found = snapshots.get(id(entity))
            if found is None:
                found = snapshots[id(entity)] = to_json(entity)
            return found

        await tx.bulk_append_changes(
            [
                {
                    "entity_type": self.kind.name,
                    "entity_id": after.id,
                    "version": after.version,
                    "operation": ChangeOperation.CREATE if before is None else ChangeOperation.UPDATE,
                    "data": snapshot(after),
                    "actor_id": caller.actor_id,
                    "request_id": "",
                    "change_time": now,
                }
                for before, after, caller in steps
            ]
        )
        await audit.append_many(
            tx,
            [
                self._audit_entry(
                    before, after, caller, now, "create" if before is None else "update", snapshot=snapshot
                )
                for before, after, caller in steps
            ],
        )
        await self._after_write_many(tx, steps, now)
        return [after for _, after, _ in steps]

    async def change_members(
        self,
        entity_id: uuid.UUID,
        version: int,
        members: Mapping[str, Sequence[uuid.UUID]],
        *,
        add: bool,
        caller: Caller,
    ) -> Versioned:
        """Add or remove members of list fields (ToolSet), as an update of the whole entity."""
        current = await self.get(entity_id, caller)
        values: dict[str, list[uuid.UUID]] = {}
        for name, ids in members.items():
            existing: list[uuid.UUID] = list(getattr(current, name))
            if add:
                values[name] = existing + [i for i in dict.fromkeys(ids) if i not in existing]
            else:
                drop = set(ids)
                values[name] = [i for i in existing if i not in drop]
        return await self.update(entity_id, version, values, caller=caller)

    async def delete(self, entity_id: uuid.UUID, version: int, *, caller: Caller) -> None:
        _check_request_id(caller.request_id)
        if version <= 0:
            raise InvalidArgument.of([FieldViolation("version", "required: send the version you last read")])
        async with self.store.write() as tx:
            if await self._seen_request(tx, caller, "delete", entity_id) is not None:
                return
            current = await self._require(tx, entity_id, caller)
            access.check_delete(caller.principal, self.kind, current)
            if current.version != version:
                raise _stale(self.kind, current)
            refs = await tx.count_references(self.kind.name, entity_id)
            if refs:
                listed = ", ".join(f"{n} by {where}" for where, n in sorted(refs.items()))
                raise FailedPrecondition(
                    f"{self.kind.label} {entity_id} is still referenced ({listed}); "
                    "remove those references first, or retire it instead of deleting",
                    reason="STILL_REFERENCED",
                    metadata={k: str(v) for k, v in refs.items()},
                )
            if not await tx.delete(self.kind, entity_id, version):
                raise _stale(self.kind, await self._require(tx, entity_id))
            await self._record(tx, current, None, ChangeOperation.DELETE, caller, self._clock(), "delete")

    # --- helpers -------------------------------------------------------------------------------------

    async def _require(self, tx: Transaction, entity_id: uuid.UUID, caller: Caller = Caller()) -> Versioned:
        entity = await tx.get(self.kind, entity_id)
        # What a caller may not see is reported exactly like what does not exist.
        if entity is None or not access.can_read(caller.principal, entity):
            raise self._not_found(entity_id)
        return entity

    def _not_found(self, entity_id: uuid.UUID) -> NotFound:
        return NotFound(
            f"{self.kind.label} {entity_id} not found",
            metadata={"entity": self.kind.label, "id": str(entity_id)},
        )

    def _normalize(self, values: dict[str, Any], current: Versioned | None) -> dict[str, Any]:
        """Kind-specific clean-up of incoming values (hook; e.g. users' e-mail case)."""
        return values

    def _check_change(self, current: Versioned | None, entity: Versioned, fields: set[str]) -> None:
        """Kind-specific rules on what a caller may change (hook; e.g. the status lifecycle of tool instances):
        `current` None for a create; `fields` are those the request set. Not applied to system changes."""

    async def _prepare(
        self, tx: Transaction, entity: Versioned, stored: Versioned | None, reads: Mapping[uuid.UUID, Versioned]
    ) -> Versioned:
        """Kind-specific completion of a state about to be written, after the caller's checks and before the
        rulebook (hook; e.g. a usage opened on a tool in maintenance is flagged). `stored`: the state the store
        holds, as read in this transaction (None: it holds none). `reads`: what `_prefetch` read for a batch."""
        return entity

    async def _prefetch(self, tx: Transaction, writes: Sequence[BatchWrite]) -> Mapping[uuid.UUID, Versioned]:
        """What `_prepare` will read for a batch of writes, read at once (hook: one query instead of one a write;
        the collector writes hundreds of usages a batch, issue 11)."""
        return {}

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        """Kind-specific effects inside a create's or update's transaction (hook; e.g. deactivation revokes keys)."""

    async def _after_write_many(
        self, tx: Transaction, steps: Sequence[tuple[Versioned | None, Versioned, Caller]], now: datetime
    ) -> None:
        """`_after_write` for each step of a batch write, in order (hook: a kind may do them together)."""
        for before, after, caller in steps:
            await self._after_write(tx, before, after, caller, now)

    async def _seen_request(
        self, tx: Transaction, caller: Caller, method: str, target: uuid.UUID | None
    ) -> uuid.UUID | None:
        """The entity a retried request (same caller, same request_id) acted on; None for a new request.

        A request_id belongs to its caller; reusing one for another method or another entity is refused.
        """
        if not caller.request_id:
            return None
        seen = await tx.find_request(_request_owner(caller), caller.request_id)
        if seen is None:
            return None
        done_method, entity_id = seen
        if done_method != f"{self.kind.name}.{method}" or (target is not None and target != entity_id):
            raise InvalidArgument.of(
                [FieldViolation("request_id", f"already used for {done_method} of {entity_id}; use a new request_id")]
            )
        return entity_id

    async def _replay(
        self, tx: Transaction, caller: Caller, method: str, target: uuid.UUID | None = None
    ) -> Versioned | None:
        """A retried request returns the entity as it is now (if the caller may still see it), changing nothing."""
        entity_id = await self._seen_request(tx, caller, method, target)
        return None if entity_id is None else await self._require(tx, entity_id, caller)

    async def _record(
        self,
        tx: Transaction,
        before: Versioned | None,
        after: Versioned | None,
        op: ChangeOperation,
        caller: Caller,
        now: datetime,
        method: str,
    ) -> None:
        """The change record (history + outbox), the audit entry and the idempotency key: same transaction."""
        entity = after or before
        assert entity is not None
        data = to_json(entity)  # one snapshot for the change record and the audit entry (issue 11)
        await tx.append_change(
            self.kind, entity, op, actor_id=caller.actor_id, request_id=caller.request_id, at=now, data=data
        )
        entry = self._audit_entry(
            before, after, caller, now, method, snapshot=lambda e: data if e is entity else to_json(e)
        )
        await audit.append(tx, entry)
        if caller.request_id:
            await tx.remember_request(
                _request_owner(caller), caller.request_id, f"{self.kind.name}.{method}", entity.id, now
            )

    def _audit_entry(
        self,
        before: Versioned | None,
        after: Versioned | None,
        caller: Caller,
        now: datetime,
        method: str,
        *,
        snapshot: Callable[[Versioned], dict[str, Any]] = to_json,
    ) -> AuditEntry:
        entity = after or before
        assert entity is not None
        return AuditEntry(
            occurred_at=now,
            actor_id=caller.actor_id,
            api_key_id=caller.principal.api_key_id if caller.principal else None,
            action=f"{self.kind.name}.{method}",
            entity_type=self.kind.name,
            entity_id=str(entity.id),
            entity_version=entity.version,
            before=snapshot(before) if before is not None else None,
            after=snapshot(after) if after is not None else None,
            request_id=caller.request_id,
            peer=caller.peer[:200],
        )


def _stale(kind: EntityKind, current: Versioned) -> VersionConflict:
    return VersionConflict(
        f"{kind.label} {current.id} is at version {current.version}; re-read it and apply your change again",
        current_version=current.version,
    )


def _check_request_id(request_id: str) -> None:
    if len(request_id) > REQUEST_ID_MAX_LEN or "\x00" in request_id:
        raise InvalidArgument.of(
            [FieldViolation("request_id", f"at most {REQUEST_ID_MAX_LEN} characters, no NUL characters")]
        )


def _request_owner(caller: Caller) -> str:
    """Whose request_id namespace a request is in: its user, or the in-process system."""
    return str(caller.actor_id) if caller.actor_id is not None else "system"


def services(store: UnitOfWork, clock: Callable[[], datetime] = utc_now) -> dict[str, EntityService]:
    """One EntityService per entity kind."""
    return {name: EntityService(store, kind, clock) for name, kind in KINDS.items()}


def revision_entity(kind: EntityKind, revision: Revision) -> Versioned:
    """The entity as it was in a revision."""
    return from_json(kind.cls, revision.snapshot)
