"""The questions an MES plans jobs with (issue 13, DOMAIN.md §3): remaining tool life, calibration due, usage
totals and job readiness. Read-only; each page is one index range in the store (server/store/mes_rows.py) and
its page token is bound to the query it came from.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Generic, TypeVar

from server.domain import toollife
from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolSet, Versioned
from server.domain.errors import FieldViolation, InvalidArgument, NotFound
from server.domain.mes import InstanceScope, UsageFilter, UsageGrouping, UsageTotals
from server.domain.registry import KINDS
from server.usecases import access
from server.usecases.entities import Caller, utc_now
from server.usecases.lifecycle import limits_of
from server.usecases.listing import page_size_of
from server.usecases.ports import Transaction, UnitOfWork

T = TypeVar("T")

DEFAULT_GROUPS = 100
MAX_REPLACEMENTS = 20


@dataclass(frozen=True, slots=True)
class CounterLife:
    counter: str
    limit: float
    prewarning: float | None
    down: bool
    used: float
    remaining: float
    prewarned_at: datetime | None
    reached_at: datetime | None


@dataclass(frozen=True, slots=True)
class ToolLife:
    instance: ToolInstance
    level: int
    remaining_fraction: float
    counters: list[CounterLife]
    machine_ids: list[str]


@dataclass(frozen=True, slots=True)
class CalibrationDue:
    instance: ToolInstance
    machine_ids: list[str]


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str


@dataclass(frozen=True, slots=True)
class UsageSummary:
    groups: list[tuple[str, UsageTotals]]
    totals: UsageTotals
    next_page_token: str


class Issue:
    """Why a tool is not ready for a job (the API's ReadinessIssue, by name)."""

    NOT_ON_MACHINE = "NOT_ON_MACHINE"
    LOCKED = "LOCKED"
    RETIRED = "RETIRED"
    IN_USE_ELSEWHERE = "IN_USE_ELSEWHERE"
    NOT_CALIBRATED = "NOT_CALIBRATED"
    CALIBRATION_DUE = "CALIBRATION_DUE"
    INSUFFICIENT_LIFE = "INSUFFICIENT_LIFE"


@dataclass(frozen=True, slots=True)
class Replacement:
    instance: ToolInstance
    remaining_fraction: float
    on_machine: bool


@dataclass(frozen=True, slots=True)
class ToolReadiness:
    instance: ToolInstance
    preset_id: uuid.UUID | None
    remaining_fraction: float
    problems: list[tuple[str, str]] = field(default_factory=list)  # (issue, message)
    replacements: list[Replacement] = field(default_factory=list)

    @property
    def ready(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class JobReadiness:
    tools: list[ToolReadiness]

    @property
    def ready(self) -> bool:
        return all(t.ready for t in self.tools)


class MesService:
    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self._clock = clock

    # --- tool life ----------------------------------------------------------------------------------------

    async def tool_life(
        self, scope: InstanceScope, min_level: int, *, page_size: int, page_token: str
    ) -> Page[ToolLife]:
        """Instances at `min_level` (toollife.OK..EXPIRED) or past it, least remaining life first."""
        size = page_size_of(page_size)
        query = ("tool_life", scope.machine_id, str(scope.tool_item_id), min_level)
        after = None
        if page_token:
            remaining, last_id = _decode(page_token, query, 2)
            after = (_number(remaining), _uuid(last_id))
        async with self.store.read() as tx:
            rows = await tx.tool_life_page(scope, min_level, after, size + 1)
            page = _instances(rows[:size])
            limits = await limits_of(tx, page)
            machines = await tx.preset_machines([i.id for i in page])
        items = [_life(i, limits[i.id], sorted(machines.get(i.id, {}))) for i in page]
        token = ""
        if len(rows) > size:
            last = page[-1]
            token = _encode(query, [toollife.summary(last.tool_life_state)[1], str(last.id)])
        return Page(items, token)

    # --- calibration ----------------------------------------------------------------------------------------

    async def calibration_due(
        self, scope: InstanceScope, before: date, *, page_size: int, page_token: str
    ) -> Page[CalibrationDue]:
        size = page_size_of(page_size)
        query = ("calibration_due", scope.machine_id, str(scope.tool_item_id), before.isoformat())
        after = None
        if page_token:
            due, last_id = _decode(page_token, query, 2)
            after = (_date(due), _uuid(last_id))
        async with self.store.read() as tx:
            rows = await tx.calibration_due_page(scope, before, after, size + 1)
            page = _instances(rows[:size])
            machines = await tx.preset_machines([i.id for i in page])
        token = ""
        if len(rows) > size:
            last = page[-1]
            assert last.calibration_due is not None
            token = _encode(query, [last.calibration_due.isoformat(), str(last.id)])
        return Page([CalibrationDue(i, sorted(machines.get(i.id, {}))) for i in page], token)

    # --- usage totals ---------------------------------------------------------------------------------------

    async def summarize_usage(
        self, flt: UsageFilter, group: UsageGrouping, *, page_size: int, page_token: str
    ) -> UsageSummary:
        if flt.end <= flt.start:
            raise InvalidArgument.of([FieldViolation("end_time", "must be after start_time")])
        size = DEFAULT_GROUPS if page_size == 0 else page_size_of(page_size)
        query = ("usage", group.value, *(str(v) for v in dataclasses.astuple(flt)))
        after: Any = None
        if page_token:
            (last,) = _decode(page_token, query, 1)
            uuid_keyed = group in (UsageGrouping.TOOL_INSTANCE, UsageGrouping.TOOL_ITEM)
            after = _uuid(last) if uuid_keyed else str(last)
        async with self.store.read() as tx:
            rows = await tx.usage_totals(flt, group, after, size + 1)
            overall = await tx.usage_totals(flt, None, None, 1)
        groups = [(str(key) if key is not None else "", totals) for key, totals in rows[:size]]
        token = _encode(query, [str(rows[size - 1][0])]) if len(rows) > size else ""
        return UsageSummary(groups, overall[0][1] if overall else UsageTotals(), token)

    # --- job readiness --------------------------------------------------------------------------------------

    async def job_readiness(
        self,
        tool_set_id: uuid.UUID,
        machine_id: str,
        *,
        parts: float,
        minutes: float,
        max_replacements: int,
        on_date: date | None,
        caller: Caller,
    ) -> JobReadiness:
        problems = []
        if not machine_id.strip():
            problems.append(FieldViolation("machine_id", "required: the machine the job runs on"))
        for name, value in (("parts", parts), ("minutes", minutes)):
            if not value >= 0 or value == float("inf"):  # NaN fails `>=`
                problems.append(FieldViolation(name, "must be a finite number >= 0"))
        if not 0 <= max_replacements <= MAX_REPLACEMENTS:
            problems.append(FieldViolation("max_replacements", f"must be between 0 and {MAX_REPLACEMENTS}"))
        if problems:
            raise InvalidArgument.of(problems)
        wanted = max_replacements or 3
        day = on_date or self._clock().date()
        job = toollife.needs(parts, minutes)
        async with self.store.read() as tx:
            tool_set = await tx.get(KINDS["tool_set"], tool_set_id)
            if not isinstance(tool_set, ToolSet) or not access.can_read(caller.principal, tool_set):
                raise NotFound(f"tool set {tool_set_id} not found", reason="NOT_FOUND")
            presets = await tx.get_many(KINDS["tool_preset"], tool_set.tool_preset_ids)
            order = list(dict.fromkeys([*tool_set.tool_instance_ids, *_preset_instances(presets, tool_set)]))
            found = await tx.get_many(KINDS["tool_instance"], order)
            instances = _instances([found[i] for i in order if i in found])
            ids = [i.id for i in instances]
            machines = await tx.preset_machines(ids)
            running = await tx.open_usage_machines(ids)
            limits = await limits_of(tx, instances)
            checked = []
            for instance in instances:
                preset = machines.get(instance.id, {}).get(machine_id)
                found_problems = _problems(
                    instance, preset, machine_id, running.get(instance.id, set()), day, limits[instance.id], job
                )
                checked.append((instance, preset, found_problems))
            lacking = [instance for instance, _, found_problems in checked if found_problems]
            replacements = await _replacements(tx, lacking, machine_id, day, job, ids, wanted)
            tools = [
                ToolReadiness(
                    instance,
                    preset,
                    toollife.fraction(limits[instance.id], instance.tool_life_state),
                    found_problems,
                    replacements.get(instance.id, []) if found_problems else [],
                )
                for instance, preset, found_problems in checked
            ]
        return JobReadiness(tools)


def _sisters_key(instance: ToolInstance) -> tuple[uuid.UUID | None, uuid.UUID | None]:
    """Who can stand in for an instance: the same assembly, or without one, the same tool item."""
    if instance.tool_assembly_id is not None:
        return None, instance.tool_assembly_id
    return instance.tool_item_id, None


async def _replacements(
    tx: Transaction,
    lacking: Sequence[ToolInstance],
    machine_id: str,
    day: date,
    job: Mapping[str, float],
    exclude: Sequence[uuid.UUID],
    wanted: int,
) -> dict[uuid.UUID, list[Replacement]]:
    """For each instance that is not ready: up to `wanted` sister instances with life enough for the job, most
    remaining life first — a few statements for all of them, not a few per tool."""
    if not lacking:
        return {}
    sisters = await tx.sister_instances(
        sorted({_sisters_key(i) for i in lacking}, key=str), day, exclude, wanted * 4 + 10
    )
    candidates = {c.id: c for found in sisters.values() for c in _instances(found)}
    limits = await limits_of(tx, list(candidates.values()))
    fit = {
        key: [c for c in _instances(found) if not toollife.shortfalls(limits[c.id], c.tool_life_state, job)][:wanted]
        for key, found in sisters.items()
    }
    machines = await tx.preset_machines(sorted({c.id for found in fit.values() for c in found}))
    out = {}
    for instance in lacking:
        out[instance.id] = [
            Replacement(c, toollife.fraction(limits[c.id], c.tool_life_state), machine_id in machines.get(c.id, {}))
            for c in fit.get(_sisters_key(instance), [])
        ]
    return out


def _preset_instances(presets: Mapping[uuid.UUID, Versioned], tool_set: ToolSet) -> list[uuid.UUID]:
    out = []
    for preset_id in tool_set.tool_preset_ids:
        preset = presets.get(preset_id)
        instance_id = getattr(preset, "tool_instance_id", None)
        if isinstance(instance_id, uuid.UUID):
            out.append(instance_id)
    return out


def _problems(
    instance: ToolInstance,
    preset: uuid.UUID | None,
    machine_id: str,
    running_on: set[str],
    day: date,
    limits: Mapping[str, toollife.Limit],
    job: Mapping[str, float],
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    serial = instance.serial_number
    if preset is None:
        out.append((Issue.NOT_ON_MACHINE, f"{serial} has no preset on {machine_id}: load and preset it there"))
    status = instance.status
    if status == ToolInstanceStatus.MAINTENANCE:
        why = f": {instance.status_reason}" if instance.status_reason else ""
        out.append((Issue.LOCKED, f"{serial} is locked (MAINTENANCE){why}; release it or use a replacement"))
    elif status == ToolInstanceStatus.RETIRED:
        out.append((Issue.RETIRED, f"{serial} is retired; use a replacement"))
    elif status == ToolInstanceStatus.IN_USE and machine_id not in running_on:
        where = ", ".join(sorted(running_on)) or "another machine"
        out.append((Issue.IN_USE_ELSEWHERE, f"{serial} is in use on {where}"))
    if instance.calibration_due is None:
        out.append((Issue.NOT_CALIBRATED, f"{serial} was never measured: measure it on a presetter"))
    elif instance.calibration_due < day:
        out.append(
            (Issue.CALIBRATION_DUE, f"{serial} was due for calibration on {instance.calibration_due.isoformat()}")
        )
    short = toollife.shortfalls(limits, instance.tool_life_state, job)
    if short:
        used = instance.tool_life_state.get("used", {})
        parts = [
            f"{c} {max(limits[c].limit - float(used.get(c, 0.0)), 0.0):g} left"
            + (f", job needs {job[c]:g}" if c in job else "")
            for c in short
        ]
        out.append((Issue.INSUFFICIENT_LIFE, f"{serial} has not enough life: " + "; ".join(parts)))
    return out


def _life(instance: ToolInstance, limits: Mapping[str, toollife.Limit], machine_ids: list[str]) -> ToolLife:
    state = instance.tool_life_state
    used = state.get("used", {})
    prewarned = state.get("prewarned_at", {})
    reached = state.get("reached_at", {})
    counters = []
    for name, limit in limits.items():
        spent = float(used.get(name, 0.0))
        counters.append(
            CounterLife(
                name,
                limit.limit,
                limit.prewarning,
                limit.down,
                spent,
                round(limit.limit - spent, 6),
                _time(prewarned.get(name)),
                _time(reached.get(name)),
            )
        )
    return ToolLife(instance, toollife.level(limits, used), toollife.fraction(limits, state), counters, machine_ids)


def _instances(rows: Sequence[Versioned]) -> list[ToolInstance]:
    out = []
    for row in rows:
        assert isinstance(row, ToolInstance)
        out.append(row)
    return out


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


# --- page tokens: the last row's keys, bound to the query they continue -------------------------------------


def _fingerprint(query: Sequence[Any]) -> str:
    return hashlib.sha256(json.dumps([str(q) for q in query]).encode()).hexdigest()[:16]


def _encode(query: Sequence[Any], values: list[Any]) -> str:
    raw = json.dumps({"q": _fingerprint(query), "v": values}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _bad_token() -> InvalidArgument:
    return InvalidArgument.of(
        [FieldViolation("page_token", "not a page token of this query; pass next_page_token unchanged")]
    )


def _decode(token: str, query: Sequence[Any], count: int) -> list[Any]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise _bad_token() from None
    if not isinstance(payload, dict) or payload.get("q") != _fingerprint(query):
        raise InvalidArgument.of(
            [FieldViolation("page_token", "the token belongs to another query; start from the first page")]
        )
    values = payload.get("v")
    if not isinstance(values, list) or len(values) != count:
        raise _bad_token()
    return values


def _number(value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        raise _bad_token()
    return float(value)


def _uuid(value: Any) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise _bad_token() from None


def _date(value: Any) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise _bad_token() from None
