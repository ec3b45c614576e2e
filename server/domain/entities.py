"""The core entities of the data model (shared/seed/data-model.md) as plain typed objects.

Field metadata carries the per-field limits (`max_len`, `required`, `ref`) that validation, the store and
the API read: the data model's fields are declared here once.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

JsonObject = dict[str, Any]

# Limits shared by every entity (see README "Field limits").
TAG_MAX_LEN = 64
TAGS_MAX_COUNT = 50
JSON_MAX_BYTES = 64 * 1024


def text(max_len: int, *, required: bool = False) -> Any:
    """A string field: stored NOT NULL, '' when absent; `required` means non-blank."""
    return field(default="", metadata={"max_len": max_len, "required": required})


def ref(kind: str, *, required: bool = False) -> Any:
    """A foreign key to another entity kind (its registry name)."""
    return field(default=None, metadata={"ref": kind, "required": required})


def json_object() -> Any:
    return field(default_factory=dict, metadata={"json": True})


def tags() -> Any:
    return field(default_factory=list, metadata={"tags": True})


class ToolType(enum.StrEnum):
    DRILL = "DRILL"
    END_MILL = "END_MILL"
    BALL_END_MILL = "BALL_END_MILL"
    FACE_MILL = "FACE_MILL"
    REAMER = "REAMER"
    TAP = "TAP"
    THREAD_MILL = "THREAD_MILL"
    TURNING_INSERT = "TURNING_INSERT"
    BORING_BAR = "BORING_BAR"
    HOLDER = "HOLDER"
    OTHER = "OTHER"


class ToolInstanceStatus(enum.StrEnum):
    AVAILABLE = "AVAILABLE"
    IN_USE = "IN_USE"
    MAINTENANCE = "MAINTENANCE"
    RETIRED = "RETIRED"


class UserRole(enum.StrEnum):
    ADMIN = "ADMIN"
    OPERATOR = "OPERATOR"
    VIEWER = "VIEWER"


class ChangeOperation(enum.StrEnum):
    CREATE = "CREATE"
    UPDATE = "UPDATE"
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True, kw_only=True)
class Versioned:
    """What every versioned entity has: identity, owner, timestamps and the optimistic-lock version."""

    id: uuid.UUID
    owner_id: uuid.UUID | None = ref("user")
    created_at: datetime | None = None
    updated_at: datetime | None = None
    version: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class User(Versioned):
    email: str = text(254, required=True)
    display_name: str = text(200)
    role: UserRole = UserRole.VIEWER
    is_active: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolItem(Versioned):
    name: str = text(200, required=True)
    description: str = text(2000)
    manufacturer: str = text(200)
    part_number: str = text(100)
    tool_type: ToolType = field(default=ToolType.OTHER, metadata={"required": True})
    geometry: JsonObject = json_object()
    tags: list[str] = tags()
    # Days from a measurement until the tool is due again (0: the global default, 365).
    calibration_interval_days: int = 0
    # Tool life limits per counter (server/domain/toollife.py), inherited by its assemblies and instances.
    tool_life: JsonObject = json_object()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolAssembly(Versioned):
    name: str = text(200, required=True)
    description: str = text(2000)
    holder_id: uuid.UUID | None = ref("tool_item")
    cutter_id: uuid.UUID | None = ref("tool_item")
    assembly_data: JsonObject = json_object()
    tags: list[str] = tags()
    tool_life: JsonObject = json_object()  # overrides the cutter item's limits, per counter


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolInstance(Versioned):
    tool_item_id: uuid.UUID | None = ref("tool_item")
    tool_assembly_id: uuid.UUID | None = ref("tool_assembly")
    serial_number: str = text(100, required=True)
    status: ToolInstanceStatus = field(default=ToolInstanceStatus.AVAILABLE, metadata={"required": True})
    # Why the status is what it is (server/domain/lifecycle.py): every transition sets it.
    status_reason: str = text(500)
    measurements: JsonObject = json_object()
    purchase_date: date | None = None
    last_calibration: datetime | None = None
    calibration_due: date | None = None
    tags: list[str] = tags()
    tool_life: JsonObject = json_object()  # overrides the item's and the assembly's limits, per counter
    # What it has used since its last reset, the remaining life and the crossings: maintained as usages close.
    tool_life_state: JsonObject = json_object()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolPreset(Versioned):
    name: str = text(200, required=True)
    description: str = text(2000)
    tool_instance_id: uuid.UUID | None = ref("tool_instance", required=True)
    machine_id: str = text(100, required=True)
    parameters: JsonObject = json_object()
    is_default: bool = False
    tags: list[str] = tags()


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolUsage(Versioned):
    tool_instance_id: uuid.UUID | None = ref("tool_instance", required=True)
    start_time: datetime | None = field(default=None, metadata={"required": True})
    end_time: datetime | None = None
    machine_id: str = text(100)
    program_name: str = text(200)
    operator: str = text(200)
    usage_metrics: JsonObject = json_object()
    wear_measurements: JsonObject = json_object()
    notes: str = text(10000)


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolMeasurement(Versioned):
    """One presetter measurement of a tool instance, kept as it was taken (issue 12); never changed after."""

    tool_instance_id: uuid.UUID | None = ref("tool_instance", required=True)
    measurement_id: str = text(100, required=True)  # the station's own id: a retry is answered, not recorded twice
    station_id: str = text(100)
    operator: str = text(200)
    measured_at: datetime | None = field(default=None, metadata={"required": True})
    measurements: JsonObject = json_object()  # ISO 13399 symbol -> {value, nominal?, min?, max?}


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolSet(Versioned):
    name: str = text(200, required=True)
    description: str = text(2000)
    is_global: bool = False
    tool_instance_ids: list[uuid.UUID] = field(default_factory=list, metadata={"members": "tool_instance"})
    tool_preset_ids: list[uuid.UUID] = field(default_factory=list, metadata={"members": "tool_preset"})
    tags: list[str] = tags()


@dataclass(frozen=True, slots=True, kw_only=True)
class Revision:
    """One kept version of an entity: the change record (history and replication outbox)."""

    sequence: int
    entity_type: str
    entity_id: uuid.UUID
    version: int
    operation: ChangeOperation
    change_time: datetime
    actor_id: uuid.UUID | None
    request_id: str
    snapshot: JsonObject
    tx_id: uuid.UUID | None = None  # changes of one local transaction share it
    origin_id: uuid.UUID | None = None  # the store the change was made in, when it was replicated here
    snapshot_json: str = ""  # the snapshot as JSON text, when it arrived as such (replication)
    # Why a replicated change could not even be decoded (bad ids, unknown operation, malformed JSON): such a
    # change is rejected alone when applied, never refusing the batch around it.
    defect: str = ""
