"""What the MES queries and the change stream ask the store (issue 13): plain values, no SQL."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class InstanceScope:
    """Which instances a query covers: those with a preset on a machine, and/or those of a tool item (directly,
    or as the cutter or holder of their assembly). Both None: every instance."""

    machine_id: str | None = None
    tool_item_id: uuid.UUID | None = None


class UsageGrouping(enum.StrEnum):
    MACHINE = "machine_id"
    PROGRAM = "program_name"
    OPERATOR = "operator"
    TOOL_INSTANCE = "tool_instance_id"
    TOOL_ITEM = "tool_item_id"


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Usages that started in [start, end), narrowed by the fields given (empty: any)."""

    start: datetime
    end: datetime
    machine_id: str = ""
    program_name: str = ""
    operator: str = ""
    tool_instance_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class UsageTotals:
    usages: int = 0
    open_usages: int = 0
    time_in_spindle_s: float = 0.0
    spindle_runtime_s: float = 0.0
    cycles: float = 0.0
    parts: float = 0.0
    first_start: datetime | None = None
    last_start: datetime | None = None
