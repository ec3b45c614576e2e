"""The status lifecycle and the tool life of instances at work (server/domain/lifecycle.py has the table,
server/domain/toollife.py the counting): callers' status changes are checked against the table; usages move
their instance IN_USE and back and, as they close, add to its tool life, which warns and then takes the tool
out of service — for every writer of usages, the API and the collector (whose batches go through
`EntityService.write_many_in`) alike."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from server.domain import lifecycle, toollife
from server.domain.entities import ToolAssembly, ToolInstance, ToolInstanceStatus, ToolItem, ToolUsage, Versioned
from server.domain.errors import FailedPrecondition, FieldViolation, InvalidArgument
from server.domain.registry import KINDS, EntityKind
from server.usecases.entities import BatchWrite, Caller, EntityService, _check_request_id
from server.usecases.ports import Transaction, UnitOfWork

FLAG = lifecycle.USAGE_FLAG


class InstanceService(EntityService):
    """ToolInstances: a caller changes the status only along the lifecycle's operator transitions, with a reason."""

    def _check_change(self, current: Versioned | None, entity: Versioned, fields: set[str]) -> None:
        assert isinstance(entity, ToolInstance)
        if current is None:
            if entity.status not in lifecycle.INITIAL:
                raise FailedPrecondition(
                    f"a new tool instance starts AVAILABLE or MAINTENANCE, not {entity.status.value}: "
                    "usages make it IN_USE, and RETIRED is for tools that existed",
                    reason="STATUS_TRANSITION_REFUSED",
                    violations=[FieldViolation("status", "must be AVAILABLE or MAINTENANCE at creation")],
                )
            return
        assert isinstance(current, ToolInstance)
        if "tool_life_state" in fields and entity.tool_life_state != current.tool_life_state:
            raise FailedPrecondition(
                "tool_life_state is kept by the server as usages close; start counters again with ResetToolLife",
                reason="OUTPUT_ONLY",
                violations=[FieldViolation("tool_life_state", "output only")],
            )
        reason = entity.status_reason if "status_reason" in fields else ""
        lifecycle.check(current.status, entity.status, lifecycle.By.OPERATOR, reason)

    async def _prepare(
        self, tx: Transaction, entity: Versioned, stored: Versioned | None, reads: Mapping[uuid.UUID, Versioned]
    ) -> Versioned:
        """A new instance, or one whose own limits changed, starts counting under its limits now (a new one shows
        its full life at once; a lowered limit may warn or be reached at once). The state stored is the one the
        caller read (a batch of the collector's instance updates reads none of them again, issue 11)."""
        assert isinstance(entity, ToolInstance)
        if isinstance(stored, ToolInstance) and stored.tool_life == entity.tool_life:
            return entity
        changes: dict[str, Any] = await relimited(tx, entity, self._clock())
        return dataclasses.replace(entity, **changes) if changes else entity

    async def follow_limits(self, tx: Transaction, instance_ids: list[uuid.UUID], peer: str) -> None:
        """Limits of a tool item or assembly changed: its instances count under the new ones from now."""
        for instance in (await tx.get_many(self.kind, instance_ids)).values():
            assert isinstance(instance, ToolInstance)
            changes = await relimited(tx, instance, self._clock())
            if changes:
                await self.update_in(tx, instance.id, 0, changes, caller=Caller(peer=peer, system=True))

    async def reset_tool_life(
        self, entity_id: uuid.UUID, version: int, reason: str, counters: list[str], *, caller: Caller
    ) -> Versioned:
        """Start the named counters (all when none) from zero again: its own call, audited as such."""
        _check_request_id(caller.request_id)
        problems = [
            FieldViolation("counters", f"{c!r} is not a tool life counter; use {', '.join(toollife.COUNTERS)}")
            for c in counters
            if c not in toollife.COUNTERS
        ]
        if not reason.strip():
            problems.append(FieldViolation("reason", "required: why the counters start again (e.g. reground)"))
        if version <= 0:
            problems.append(FieldViolation("version", "required: send the version you last read"))
        if problems:
            raise InvalidArgument.of(problems)
        async with self.store.write() as tx:
            current = await self._require(tx, entity_id, caller)
            assert isinstance(current, ToolInstance)
            limits = await effective_limits(tx, current)
            state = toollife.reset(current.tool_life_state, limits, counters, _iso(self._clock()), reason.strip())
            return await self.update_in(
                tx,
                entity_id,
                version,
                {"tool_life_state": state},
                caller=dataclasses.replace(caller, system=True),
                method="reset_tool_life",
            )


