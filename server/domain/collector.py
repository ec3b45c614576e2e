"""What the OPC UA collector reports: usage events (the tracker's output) and per-machine status."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class UsageOpened:
    usage_id: uuid.UUID
    tool_number: int
    start: datetime
    program: str
    interrupted: bool


@dataclass(frozen=True, slots=True)
class UsageClosed:
    usage_id: uuid.UUID
    tool_number: int
    start: datetime
    end: datetime
    program: str
    metrics: dict[str, Any]


UsageEvent = UsageOpened | UsageClosed


@dataclass(frozen=True, slots=True)
class UnmatchedTool:
    """A T number seen on a machine with no ToolPreset mapping it to a tool instance (yet)."""

    tool_number: int
    intervals: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class MachineStatus:
    machine_id: str
    endpoint: str = ""
    profile: str = ""
    connected: bool = False
    last_data_at: datetime | None = None
    last_error: str = ""
    failed_attempts: int = 0  # consecutive failed connection attempts (0 while connected)
    open_tool_number: int = 0
    open_usage_id: uuid.UUID | None = None
    open_since: datetime | None = None
    unmatched: list[UnmatchedTool] = field(default_factory=list)
    open_tool_status: str = ""  # MAINTENANCE or RETIRED: the tool in the spindle is not fit for use
