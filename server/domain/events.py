"""Tool events an MES reacts to (issue 13), read from change records: a change's snapshot compared with the
entity's previous one. The same on every store (edge or central) whoever wrote the change, because it needs
nothing but the change log.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class EventType(enum.StrEnum):
    USAGE_OPENED = "USAGE_OPENED"
    USAGE_CLOSED = "USAGE_CLOSED"
    MEASURED = "MEASURED"
    PREWARNING_REACHED = "PREWARNING_REACHED"
    LIFE_LIMIT_REACHED = "LIFE_LIMIT_REACHED"
    STATUS_CHANGED = "STATUS_CHANGED"
    TOOL_LIFE_RESET = "TOOL_LIFE_RESET"


@dataclass(frozen=True, slots=True)
class ToolEvent:
    type: EventType
    tool_instance_id: str
    machine_id: str = ""
    from_status: str = ""
    to_status: str = ""
    reason: str = ""
    counters: tuple[str, ...] = field(default_factory=tuple)


# Which kinds' changes need the entity's previous snapshot to tell their events.
NEEDS_BEFORE = frozenset({"tool_usage", "tool_instance"})


def tool_events(
    entity_type: str, operation: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]
) -> list[ToolEvent]:
    """The events of one change. `operation` is CREATE, UPDATE or DELETE; `before` the previous snapshot (None
    when there is none kept, or for a CREATE)."""
    if operation == "DELETE":
        return []
    if entity_type == "tool_usage":
        return _usage(operation, before, after)
    if entity_type == "tool_measurement" and operation == "CREATE":
        return [ToolEvent(EventType.MEASURED, str(after.get("tool_instance_id") or ""))]
    if entity_type == "tool_instance" and operation == "UPDATE" and before is not None:
        return _instance(before, after)
    return []


def _usage(operation: str, before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> list[ToolEvent]:
    instance, machine = str(after.get("tool_instance_id") or ""), str(after.get("machine_id") or "")
    out = []
    if operation == "CREATE":
        out.append(ToolEvent(EventType.USAGE_OPENED, instance, machine))
    was_open = operation == "CREATE" or (before is not None and before.get("end_time") is None)
    if was_open and after.get("end_time") is not None:
        out.append(ToolEvent(EventType.USAGE_CLOSED, instance, machine))
    return out


def _instance(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[ToolEvent]:
    instance = str(after.get("id") or "")
    out = []
    if before.get("status") != after.get("status"):
        out.append(
            ToolEvent(
                EventType.STATUS_CHANGED,
                instance,
                from_status=str(before.get("status") or ""),
                to_status=str(after.get("status") or ""),
                reason=str(after.get("status_reason") or ""),
            )
        )
    old, new = _state(before), _state(after)
    for key, kind in (("prewarned_at", EventType.PREWARNING_REACHED), ("reached_at", EventType.LIFE_LIMIT_REACHED)):
        added = sorted(set(_marks(new, key)) - set(_marks(old, key)))
        if added:
            out.append(ToolEvent(kind, instance, counters=tuple(added)))
    if new.get("reset_at") and new.get("reset_at") != old.get("reset_at"):
        cleared = sorted(set(_marks(old, "used")) - set(_marks(new, "used")))
        out.append(
            ToolEvent(
                EventType.TOOL_LIFE_RESET, instance, reason=str(new.get("reset_reason") or ""), counters=tuple(cleared)
            )
        )
    return out


def _state(snapshot: Mapping[str, Any]) -> Mapping[str, Any]:
    state = snapshot.get("tool_life_state")
    return state if isinstance(state, Mapping) else {}


def _marks(state: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    marks = state.get(key)
    return marks if isinstance(marks, Mapping) else {}


def instance_of(entity_type: str, snapshot: Mapping[str, Any]) -> str:
    """The tool instance a change is about ('' when none): the instance itself, or the one a usage, preset or
    measurement belongs to."""
    if entity_type == "tool_instance":
        return str(snapshot.get("id") or "")
    if entity_type in ("tool_usage", "tool_preset", "tool_measurement"):
        return str(snapshot.get("tool_instance_id") or "")
    return ""