async def effective_limits(tx: Transaction, instance: ToolInstance) -> dict[str, toollife.Limit]:
    """The limits in force for an instance: its item's (or its assembly cutter's), the assembly's, its own."""
    return (await limits_of(tx, [instance]))[instance.id]


async def limits_of(tx: Transaction, instances: Sequence[ToolInstance]) -> dict[uuid.UUID, dict[str, toollife.Limit]]:
    """The limits in force for each instance (`effective_limits`), with two reads for all of them."""
    assemblies = await tx.get_many(
        KINDS["tool_assembly"], sorted({i.tool_assembly_id for i in instances if i.tool_assembly_id})
    )
    item_ids = set()
    for i in instances:
        assembly = assemblies.get(i.tool_assembly_id) if i.tool_assembly_id else None
        item_id = i.tool_item_id or (assembly.cutter_id if isinstance(assembly, ToolAssembly) else None)
        if item_id is not None:
            item_ids.add(item_id)
    items = await tx.get_many(KINDS["tool_item"], sorted(item_ids))
    out = {}
    for i in instances:
        assembly = assemblies.get(i.tool_assembly_id) if i.tool_assembly_id else None
        item_id = i.tool_item_id or (assembly.cutter_id if isinstance(assembly, ToolAssembly) else None)
        item = items.get(item_id) if item_id else None
        out[i.id] = toollife.effective(
            item.tool_life if isinstance(item, ToolItem) else {},
            assembly.tool_life if isinstance(assembly, ToolAssembly) else {},
            i.tool_life,
        )
    return out


async def relimited(tx: Transaction, instance: ToolInstance, at: datetime) -> dict[str, object]:
    """The changes to an instance when its effective limits are (re)read: its tool_life_state under them and,
    when that reaches a limit, MAINTENANCE with the reason. Empty when nothing changes."""
    limits = await effective_limits(tx, instance)
    if not limits and not instance.tool_life_state.get("remaining"):
        return {}
    outcome = toollife.account(instance.tool_life_state, limits, {}, _iso(at))
    changes: dict[str, object] = {}
    if outcome.state != instance.tool_life_state:
        changes["tool_life_state"] = outcome.state
    if outcome.reached and lifecycle.allowed(instance.status, lifecycle.MAINTENANCE, lifecycle.By.TOOL_LIFE):
        changes["status"] = lifecycle.MAINTENANCE
        changes["status_reason"] = _reason(
            "tool life reached: " + toollife.describe(limits, outcome.state, outcome.reached) + " (limits changed)"
        )
    return changes


class LimitsService(EntityService):
    """ToolItems and ToolAssemblies: when their tool life limits change, their instances follow at once."""

    def __init__(
        self, store: UnitOfWork, kind: EntityKind, clock: Callable[[], datetime], instances: InstanceService
    ) -> None:
        super().__init__(store, kind, clock)
        self._instances = instances

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        assert isinstance(after, ToolItem | ToolAssembly)
        if before is None or getattr(before, "tool_life", None) == after.tool_life:
            return
        instances = KINDS["tool_instance"]
        if isinstance(after, ToolItem):
            found = await tx.find_in(instances, "tool_item_id", [after.id])
            assemblies = await tx.find_in(KINDS["tool_assembly"], "cutter_id", [after.id])
            if assemblies:
                found += await tx.find_in(instances, "tool_assembly_id", [a.id for a in assemblies])
        else:
            found = await tx.find_in(instances, "tool_assembly_id", [after.id])
        ids = sorted({i.id for i in found})
        await self._instances.follow_limits(tx, ids, caller.peer or f"{self.kind.name} limits")


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


