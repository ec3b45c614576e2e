"""Enforces the rulebook (server/domain/rulebook.py) for a batch of entities about to be written, with a few
queries for the whole batch. Every writer calls it: API create/update, the collector's batch writes, central's
push apply, the edge's pull apply and the resync — so a rule holds, and is refused with the same reason,
whoever writes.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence, Set
from operator import attrgetter

from server.domain.entities import ToolAssembly, ToolInstance, Versioned
from server.domain.errors import AlreadyExists, FailedPrecondition, FieldViolation, InvalidArgument, SmoothError
from server.domain.registry import KIND_BY_CLASS, KINDS
from server.domain.rulebook import RULES, Role, referrers
from server.domain.schema import fields_of
from server.usecases.ports import Entities
from server.validation.rules import check_entity, unchanged


async def check(
    tx: Entities,
    entities: Sequence[Versioned],
    *,
    new_ids: Set[uuid.UUID] = frozenset(),
    stored: Mapping[uuid.UUID, Versioned] | None = None,
    valid: Set[uuid.UUID] = frozenset(),
) -> dict[uuid.UUID, SmoothError]:
    """The first rule each entity breaks, by id (absent: it may be written). `entities` are the states about to
    be written, of any kinds, later ones replacing earlier ones of the same id: references and keys resolve
    against them first, then against the store. `new_ids`: entities the caller knows the store has never held
    (an id it just generated), which therefore nothing in the store can reference yet. `stored`: the states the
    store holds now (as read in this transaction) of entities being updated: a reference or a unique key an update
    leaves as it was is not looked up again (what the store holds met the rules when it was written, and a
    referenced entity can neither go nor change its role while referenced). `valid`: entities whose very states the
    caller has already put through `check_entity` without a violation (central's bulk apply validates each change
    as it parses the push, before the write lock): their field rules are not run again. The tool type an instance's
    measurements are checked with does not change that outcome: it comes from an item the rules accepted."""
    batch: dict[uuid.UUID, Versioned] = {}
    for entity in entities:
        batch[entity.id] = entity
    stored = stored or {}
    errors: dict[uuid.UUID, SmoothError] = {}
    await _field_rules(tx, batch, errors, valid, stored)
    await _references(tx, batch, errors, stored)
    await _roles_in_use(tx, batch, errors, new_ids)
    await _unique_keys(tx, batch, errors, stored)
    return errors


async def enforce(tx: Entities, entity: Versioned, *, new: bool = False, stored: Versioned | None = None) -> None:
    """`check` for one entity: raises the first rule it breaks. `new`: its id was just generated; `stored`: the
    state it updates, as read in this transaction."""
    errors = await check(
        tx, [entity], new_ids={entity.id} if new else frozenset(), stored={entity.id: stored} if stored else None
    )
    if errors:
        raise errors[entity.id]


def _kept(entity: Versioned, stored: Mapping[uuid.UUID, Versioned], value: Callable[[Versioned], object]) -> bool:
    """Whether an update leaves this value (a field, a unique key) as the store holds it."""
    before = stored.get(entity.id)
    return before is not None and type(before) is type(entity) and value(before) == value(entity)


async def _lookup(
    tx: Entities, batch: Mapping[uuid.UUID, Versioned], kind_name: str, ids: set[uuid.UUID]
) -> dict[uuid.UUID, Versioned]:
    """Entities of one kind by id: the batch's states first, the store's for the rest (one query)."""
    cls = KINDS[kind_name].cls
    found = {i: batch[i] for i in ids if i in batch and type(batch[i]) is cls}
    rest = [i for i in ids if i not in found]
    if rest:
        found.update(await tx.get_many(KINDS[kind_name], sorted(rest)))
    return found


async def _field_rules(
    tx: Entities,
    batch: dict[uuid.UUID, Versioned],
    errors: dict[uuid.UUID, SmoothError],
    valid: Set[uuid.UUID],
    stored: Mapping[uuid.UUID, Versioned],
) -> None:
    tool_types = await _tool_types(tx, batch, valid, stored)
    for entity in batch.values():
        if entity.id in valid:
            violations: list[FieldViolation] = []
        else:
            violations = check_entity(entity, tool_type=tool_types.get(entity.id), before=stored.get(entity.id))
        for rule in RULES[KIND_BY_CLASS[type(entity)].name].checks:
            violations.extend(rule(entity))
        if violations:
            errors[entity.id] = InvalidArgument.of(violations)


async def _tool_types(
    tx: Entities, batch: Mapping[uuid.UUID, Versioned], valid: Set[uuid.UUID], stored: Mapping[uuid.UUID, Versioned]
) -> dict[uuid.UUID, str | None]:
    """The tool type that selects each instance's measurement schema: its item's, else its assembly cutter's
    (not looked up where the measurements are not checked: instances in `valid`, and updates that leave them)."""
    instances = [
        e
        for e in batch.values()
        if isinstance(e, ToolInstance) and e.id not in valid and not unchanged(e, stored.get(e.id), "measurements")
    ]
    if not instances:
        return {}
    assemblies = await _lookup(
        tx, batch, "tool_assembly", {i.tool_assembly_id for i in instances if i.tool_assembly_id}
    )
    item_of: dict[uuid.UUID, uuid.UUID | None] = {}
    for inst in instances:
        item_id = inst.tool_item_id
        if item_id is None and inst.tool_assembly_id is not None:
            assembly = assemblies.get(inst.tool_assembly_id)
            item_id = assembly.cutter_id if isinstance(assembly, ToolAssembly) else None
        item_of[inst.id] = item_id
    items = await _lookup(tx, batch, "tool_item", {i for i in item_of.values() if i is not None})
    out: dict[uuid.UUID, str | None] = {}
    for inst_id, item_id in item_of.items():
        tool_type = getattr(items.get(item_id), "tool_type", None) if item_id is not None else None
        out[inst_id] = None if tool_type is None else str(tool_type)
    return out


async def _references(
    tx: Entities,
    batch: dict[uuid.UUID, Versioned],
    errors: dict[uuid.UUID, SmoothError],
    stored: Mapping[uuid.UUID, Versioned],
) -> None:
    """Every referenced entity exists (in the batch or the store) and plays the role its field asks for."""
    wanted: dict[str, set[uuid.UUID]] = {}
    for entity in batch.values():
        for f in fields_of(type(entity)):
            if f.ref is None or _kept(entity, stored, attrgetter(f.name)):
                continue
            value = getattr(entity, f.name)
            ids = value if f.kind == "members" else ([value] if value is not None else [])
            wanted.setdefault(f.ref, set()).update(ids)
    found = {name: await _lookup(tx, batch, name, ids) for name, ids in wanted.items() if ids}
    for entity in batch.values():
        if entity.id in errors:
            continue
        rules = RULES[KIND_BY_CLASS[type(entity)].name]
        problems: list[FieldViolation] = []
        for f in fields_of(type(entity)):
            if f.ref is None or _kept(entity, stored, attrgetter(f.name)):
                continue
            value = getattr(entity, f.name)
            ids = value if f.kind == "members" else ([value] if value is not None else [])
            targets = found.get(f.ref, {})
            for i in ids:
                target = targets.get(i)
                if target is None:
                    problems.append(FieldViolation(f.name, f"{KINDS[f.ref].label} {i} does not exist"))
                    continue
                for role in rules.roles:
                    if role.field == f.name and not role.fits(target):
                        problems.append(
                            FieldViolation(f.name, f"must be {role.needs} ({KINDS[f.ref].label} {i} is not)")
                        )
        if problems:
            errors[entity.id] = FailedPrecondition(
                "referenced entities are missing or unsuitable: "
                + "; ".join(f"{v.field}: {v.description}" for v in problems),
                reason="BAD_REFERENCE",
                violations=problems,
            )


async def _roles_in_use(
    tx: Entities, batch: dict[uuid.UUID, Versioned], errors: dict[uuid.UUID, SmoothError], new_ids: Set[uuid.UUID]
) -> None:
    """An entity that another references in a role must keep fitting it (a HOLDER item held by an assembly
    cannot become a drill). One query per role for the whole batch; none for entities nothing can reference yet
    (new ones, and no other entity of the batch references them)."""
    misfits: dict[tuple[str, Role], list[Versioned]] = {}
    referenced_in_batch = _referenced(batch.values()) if new_ids else set()
    for entity in batch.values():
        if entity.id in errors or (entity.id in new_ids and entity.id not in referenced_in_batch):
            continue
        for ref_kind, role in referrers(KIND_BY_CLASS[type(entity)].name):
            if not role.fits(entity):
                misfits.setdefault((ref_kind, role), []).append(entity)
    for (ref_kind, role), entities in misfits.items():
        ref_cls = KINDS[ref_kind].cls
        users: dict[uuid.UUID, Versioned] = {}  # referenced id -> one entity that references it in the role
        for stored in await tx.find_in(KINDS[ref_kind], role.field, sorted(e.id for e in entities)):
            if stored.id not in batch:  # the batch's own state of a referrer counts instead
                users.setdefault(getattr(stored, role.field), stored)
        for e in batch.values():
            if type(e) is ref_cls and getattr(e, role.field) is not None:
                users.setdefault(getattr(e, role.field), e)
        for entity in entities:
            user = users.get(entity.id)
            if user is None or entity.id in errors:
                continue
            kind = KIND_BY_CLASS[type(entity)]
            errors[entity.id] = FailedPrecondition(
                f"{kind.label} {entity.id} is the {role.field} of {KINDS[ref_kind].label} {user.id}, "
                f"which needs {role.needs}: change that {KINDS[ref_kind].label} first",
                reason="ROLE_IN_USE",
                violations=[FieldViolation("tool_type", f"must stay {role.needs} while referenced as {role.field}")],
                metadata={"referenced_by": str(user.id)},
            )


def _referenced(entities: Iterable[Versioned]) -> set[uuid.UUID]:
    """Every id these entities reference (member lists included)."""
    out: set[uuid.UUID] = set()
    for entity in entities:
        for f in fields_of(type(entity)):
            if f.ref is None:
                continue
            value = getattr(entity, f.name)
            if f.kind == "members":
                out.update(value)
            elif value is not None:
                out.add(value)
    return out


async def _unique_keys(
    tx: Entities,
    batch: dict[uuid.UUID, Versioned],
    errors: dict[uuid.UUID, SmoothError],
    stored: Mapping[uuid.UUID, Versioned],
) -> None:
    by_kind: dict[str, list[Versioned]] = {}
    for entity in batch.values():
        by_kind.setdefault(KIND_BY_CLASS[type(entity)].name, []).append(entity)
    for name, members in by_kind.items():
        kind = KINDS[name]
        for unique in RULES[name].unique:
            keyed = [(e, unique.key(e)) for e in members if e.id not in errors and not _kept(e, stored, unique.key)]
            keyed = [(e, k) for e, k in keyed if k is not None]
            if not keyed:
                continue
            holders: dict[Hashable, uuid.UUID] = {}
            columns = sorted({getattr(e, unique.column) for e, _ in keyed})
            for other in await tx.find_in(kind, unique.column, columns):
                current = batch.get(other.id, other)  # the batch may be changing it
                key = unique.key(current)
                if key is not None:
                    holders.setdefault(key, other.id)
            for entity, key in keyed:
                holder = holders.setdefault(key, entity.id)
                if holder != entity.id:
                    errors[entity.id] = AlreadyExists(
                        f"{unique.describe(entity)} is already used by {kind.label} {holder}",
                        reason=unique.reason,
                        violations=[FieldViolation(unique.field, unique.detail)],
                        metadata={"existing_id": str(holder)},
                    )
