"""Usage recorded by the collector: tracker events become ToolUsage rows, written with the tracker's state in
one transaction, so a crash or restart never doubles or drops a usage.

The T number is mapped to a tool instance through the machine's ToolPreset: the preset whose `machine_id` is
the machine's and whose `parameters.tool_number` is the T number (README "Usage recording"). A T number with
no such preset is kept in `collector_unmatched` and attached as soon as a matching preset is written.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from server.domain.collector import MachineStatus, UnmatchedTool, UsageClosed, UsageEvent, UsageOpened
from server.domain.entities import ToolPreset, ToolUsage, Versioned
from server.domain.errors import AlreadyExists, FieldViolation
from server.domain.registry import EntityKind
from server.store.repository import Store, Transaction
from server.usecases.entities import Caller, EntityService

MAX_PROGRAMS = 100
# Stays older than this are not attached automatically to a newly written preset: the T number may have
# meant another tool back then. They stay visible as unmatched.
ATTACH_WINDOW = timedelta(days=7)


def tool_number_of(preset: ToolPreset) -> int | None:
    value = preset.parameters.get("tool_number")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


async def instance_for(tx: Transaction, machine_id: str, tool_number: int) -> uuid.UUID | None:
    for preset in await tx.presets_on_machine(machine_id):
        if isinstance(preset, ToolPreset) and tool_number_of(preset) == tool_number:
            return preset.tool_instance_id
    return None


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out = dict(metrics)
    if len(out.get("programs", [])) > MAX_PROGRAMS:
        out["programs"] = out["programs"][:MAX_PROGRAMS]
    return out


class UsageRecorder:
    """Applies a machine's usage events and saves its tracker state, atomically."""

    def __init__(self, store: Store, usages: EntityService, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.usages = usages
        self._clock = clock

    async def load_state(self, machine_id: str) -> dict[str, Any] | None:
        async with self.store.read() as tx:
            return await tx.collector_state(machine_id)

    async def apply(
        self, machine_id: str, events: Sequence[UsageEvent], state: dict[str, Any], *, operator: str = ""
    ) -> list[Versioned]:
        """Write the events' usages and the new tracker state in one transaction; returns the usages written."""
        caller = Caller(peer=f"collector:{machine_id}")
        written: list[Versioned] = []
        async with self.store.write() as tx:
            for event in events:
                if isinstance(event, UsageOpened):
                    usage = await self._open(tx, machine_id, event, operator, caller)
                else:
                    usage = await self._close(tx, machine_id, event, operator, caller)
                if usage is not None:
                    written.append(usage)
            await tx.save_collector_state(machine_id, state, self._clock())
        return written

    async def _open(
        self, tx: Transaction, machine_id: str, event: UsageOpened, operator: str, caller: Caller
    ) -> Versioned | None:
        if await tx.get(self.usages.kind, event.usage_id) is not None:
            return None  # already recorded (a replay after a crash)
        metrics: dict[str, Any] = {"source": "COLLECTOR", "tool_number": event.tool_number}
        if event.interrupted:
            metrics["interrupted"] = True
        instance_id = await instance_for(tx, machine_id, event.tool_number)
        if instance_id is None:
            await tx.upsert_unmatched(
                {
                    "id": event.usage_id,
                    "machine_id": machine_id,
                    "tool_number": event.tool_number,
                    "start_time": event.start,
                    "end_time": None,
                    "program_name": event.program[:200],
                    "usage_metrics": metrics,
                    "created_at": self._clock(),
                }
            )
            return None
        values = {
            "tool_instance_id": instance_id,
            "start_time": event.start,
            "machine_id": machine_id,
            "program_name": event.program[:200],
            "operator": operator[:200],
            "usage_metrics": metrics,
        }
        return await self.usages.create_in(tx, values, entity_id=event.usage_id, caller=caller)

    async def _close(
        self, tx: Transaction, machine_id: str, event: UsageClosed, operator: str, caller: Caller
    ) -> Versioned | None:
        metrics = _metrics(event.metrics)
        usage = await tx.get(self.usages.kind, event.usage_id)
        if isinstance(usage, ToolUsage):
            if usage.end_time is not None:
                return None  # already closed (a replay after a crash)
            values = {"end_time": event.end, "usage_metrics": {**usage.usage_metrics, **metrics}}
            return await self.usages.update_in(tx, usage.id, 0, values, caller=caller)
        row = {
            "id": event.usage_id,
            "machine_id": machine_id,
            "tool_number": event.tool_number,
            "start_time": event.start,
            "end_time": event.end,
            "program_name": event.program[:200],
            "usage_metrics": metrics,
            "created_at": self._clock(),
        }
        instance_id = await instance_for(tx, machine_id, event.tool_number)
        if instance_id is None:
            await tx.upsert_unmatched(row)
            return None
        await tx.delete_unmatched(event.usage_id)
        return await self._create_closed(tx, row, instance_id, operator, caller)

    async def _create_closed(
        self, tx: Transaction, row: dict[str, Any], instance_id: uuid.UUID, operator: str, caller: Caller
    ) -> Versioned:
        values = {
            "tool_instance_id": instance_id,
            "start_time": row["start_time"],
            "end_time": row["end_time"],
            "machine_id": row["machine_id"],
            "program_name": row["program_name"],
            "operator": operator[:200],
            "usage_metrics": {**row["usage_metrics"], "x-attached_late": True}
            if row.get("late")
            else row["usage_metrics"],
        }
        return await self.usages.create_in(tx, values, entity_id=row["id"], caller=caller)

    async def attach_unmatched(self, tx: Transaction, preset: ToolPreset, caller: Caller) -> int:
        """A preset was written: turn the finished stays of its T number on its machine into usages."""
        number = tool_number_of(preset)
        if number is None or preset.tool_instance_id is None:
            return 0
        attached = 0
        oldest = self._clock() - ATTACH_WINDOW
        for row in await tx.unmatched(machine_id=preset.machine_id, tool_number=number):
            if row["end_time"] is None:
                continue  # still in the spindle: the close will find the preset
            if row["end_time"] < oldest:
                continue  # too old to be this tool for sure: it stays listed as unmatched for an operator
            await tx.delete_unmatched(row["id"])
            await self._create_closed(tx, {**row, "late": True}, preset.tool_instance_id, "", caller)
            attached += 1
        return attached

    async def statuses(self, live: dict[str, MachineStatus]) -> list[MachineStatus]:
        """Every machine the collector knows (live or from saved state), with its unmatched T numbers."""
        async with self.store.read() as tx:
            rows = await tx.unmatched()
        unmatched: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for row in rows:
            unmatched.setdefault(row["machine_id"], {}).setdefault(row["tool_number"], []).append(row)
        out = []
        for machine_id in sorted(set(live) | set(unmatched)):
            status = live.get(machine_id, MachineStatus(machine_id))
            tools = [
                UnmatchedTool(
                    tool_number=number,
                    intervals=len(stays),
                    first_seen=min(r["start_time"] for r in stays),
                    last_seen=max(r["end_time"] or r["start_time"] for r in stays),
                )
                for number, stays in sorted(unmatched.get(machine_id, {}).items())
            ]
            out.append(replace(status, unmatched=tools))
        return out


class PresetService(EntityService):
    """ToolPresets: one T number per machine, and writing a preset attaches the usages waiting for it."""

    def __init__(self, store: Store, kind: EntityKind, clock: Callable[[], datetime], recorder: UsageRecorder) -> None:
        super().__init__(store, kind, clock)
        self._recorder = recorder

    async def _check_unique(self, tx: Transaction, entity: Versioned) -> None:
        assert isinstance(entity, ToolPreset)
        number = tool_number_of(entity)
        if number is None:
            return
        for other in await tx.presets_on_machine(entity.machine_id):
            if other.id != entity.id and isinstance(other, ToolPreset) and tool_number_of(other) == number:
                raise AlreadyExists(
                    f"T{number} on {entity.machine_id} is already preset {other.id} ({other.name!r}); "
                    "a machine cannot have two tools under one T number",
                    reason="TOOL_NUMBER_TAKEN",
                    violations=[FieldViolation("parameters.tool_number", "already used on this machine")],
                    metadata={"existing_id": str(other.id)},
                )

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        assert isinstance(after, ToolPreset)
        await self._recorder.attach_unmatched(tx, after, Caller(peer=caller.peer or "preset"))