class UsageService(EntityService):
    """ToolUsages: opening one makes its instance IN_USE, closing its last open one makes it AVAILABLE again;
    a usage opened on a tool in MAINTENANCE or RETIRED is recorded and flagged, the status stays."""

    def __init__(
        self, store: UnitOfWork, kind: EntityKind, clock: Callable[[], datetime], instances: EntityService
    ) -> None:
        super().__init__(store, kind, clock)
        self._instances = instances

    async def _prefetch(self, tx: Transaction, writes: Sequence[BatchWrite]) -> Mapping[uuid.UUID, Versioned]:
        """The instances of the usages a batch opens (`_prepare` reads them)."""
        ids = {
            w.values.get("tool_instance_id", getattr(w.current, "tool_instance_id", None))
            for w in writes
            if w.values.get("end_time", getattr(w.current, "end_time", None)) is None
        }
        wanted = sorted(i for i in ids if isinstance(i, uuid.UUID))
        return await tx.get_many(KINDS["tool_instance"], wanted) if len(wanted) > 1 else {}

    async def _prepare(
        self, tx: Transaction, entity: Versioned, stored: Versioned | None, reads: Mapping[uuid.UUID, Versioned]
    ) -> Versioned:
        assert isinstance(entity, ToolUsage)
        new = entity.version == 1
        if entity.tool_instance_id is None or not (new or entity.end_time is None):
            return entity
        instance = reads.get(entity.tool_instance_id) or await tx.get(KINDS["tool_instance"], entity.tool_instance_id)
        if not isinstance(instance, ToolInstance):
            return entity  # the rulebook names the missing reference
        if (
            entity.end_time is None
            and FLAG not in entity.usage_metrics
            and instance.status in (lifecycle.MAINTENANCE, lifecycle.RETIRED)
        ):
            entity = dataclasses.replace(entity, usage_metrics={**entity.usage_metrics, FLAG: instance.status.value})
        if new and "before" not in entity.wear_measurements:
            entity = _with_wear_before(entity, instance)
        return entity

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        await self._after_write_many(tx, [(before, after, caller)], now)

    async def _after_write_many(
        self, tx: Transaction, steps: Sequence[tuple[Versioned | None, Versioned, Caller]], now: datetime
    ) -> None:
        """Each usage's instance after the writes: IN_USE or AVAILABLE by its open usages and, for a usage closed
        now, its tool life (a prewarning noted once, a reached limit puts it in MAINTENANCE). One read of the
        instances, their open usages and their limits for the whole batch, and one batch write of what changes,
        step after step in the usages' order (the collector writes hundreds of tool changes a batch: an instance
        read, counted and updated per usage was most of its cost, issue 11)."""
        follows: list[tuple[uuid.UUID, ToolUsage, Caller, bool]] = []
        for before, after, caller in steps:
            assert isinstance(after, ToolUsage)
            instances = [after.tool_instance_id]
            if isinstance(before, ToolUsage) and before.tool_instance_id != after.tool_instance_id:
                instances.append(before.tool_instance_id)  # a usage moved to another instance leaves the first
            # A usage counts towards tool life once: when it closes (or is recorded closed), never again after.
            closed_now = after.end_time is not None and (not isinstance(before, ToolUsage) or before.end_time is None)
            follows.extend((i, after, caller, closed_now) for i in instances if i is not None)
        if not follows:
            return
        ids = sorted({instance_id for instance_id, *_ in follows})
        stored = await tx.get_many(KINDS["tool_instance"], ids)
        open_usages = await tx.open_usage_counts(ids)
        counted = {i for i, usage, _, counts in follows if counts and usage.tool_instance_id == i}
        limits = await limits_of(tx, [e for i, e in stored.items() if i in counted and isinstance(e, ToolInstance)])
        state = dict(stored)  # each instance as the steps so far left it
        writes: list[BatchWrite] = []
        for instance_id, usage, caller, counts in follows:
            instance = state.get(instance_id)
            if not isinstance(instance, ToolInstance):
                continue
            changes = _followed(
                instance, usage, open_usages.get(instance_id, 0), limits.get(instance_id, {}) if counts else {}
            )
            if changes:
                # The product's own change (trusted, in-process): the caller who closed the usage may not be allowed
                # to edit instances; the reason names the usage, and the audit entry has it.
                system = Caller(peer=caller.peer or "usage", system=True)
                writes.append(BatchWrite(stored[instance_id], instance_id, changes, system))
                state[instance_id] = dataclasses.replace(instance, **changes)  # type: ignore[arg-type]
        if writes:
            await self._instances.write_many_in(tx, writes)


