"""The table of entity kinds: one row per entity drives the generic use cases, store and API."""

from __future__ import annotations

from dataclasses import dataclass

from server.domain.entities import (
    ToolAssembly,
    ToolInstance,
    ToolItem,
    ToolMeasurement,
    ToolPreset,
    ToolSet,
    ToolUsage,
    User,
    Versioned,
)
from server.domain.schema import fields_of


@dataclass(frozen=True, slots=True)
class EntityKind:
    name: str  # registry and change-log name, e.g. "tool_item"
    label: str  # the proto message name, e.g. "ToolItem"
    cls: type[Versioned]
    filterable: frozenset[str]
    orderable: frozenset[str]
    default_order: str


_TIMES = frozenset({"created_at", "updated_at"})
_COMMON = _TIMES | {"id", "owner_id", "tags"}

KINDS: dict[str, EntityKind] = {
    k.name: k
    for k in (
        EntityKind(
            "user",
            "User",
            User,
            filterable=_COMMON - {"tags"} | {"email", "role", "is_active"},
            orderable=_TIMES | {"email", "display_name"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_item",
            "ToolItem",
            ToolItem,
            filterable=_COMMON | {"name", "tool_type", "manufacturer", "part_number"},
            orderable=_TIMES | {"name", "manufacturer", "part_number", "tool_type"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_assembly",
            "ToolAssembly",
            ToolAssembly,
            filterable=_COMMON | {"name", "holder_id", "cutter_id"},
            orderable=_TIMES | {"name"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_instance",
            "ToolInstance",
            ToolInstance,
            filterable=_COMMON
            | {
                "serial_number",
                "status",
                "tool_item_id",
                "tool_assembly_id",
                "purchase_date",
                "last_calibration",
                "calibration_due",
            },
            orderable=_TIMES | {"serial_number", "status", "calibration_due", "last_calibration", "purchase_date"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_preset",
            "ToolPreset",
            ToolPreset,
            filterable=_COMMON | {"name", "tool_instance_id", "machine_id", "is_default"},
            orderable=_TIMES | {"name", "machine_id"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_usage",
            "ToolUsage",
            ToolUsage,
            filterable=_COMMON - {"tags"}
            | {"tool_instance_id", "machine_id", "program_name", "operator", "start_time", "end_time"},
            orderable=_TIMES | {"start_time", "end_time", "machine_id", "program_name", "operator"},
            default_order="start_time",
        ),
        EntityKind(
            "tool_measurement",
            "ToolMeasurement",
            ToolMeasurement,
            filterable=_COMMON - {"tags"} | {"tool_instance_id", "measurement_id", "station_id", "measured_at"},
            orderable=_TIMES | {"measured_at"},
            default_order="created_at",
        ),
        EntityKind(
            "tool_set",
            "ToolSet",
            ToolSet,
            filterable=_COMMON | {"name", "is_global", "tool_instance_ids", "tool_preset_ids"},
            orderable=_TIMES | {"name"},
            default_order="created_at",
        ),
    )
}

KIND_BY_CLASS: dict[type[Versioned], EntityKind] = {k.cls: k for k in KINDS.values()}


def references_to(target: str) -> list[tuple[EntityKind, str]]:
    """Every (kind, field) that points at entities of `target`: what blocks deleting one."""
    out: list[tuple[EntityKind, str]] = []
    for kind in KINDS.values():
        for f in fields_of(kind.cls):
            if f.ref == target and f.name != "owner_id":
                out.append((kind, f.name))
    return out
