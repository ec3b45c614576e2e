"""The tool-change tracker: normalized machine signals in, usage events out. Pure logic, no I/O.

One tracker per machine. Its state is plain data (`to_json`/`from_json`) that the recorder saves in the same
transaction as the usage rows it produced, so an agent restart resumes exactly where the database says.

Rules (README "Usage recording" and "Collector timing model"):
- a tool entering the spindle (T number != 0) opens a usage at the signal's source time; leaving closes it;
- spindle running time counts while the spindle rotates (speed > 0 or IsRotating) with that tool in;
- parts are the difference of the machine's part counter between open and close; programs are every program
  name seen while the tool was in; max_speed_rpm is the highest speed seen (left out where no speed is reported);
- cycles are the program starts (status becoming Running) while the tool was in; operation_modes every mode
  seen while it was in; operation_s the difference of the machine's operating-time counter (umati);
- times are the controller's: a signal's time is never placed before the last signal applied (`last_change`);
  a keep-alive only says the machine was observed up to a time (`last_seen`) and never moves a change;
- what was not observed (an outage, an agent restart) is never invented: across a gap the tracker credits only
  what the controller's timestamps prove (a value unchanged since before the gap, a change stamped after it).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
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

# A controller's change stamped later than its own clock by more than this is not believed (DOMAIN.md §1.5):
# the source of a value (a PLC, a drive) may run a little ahead of the OPC UA server's clock, an hour is a bug.
CLOCK_SKEW = timedelta(seconds=2)


@dataclass(frozen=True, slots=True)
class TrackerState:
    tool: int = 0
    usage_id: uuid.UUID | None = None
    tool_since: datetime | None = None
    rotating: bool = False
    rotating_since: datetime | None = None
    runtime_s: float = 0.0
    max_speed_rpm: float | None = None  # None: the machine reports no speed (umati)
    speed_rpm: float | None = None  # the speed now, None while the machine has reported none
    programs: tuple[str, ...] = ()
    program: str = ""
    usage_program: str = ""  # the program the stay started with: its usage's program_name
    program_added_at: datetime | None = None  # when the last name in `programs` was added
    parts_counter: int | None = None
    parts_at_start: int | None = None
    interrupted: bool = False
    outage_s: float = 0.0
    # Observed up to (the controller's clock): signals, keep-alive answers. A gap in observation starts here.
    last_seen: datetime | None = None
    # The latest time a signal was applied at: a later-arriving signal is never placed before it.
    last_change: datetime | None = None
    clamped: int = 0  # timestamps of this stay that were moved to keep time forward or out of the future
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
        for key in _TIMES:
            data[key] = data[key].isoformat() if data[key] is not None else None
        data["programs"] = list(self.programs)
        data["modes"] = list(self.modes)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrackerState:
        values = dict(data)
        values["usage_id"] = uuid.UUID(values["usage_id"]) if values.get("usage_id") else None
        if "last_change" not in values:  # saved by an agent that kept one time for both
            values["last_change"] = values.get("last_seen")
        if "usage_program" not in values:  # saved by an agent that named a usage after the program at its start
            values["usage_program"] = (values.get("programs") or [""])[0]
        for key in _TIMES:
            values[key] = datetime.fromisoformat(values[key]) if values.get(key) else None
        values["programs"] = tuple(values.get("programs", ()))
        values["modes"] = tuple(values.get("modes", ()))
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


_TIMES = ("tool_since", "rotating_since", "last_seen", "last_change", "program_added_at")


@dataclass
class Tracker:
    machine_id: str
    state: TrackerState = field(default_factory=TrackerState)

    # --- signals ---------------------------------------------------------------------------------------

    def tool(self, number: int, at: datetime) -> list[Event]:
        changes = number != self.state.tool
        at = self._place(at, transition=changes)
        if not changes:
            return []
        events: list[Event] = []
        s = self.state
        if s.tool and s.program_added_at == at:
            # The program changed at the very instant this stay ends: it is the next stay's (issue 10, case 5).
            self.state = replace(s, programs=s.programs[:-1], program_added_at=None)
        if self.state.tool:
            events.append(self._close(at))
        if number:
            events.append(self._open(number, at, interrupted=False))
        else:
            self.state = replace(self.state, tool=0, usage_id=None, tool_since=None)
        return events

    def spindle(self, rotating: bool, speed_rpm: float | None, at: datetime) -> None:
        at = self._place(at, transition=rotating != self.state.rotating)
        s = self.state
        if speed_rpm is not None:
            top = max(s.max_speed_rpm or 0.0, speed_rpm) if s.tool else s.max_speed_rpm
            s = replace(s, speed_rpm=speed_rpm, max_speed_rpm=top)
        if rotating and not s.rotating:
            s = replace(s, rotating=True, rotating_since=at)
        elif not rotating and s.rotating:
            s = replace(s, rotating=False, runtime_s=s.runtime_s + _seconds(s.rotating_since, at), rotating_since=None)
        self.state = s

    def program(self, name: str, at: datetime) -> None:
        at = self._place(at)
        name = program_name(name)
        s = self.state
        if name == s.program:
            return  # the same name again (the first notification after subscribing repeats the current value)
        if s.tool and at == s.tool_since:
            # The program changed at the very instant this stay began: it is the one the stay started with, and
            # the one before ran no time in it (issue 10, case 5: decided by the timestamps, not by arrival).
            self.state = replace(s, program=name, programs=(name,) if name else (), usage_program=name)
            return
        if not name or name in s.programs or not s.tool:
            self.state = replace(s, program=name)
            return
        self.state = replace(s, program=name, programs=(*s.programs, name), program_added_at=at)

    def parts(self, counter: int, at: datetime) -> None:
        self._place(at)
        self.state = replace(self.state, parts_counter=counter)

    def program_status(self, running: bool, at: datetime) -> None:
        """A program start (not running -> running) with a tool in counts as one cycle of that tool."""
        self._place(at)
        s = self.state
        started = running and s.program_running is False and bool(s.tool)
        self.state = replace(s, program_running=running, cycles=s.cycles + 1 if started else s.cycles)

    def operation_mode(self, mode: str, at: datetime) -> None:
        self._place(at)
        s = self.state
        modes = s.modes if (not mode or mode in s.modes or not s.tool) else (*s.modes, mode)
        self.state = replace(s, mode=mode, modes=modes)

    def operation_counter(self, seconds: float, at: datetime) -> None:
        self._place(at)
        self.state = replace(self.state, operation_s=seconds)

    def seen(self, at: datetime) -> None:
        """The machine was observed up to `at` (a keep-alive answer, or the last moment a lost connection was known
        to be live). It moves no change: a notification stamped earlier may still be on its way (issue 10, case 1)."""
        last = self.state.last_seen
        if last is None or at > last:
            self.state = replace(self.state, last_seen=at)

    def clamped(self) -> None:
        """The session moved a signal's time (stamped in the future beyond CLOCK_SKEW): marked on the usage."""
        if self.state.tool:
            self.state = replace(self.state, clamped=self.state.clamped + 1)

    # --- gaps --------------------------------------------------------------------------------------------

    def reconnected(
        self,
        tool: int,
        rotating: bool,
        speed_rpm: float | None,
        at: datetime,
        *,
        tool_at: datetime | None = None,
        rotating_at: datetime | None = None,
        program: str | None = None,
        parts: int | None = None,
        program_running: bool | None = None,
        mode: str | None = None,
        operation_s: float | None = None,
    ) -> list[Event]:
        """After an outage, an agent restart or at the first contact: the machine's current state, read when the
        controller's clock said `at` (state, not a transition). `tool_at` / `rotating_at` are the controller's
        times of the last change of the tool and of the spindle's rotation (SourceTimestamps), where it gives them.

        The gap is from `last_seen` (what the agent observed, kept or saved) to `at`. A change stamped inside it
        is trusted (placed at its stamp); a value stamped before it and equal to what was seen did not change
        during it (a spindle turning throughout is credited throughout); anything else is placed at `at` and
        counted as clamped. The same tool still in: the usage goes on, marked interrupted, the gap counted as
        `x-outage_s`. Another tool: the old usage ends at the start of the gap, the new one starts at its trusted
        stamp (not interrupted: its start is exact) or at `at` (interrupted).
        """
        s = self.state
        gap_from = s.last_seen  # None: the first contact
        events: list[Event] = []
        tool_start, tool_moved = _trusted(tool_at, gap_from, at)
        spin = self._spin(rotating, rotating_at, gap_from, at)
        if s.tool and s.tool != tool:
            # The old stay ends as last seen, with the part counter as it was then: parts made during the
            # outage are not credited to it.
            events.append(self._close(gap_from or at, interrupted=True))
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
        if speed_rpm is not None:
            s = self.state = replace(s, speed_rpm=speed_rpm)
        moved = spin.moved
        if s.tool and s.tool == tool:
            # Seen turning up to the gap; through it only if the controller says it never stopped.
            runtime = s.runtime_s + (
                _seconds(s.rotating_since, gap_from) if s.rotating and not spin.continuous else 0.0
            )
            self.state = replace(
                s,
                interrupted=True,
                outage_s=s.outage_s + _seconds(gap_from, at),
                runtime_s=runtime,
                rotating=rotating,
                rotating_since=spin.since,
            )
        elif tool:
            start = tool_start or at
            self.state = replace(s, rotating=False, rotating_since=None)
            events.append(self._open(tool, start, interrupted=tool_start is None))
            moved += tool_moved
            # The spindle counts for this stay from whichever came last: the tool or the rotation.
            since = max(spin.since, start) if spin.since else None
            self.state = replace(self.state, rotating=rotating, rotating_since=since)
        else:
            self.state = replace(
                s, tool=0, usage_id=None, tool_since=None, rotating=rotating, rotating_since=spin.since
            )
        if speed_rpm is not None and tool:
            self.state = replace(self.state, max_speed_rpm=max(self.state.max_speed_rpm or 0.0, speed_rpm))
        s = self.state
        placed = [t for t in (s.tool_since, s.rotating_since, s.last_change) if t is not None]
        self.state = replace(
            s,
            last_seen=max(at, gap_from) if gap_from else at,
            last_change=max(placed) if placed else None,
            clamped=s.clamped + moved if s.tool else 0,
        )
        return events

    # --- internals -----------------------------------------------------------------------------------------

    def _place(self, at: datetime, *, transition: bool = False) -> datetime:
        """Signals never move time backwards (controller clocks and late notifications can): a signal stamped
        before the last one applied counts at that time, and a transition moved so is counted on the usage."""
        s = self.state
        floor = s.last_change
        clamped = s.clamped
        if floor is not None and at < floor:
            at = floor
            clamped += 1 if transition and s.tool else 0
        last = s.last_seen if s.last_seen is not None and s.last_seen > at else at
        self.state = replace(s, last_change=at, last_seen=last, clamped=clamped)
        return at

    def _spin(self, rotating: bool, stamp: datetime | None, gap_from: datetime | None, at: datetime) -> _Spin:
        """Since when the spindle found `rotating` after a gap has turned."""
        if not rotating:
            return _Spin(None)
        s = self.state
        if s.rotating and stamp is not None and gap_from is not None and stamp <= gap_from:
            return _Spin(s.rotating_since or gap_from, continuous=True)  # turning before, and unchanged since
        since, moved = _trusted(stamp, gap_from, at)
        return _Spin(since or at, moved=moved)

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
            max_speed_rpm=s.speed_rpm,  # the speed it came in at; None where none is reported
            programs=(s.program,) if s.program else (),
            usage_program=s.program,
            program_added_at=None,
            parts_at_start=s.parts_counter,
            cycles=0,
            modes=(s.mode,) if s.mode else (),
            operation_at_start=s.operation_s,
            interrupted=interrupted,
            outage_s=0.0,
            clamped=0,
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
            "programs": list(s.programs),
        }
        if s.max_speed_rpm is not None:  # umati reports rotation, not speed (issue 10, case 6)
            metrics["max_speed_rpm"] = s.max_speed_rpm
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
        if s.clamped:
            metrics["x-clamped"] = s.clamped
        closed = UsageClosed(s.usage_id, s.tool, s.tool_since, at, s.usage_program, metrics)
        self.state = replace(
            s,
            tool=0,
            usage_id=None,
            tool_since=None,
            runtime_s=0.0,
            max_speed_rpm=None,
            programs=(),
            usage_program="",
            program_added_at=None,
            parts_at_start=None,
            cycles=0,
            modes=(),
            operation_at_start=None,
            interrupted=False,
            outage_s=0.0,
            clamped=0,
            rotating_since=at if s.rotating else None,
        )
        return closed


@dataclass(frozen=True, slots=True)
class _Spin:
    """How a reconnect found the spindle: turning since `since` (None: stopped), `continuous` when it turned
    throughout the gap, `moved` (0 or 1) when its stamp was not believed and it counts from the reconnect."""

    since: datetime | None
    continuous: bool = False
    moved: int = 0


def _trusted(stamp: datetime | None, gap_from: datetime | None, at: datetime) -> tuple[datetime | None, int]:
    """A change's stamp if it can be believed, with 0; (None, 1) if it cannot; (None, 0) if none was given.

    Believed: after the gap began (a change made while nobody watched) and not later than the controller's clock
    now (`at`) by more than CLOCK_SKEW. A server that stamps every value with its own start time fails this after
    an agent restart; its values are then placed at the reconnect and counted as clamped."""
    if stamp is None:
        return None, 0
    if (gap_from is not None and stamp <= gap_from) or stamp > at + CLOCK_SKEW:
        return None, 1
    return min(stamp, at), 0


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())
