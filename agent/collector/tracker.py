"""The tool-change tracker: normalized machine signals in, usage events out. Pure logic, no I/O.

One tracker per machine. Its state is plain data (`to_json`/`from_json`) that the recorder saves in the same
transaction as the usage rows it produced, so an agent restart resumes exactly where the database says.

Rules (README "Usage recording"):
- a tool entering the spindle (T number != 0) opens a usage at the signal's source time; leaving closes it;
- spindle running time counts while the spindle rotates (speed > 0 or IsRotating) with that tool in;
- parts are the difference of the machine's part counter between open and close; programs are every program
  name seen while the tool was in; max_speed_rpm is the highest speed seen;
- cycles are the program starts (status becoming Running) while the tool was in; operation_modes every mode
  seen while it was in; operation_s the difference of the machine's operating-time counter (umati);
- what was not observed (an outage, an agent restart, the tool already in at the first connect) is never
  invented: the usage is marked `interrupted` and its times are bounded by what was seen.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from server.domain.collector import UsageClosed, UsageEvent, UsageOpened

# Usage ids derive from (machine, T number, start): re-running a transition after a crash re-creates the
# same id, which the store refuses as a duplicate instead of recording the usage twice.
USAGE_NAMESPACE = uuid.UUID("6f7d2f5e-0d47-4a55-9b59-1c8e2a4f3b10")


def usage_id_for(machine_id: str, tool_number: int, start: datetime, serial: int) -> uuid.UUID:
    """Unique per stay: the per-machine serial tells apart two stays a coarse clock gives the same start."""
    return uuid.uuid5(USAGE_NAMESPACE, f"{machine_id}|{serial}|{tool_number}|{start.isoformat()}")


PROGRAM_MAX_LEN = 200


def program_name(raw: str) -> str:
    """A controller's program name as usage rows can hold it: C-style names end at the first NUL (fixed-size
    buffers padded with NULs); bytes that were not UTF-8 (asyncua keeps them as lone surrogates) become U+FFFD;
    at most PROGRAM_MAX_LEN characters are kept."""
    name = raw.split("\x00", 1)[0]
    try:
        data = name.encode("utf-8", "surrogateescape")  # back to the bytes the controller sent
    except UnicodeEncodeError:  # a lone surrogate of another kind
        data = name.encode("utf-8", "surrogatepass")
    return data.decode("utf-8", "replace")[:PROGRAM_MAX_LEN]


Event = UsageEvent


@dataclass(frozen=True, slots=True)
class TrackerState:
    tool: int = 0
    usage_id: uuid.UUID | None = None
    tool_since: datetime | None = None
    rotating: bool = False
    rotating_since: datetime | None = None
    runtime_s: float = 0.0
    max_speed_rpm: float = 0.0
    programs: tuple[str, ...] = ()
    program: str = ""
    parts_counter: int | None = None
    parts_at_start: int | None = None
    interrupted: bool = False
    outage_s: float = 0.0
    last_seen: datetime | None = None
    stays: int = 0  # how many stays this machine has had (part of each usage id)
    program_running: bool | None = None  # None: the machine reports no program status
    cycles: int = 0  # program starts seen while the tool was in
    mode: str = ""  # the operation mode now (MANUAL, MDA, AUTOMATIC, SETUP, OTHER); "" = not reported
    modes: tuple[str, ...] = ()  # every operation mode seen while the tool was in
    operation_s: float | None = None  # the machine's operating-time counter now (umati OperationDuration)
    operation_at_start: float | None = None

    def to_json(self) -> dict[str, Any]:
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}  # asdict() deep-copies: slow
        for key in ("usage_id",):
            data[key] = str(data[key]) if data[key] is not None else None
        for key in ("tool_since", "rotating_since", "last_seen"):
            data[key] = data[key].isoformat() if data[key] is not None else None
        data["programs"] = list(self.programs)
        data["modes"] = list(self.modes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackerState:
        values = dict(data)
        values["usage_id"] = uuid.UUID(values["usage_id"]) if values.get("usage_id") else None
        for key in ("tool_since", "rotating_since", "last_seen"):
            values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
        values["programs"] = tuple(values.get("programs", ()))
        values["modes"] = tuple(values.get("modes", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


@dataclass
class Tracker:
    machine_id: str
    state: TrackerState = field(default_factory=TrackerState)

    # --- signals ---------------------------------------------------------------------------------------

    def tool(self, number: int, at: datetime) -> list[Event]:
        at = self._clamp(at)
        if number == self.state.tool:
            return []
        events: list[Event] = []
        if self.state.tool:
            events.append(self._close(at))
        if number:
            events.append(self._open(number, at, interrupted=False))
        else:
            self.state = replace(self.state, tool=0, usage_id=None, tool_since=None)
        return events

    def spindle(self, rotating: bool, speed_rpm: float | None, at: datetime) -> None:
        at = self._clamp(at)
        s = self.state
        if speed_rpm is not None and self.state.tool:
            s = replace(s, max_speed_rpm=max(s.max_speed_rpm, speed_rpm))
        if rotating and not s.rotating:
            s = replace(s, rotating=True, rotating_since=at)
        elif not rotating and s.rotating:
            s = replace(s, rotating=False, runtime_s=s.runtime_s + _seconds(s.rotating_since, at), rotating_since=None)
        self.state = s

    def program(self, name: str, at: datetime) -> None:
        self._clamp(at)
        name = program_name(name)
        s = self.state
        programs = s.programs if (not name or name in s.programs or not s.tool) else (*s.programs, name)
        self.state = replace(s, program=name, programs=programs)

    def parts(self, counter: int, at: datetime) -> None:
        self._clamp(at)
        self.state = replace(self.state, parts_counter=counter)

    def program_status(self, running: bool, at: datetime) -> None:
        """A program start (not running -> running) with a tool in counts as one cycle of that tool."""
        self._clamp(at)
        s = self.state
        started = running and s.program_running is False and bool(s.tool)
        self.state = replace(s, program_running=running, cycles=s.cycles + 1 if started else s.cycles)

    def operation_mode(self, mode: str, at: datetime) -> None:
        self._clamp(at)
        s = self.state
        modes = s.modes if (not mode or mode in s.modes or not s.tool) else (*s.modes, mode)
        self.state = replace(s, mode=mode, modes=modes)

    def operation_counter(self, seconds: float, at: datetime) -> None:
        self._clamp(at)
        self.state = replace(self.state, operation_s=seconds)

    def seen(self, at: datetime) -> None:
        """Data or a keep-alive arrived: the machine was observed up to `at`."""
        self._clamp(at)

    # --- gaps --------------------------------------------------------------------------------------------

    def reconnected(
        self,
        tool: int,
        rotating: bool,
        speed_rpm: float | None,
        at: datetime,
        *,
        program: str | None = None,
        parts: int | None = None,
        program_running: bool | None = None,
        mode: str | None = None,
        operation_s: float | None = None,
    ) -> list[Event]:
        """After an outage or a restart: the machine's current state, read at `at` (not a transition).

        Same tool still in: the usage goes on, marked interrupted, and the unobserved gap counts as outage (no
        running time is credited for it). Another tool: the old usage ends at the last time it was seen and
        the new one starts now; both are marked interrupted.
        """
        s = self.state
        last = s.last_seen
        events: list[Event] = []
        if s.tool and s.tool != tool:
            # The old stay ends as last seen, with the part counter as it was then: parts made during the
            # outage are not credited to it.
            events.append(self._close(last or at, interrupted=True))
            s = self.state
        if parts is not None:
            s = self.state = replace(s, parts_counter=parts)
        # State, not transitions: a program found running counts no cycle, a mode found is one seen.
        if program_running is not None:
            s = self.state = replace(s, program_running=program_running)
        if operation_s is not None:
            s = self.state = replace(s, operation_s=operation_s)
        if mode is not None:
            modes = s.modes if (not mode or mode in s.modes or not s.tool or s.tool != tool) else (*s.modes, mode)
            s = self.state = replace(s, mode=mode, modes=modes)
        if program is not None:
            program = program_name(program)
            # A program seen now belongs to a usage that goes on; a new usage starts with it.
            programs = (
                s.programs
                if (not program or program in s.programs or not s.tool or s.tool != tool)
                else (*s.programs, program)
            )
            s = self.state = replace(s, program=program, programs=programs)
        if s.tool and s.tool == tool:
            gap = _seconds(last, at)
            runtime = s.runtime_s + (_seconds(s.rotating_since, last) if s.rotating and last else 0.0)
            self.state = replace(
                s,
                interrupted=True,
                outage_s=s.outage_s + gap,
                runtime_s=runtime,
                rotating=rotating,
                rotating_since=at if rotating else None,
            )
        else:
            self.state = replace(self.state, rotating=rotating, rotating_since=at if rotating else None)
            if tool:
                events.append(self._open(tool, at, interrupted=True))
            else:
                self.state = replace(self.state, tool=0, usage_id=None, tool_since=None)
        if speed_rpm is not None and tool:
            self.state = replace(self.state, max_speed_rpm=max(self.state.max_speed_rpm, speed_rpm))
        self.state = replace(self.state, last_seen=max(at, last) if last else at)
        return events

    # --- internals -----------------------------------------------------------------------------------------

    def _clamp(self, at: datetime) -> datetime:
        """Signals never move time backwards (controller clocks and queued notifications can)."""
        last = self.state.last_seen
        if last is not None and at < last:
            at = last
        self.state = replace(self.state, last_seen=at)
        return at

    def _open(self, number: int, at: datetime, *, interrupted: bool) -> UsageOpened:
        s = self.state
        usage_id = usage_id_for(self.machine_id, number, at, s.stays + 1)
        self.state = replace(
            s,
            stays=s.stays + 1,
            tool=number,
            usage_id=usage_id,
            tool_since=at,
            runtime_s=0.0,
            rotating_since=at if s.rotating else None,
            max_speed_rpm=0.0,
            programs=(s.program,) if s.program else (),
            parts_at_start=s.parts_counter,
            cycles=0,
            modes=(s.mode,) if s.mode else (),
            operation_at_start=s.operation_s,
            interrupted=interrupted,
            outage_s=0.0,
        )
        return UsageOpened(usage_id, number, at, s.program, interrupted)

    def _close(self, at: datetime, *, interrupted: bool = False) -> UsageClosed:
        s = self.state
        assert s.usage_id is not None and s.tool_since is not None
        runtime = s.runtime_s + (_seconds(s.rotating_since, at) if s.rotating and s.rotating_since else 0.0)
        metrics: dict[str, Any] = {
            "source": "COLLECTOR",
            "tool_number": s.tool,
            "time_in_spindle_s": round(_seconds(s.tool_since, at), 3),
            "spindle_runtime_s": round(min(runtime, _seconds(s.tool_since, at)), 3),
            "max_speed_rpm": s.max_speed_rpm,
            "programs": list(s.programs),
        }
        if s.parts_counter is not None and s.parts_at_start is not None:
            metrics["parts"] = max(0, s.parts_counter - s.parts_at_start)
        if s.program_running is not None:
            metrics["cycles"] = s.cycles
        if s.modes:
            metrics["operation_modes"] = list(s.modes)
        if s.operation_s is not None and s.operation_at_start is not None:
            metrics["operation_s"] = round(max(0.0, s.operation_s - s.operation_at_start), 3)
        if s.interrupted or interrupted:
            metrics["interrupted"] = True
        if s.outage_s:
            metrics["x-outage_s"] = round(s.outage_s, 3)
        closed = UsageClosed(s.usage_id, s.tool, s.tool_since, at, s.program, metrics)
        self.state = replace(
            s,
            tool=0,
            usage_id=None,
            tool_since=None,
            runtime_s=0.0,
            max_speed_rpm=0.0,
            programs=(),
            parts_at_start=None,
            cycles=0,
            modes=(),
            operation_at_start=None,
            interrupted=False,
            outage_s=0.0,
            rotating_since=at if s.rotating else None,
        )
        return closed


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())