def _followed(
    instance: ToolInstance, usage: ToolUsage, open_usages: int, limits: dict[str, toollife.Limit]
) -> dict[str, object]:
    """What a usage's write changes on its instance: the status its open usages call for and, when the usage
    closed now (`limits` given: those in force), its tool life."""
    changes: dict[str, object] = {}
    where = f" on {usage.machine_id}" if usage.machine_id else ""
    target = lifecycle.after_usages(instance.status, open_usages)
    if target != instance.status:
        changes["status"] = target
        changes["status_reason"] = (
            f"usage {usage.id} opened{where}"
            if target == lifecycle.IN_USE
            else f"usage {usage.id} closed{where}; no usage of it is open"
        )
    # Counted while limits are in force (from the item, the assembly or the instance itself): a tool without
    # any costs no write per usage.
    if limits and usage.end_time is not None and usage.tool_instance_id == instance.id:
        outcome = toollife.account(
            instance.tool_life_state, limits, toollife.consumed(usage.usage_metrics), _iso(usage.end_time)
        )
        changes["tool_life_state"] = outcome.state
        status = changes.get("status", instance.status)
        assert isinstance(status, ToolInstanceStatus)
        if outcome.reached and lifecycle.allowed(status, lifecycle.MAINTENANCE, lifecycle.By.TOOL_LIFE):
            changes["status"] = lifecycle.MAINTENANCE
            changes["status_reason"] = _reason(
                "tool life reached: "
                + toollife.describe(limits, outcome.state, outcome.reached)
                + f" (usage {usage.id} closed{where})"
            )
    return changes


def _reason(text: str) -> str:
    return text if len(text) <= 500 else text[:497] + "..."


def _with_wear_before(usage: ToolUsage, instance: ToolInstance) -> ToolUsage:
    """A new usage's wear `before`: the instance's newest measurement, if it was taken before the usage opened
    (a measurement recorded later fills it too: server/usecases/measurements.py)."""
    latest = instance.measurements
    measured_at = latest.get("measured_at")
    if not isinstance(measured_at, str) or usage.start_time is None:
        return usage
    try:
        at = datetime.fromisoformat(measured_at.replace("Z", "+00:00"))
    except ValueError:
        return usage
    if at.tzinfo is None or at > usage.start_time:
        return usage
    symbols = {
        s: e["value"] for s, e in latest.items() if isinstance(e, dict) and isinstance(e.get("value"), int | float)
    }
    if not symbols:
        return usage
    wear = {**usage.wear_measurements, "before": symbols, "x-before_measured_at": measured_at}
    if isinstance(latest.get("measurement_id"), str) and latest["measurement_id"]:
        wear["x-before_measurement_id"] = latest["measurement_id"]
    return dataclasses.replace(usage, wear_measurements=wear)
