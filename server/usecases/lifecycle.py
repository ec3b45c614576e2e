"""The status lifecycle of tool instances at work (server/domain/lifecycle.py has the table): callers' status
changes are checked against it, and usages move their instance IN_USE and back, for every writer of usages —
the API and the collector (whose batches go through `EntityService.write_many_in`) alike."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from datetime import datetime

from server.domain import lifecycle
from server.domain.entities import ToolInstance, ToolUsage, Versioned
from server.domain.errors import FailedPrecondition, FieldViolation
from server.domain.registry import KINDS, EntityKind
from server.usecases.entities import Caller, EntityService
from server.usecases.ports import Transaction, UnitOfWork

# Where a usage records the status its tool had when the usage opened, if it was not fit for use.
FLAG = "x-instance_status"


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
        reason = entity.status_reason if "status_reason" in fields else ""
        lifecycle.check(current.status, entity.status, lifecycle.By.OPERATOR, reason)


class UsageService(EntityService):
    """ToolUsages: opening one makes its instance IN_USE, closing its last open one makes it AVAILABLE again;
    a usage opened on a tool in MAINTENANCE or RETIRED is recorded and flagged, the status stays."""

    def __init__(
        self, store: UnitOfWork, kind: EntityKind, clock: Callable[[], datetime], instances: EntityService
    ) -> None:
        super().__init__(store, kind, clock)
        self._instances = instances

    async def _prepare(self, tx: Transaction, entity: Versioned) -> Versioned:
        assert isinstance(entity, ToolUsage)
        new = entity.version == 1
        if entity.tool_instance_id is None or not (new or entity.end_time is None):
            return entity
        instance = await tx.get(KINDS["tool_instance"], entity.tool_instance_id)
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
        assert isinstance(after, ToolUsage)
        instances = {after.tool_instance_id}
        if isinstance(before, ToolUsage):
            instances.add(before.tool_instance_id)  # a usage moved to another instance leaves the first
        for instance_id in instances:
            if instance_id is not None:
                await self._follow(tx, instance_id, after, caller)

    async def _follow(self, tx: Transaction, instance_id: uuid.UUID, usage: ToolUsage, caller: Caller) -> None:
        instance = await tx.get(KINDS["tool_instance"], instance_id)
        if not isinstance(instance, ToolInstance):
            return
        open_usages = (await tx.open_usage_counts([instance_id])).get(instance_id, 0)
        target = lifecycle.after_usages(instance.status, open_usages)
        if target == instance.status:
            return
        where = f" on {usage.machine_id}" if usage.machine_id else ""
        reason = (
            f"usage {usage.id} opened{where}"
            if target == lifecycle.IN_USE
            else f"usage {usage.id} closed{where}; no usage of it is open"
        )
        await self._instances.update_in(
            tx,
            instance_id,
            0,
            {"status": target, "status_reason": reason},
            # The product's own change (trusted, in-process): the caller who closed the usage may not be allowed
            # to edit instances; the reason names the usage, and the audit entry has it.
            caller=Caller(peer=caller.peer or "usage", system=True),
        )


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
