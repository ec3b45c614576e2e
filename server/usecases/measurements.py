"""Presetter measurements (issue 12, item 1; DOMAIN.md 2.2): one call records a measurement of a tool instance,
found by id or serial number. It is kept (ToolMeasurement, replicated like every entity), the instance's
`measurements`, `last_calibration` and `calibration_due` follow the newest one, a value outside its min/max puts
the instance in MAINTENANCE with the reason, and the usages around it get their wear before/after. The presetter
chooses the measurement id: a retry with the same content is answered with what was recorded, a different
content under a used id is refused.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from server.domain import lifecycle
from server.domain.entities import ToolInstance, ToolItem, ToolMeasurement, ToolUsage, Versioned
from server.domain.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound
from server.domain.registry import KINDS
from server.usecases import access
from server.usecases.entities import Caller, EntityService, ListResult
from server.usecases.listing import page_size_of
from server.usecases.ports import Transaction, UnitOfWork
from server.validation import json_fields

# Without `calibration_interval_days` on the tool item: a tool is due for calibration a year after its last one.
DEFAULT_CALIBRATION_INTERVAL_DAYS = 365
BOUNDS = ("value", "nominal", "min", "max")


@dataclass(frozen=True, slots=True)
class MeasurementInput:
    """What a presetter sends: the instance (by id, else by serial number) and one measurement."""

    tool_instance_id: uuid.UUID | None
    serial_number: str
    measurement_id: str
    station_id: str
    operator: str
    measured_at: datetime | None
    values: Mapping[str, Mapping[str, float]]  # ISO 13399 symbol -> {value, nominal?, min?, max?}
    units: Mapping[str, str] = dataclasses.field(default_factory=dict)  # symbol -> the unit its numbers are in


@dataclass(frozen=True, slots=True)
class Recorded:
    measurement: ToolMeasurement
    instance: ToolInstance
    replayed: bool  # the same measurement id and content was recorded before: nothing changed now


def failures(values: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The symbols outside their limits, each as people read it: "DC measured 10.05, allowed 9.98..10.02"."""
    out = []
    for symbol, entry in sorted(values.items()):
        value, low, high = entry.get("value"), entry.get("min"), entry.get("max")
        if not isinstance(value, int | float):
            continue
        if (low is not None and value < low) or (high is not None and value > high):
            allowed = f"{'-inf' if low is None else f'{low:g}'}..{'inf' if high is None else f'{high:g}'}"
            out.append(f"{symbol} measured {value:g}, allowed {allowed}")
    return out


class MeasurementService:
    def __init__(
        self,
        store: UnitOfWork,
        measurements: EntityService,
        instances: EntityService,
        usages: EntityService,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self._measurements = measurements
        self._instances = instances
        self._usages = usages
        self._clock = clock

    async def record(self, given: MeasurementInput, caller: Caller) -> Recorded:
        values = _checked(given)
        async with self.store.write() as tx:
            instance = await self._instance(tx, given, caller)
            item = await self._item_of(tx, instance)
            _check_against_schema(values, item)
            for earlier in await tx.find_by(KINDS["tool_measurement"], "measurement_id", given.measurement_id):
                assert isinstance(earlier, ToolMeasurement)
                return self._replay(earlier, instance, given, values)
            measurement = await self._measurements.create_in(
                tx,
                {
                    "tool_instance_id": instance.id,
                    "measurement_id": given.measurement_id,
                    "station_id": given.station_id,
                    "operator": given.operator,
                    "measured_at": given.measured_at,
                    "measurements": values,
                },
                entity_id=None,
                caller=caller,
            )
            assert isinstance(measurement, ToolMeasurement)
            instance = await self._apply_to_instance(tx, instance, measurement)
            await self._fill_wear(tx, measurement)
            return Recorded(measurement, instance, replayed=False)

    async def list(self, tool_instance_id: uuid.UUID, *, page_size: int, page_token: str, caller: Caller) -> ListResult:
        """The instance's measurements, newest first (by measured_at, then by when they were recorded)."""
        size = page_size_of(page_size)
        after = _decode_token(page_token) if page_token else None
        async with self.store.read() as tx:
            instance = await tx.get(KINDS["tool_instance"], tool_instance_id)
            if instance is None or not access.can_read(caller.principal, instance):
                raise NotFound(f"ToolInstance {tool_instance_id} not found", reason="NOT_FOUND")
            page = await tx.measurements_of(tool_instance_id, after, size + 1)
        more = len(page) > size
        page = page[:size]
        token = _encode_token(page[-1]) if more and page else ""
        return ListResult(list(page), token)

    # --- steps ---------------------------------------------------------------------------------------

    async def _instance(self, tx: Transaction, given: MeasurementInput, caller: Caller) -> ToolInstance:
        if given.tool_instance_id is not None:
            found: Versioned | None = await tx.get(KINDS["tool_instance"], given.tool_instance_id)
            what = f"ToolInstance {given.tool_instance_id}"
        else:
            matches = await tx.find_by(KINDS["tool_instance"], "serial_number", given.serial_number)
            found = matches[0] if matches else None
            what = f"no ToolInstance has serial number {given.serial_number!r}"
        if not isinstance(found, ToolInstance) or not access.can_read(caller.principal, found):
            raise NotFound(f"{what} not found" if given.tool_instance_id else what, reason="NOT_FOUND")
        return found

    def _replay(
        self, earlier: ToolMeasurement, instance: ToolInstance, given: MeasurementInput, values: dict[str, Any]
    ) -> Recorded:
        same = (
            earlier.tool_instance_id == instance.id
            and earlier.measurements == values
            and earlier.measured_at == given.measured_at
            and earlier.station_id == given.station_id
            and earlier.operator == given.operator
        )
        if not same:
            raise AlreadyExists(
                f"measurement id {given.measurement_id!r} was recorded with other content (ToolMeasurement "
                f"{earlier.id}); a new measurement needs a new id",
                reason="MEASUREMENT_ID_TAKEN",
                violations=[FieldViolation("measurement_id", "already recorded with other content")],
                metadata={"existing_id": str(earlier.id)},
            )
        return Recorded(earlier, instance, replayed=True)

    async def _apply_to_instance(
        self, tx: Transaction, instance: ToolInstance, measurement: ToolMeasurement
    ) -> ToolInstance:
        """The newest measurement is the instance's state; an older one (a late upload) is only kept."""
        assert measurement.measured_at is not None
        if instance.last_calibration is not None and measurement.measured_at < instance.last_calibration:
            return instance
        changes: dict[str, Any] = {
            "measurements": {
                **measurement.measurements,
                "measured_at": measurement.measured_at.isoformat().replace("+00:00", "Z"),
                "station_id": measurement.station_id,
                "operator": measurement.operator,
                "measurement_id": measurement.measurement_id,
            },
            "last_calibration": measurement.measured_at,
            "calibration_due": (
                measurement.measured_at + timedelta(days=_interval(await self._item_of(tx, instance)))
            ).date(),
        }
        problems = failures(measurement.measurements)
        if problems and lifecycle.allowed(instance.status, lifecycle.MAINTENANCE, lifecycle.By.MEASUREMENT):
            changes["status"] = lifecycle.MAINTENANCE
            changes["status_reason"] = _reason(f"measurement {measurement.measurement_id} out of tolerance: ", problems)
        updated = await self._instances.update_in(
            tx, instance.id, 0, changes, caller=Caller(peer="measurement", system=True)
        )
        assert isinstance(updated, ToolInstance)
        return updated

    async def _item_of(self, tx: Transaction, instance: ToolInstance) -> ToolItem | None:
        """The catalog item of an instance: its own, else its assembly's cutter."""
        item_id = instance.tool_item_id
        if item_id is None and instance.tool_assembly_id is not None:
            assembly = await tx.get(KINDS["tool_assembly"], instance.tool_assembly_id)
            item_id = getattr(assembly, "cutter_id", None)
        item = await tx.get(KINDS["tool_item"], item_id) if item_id is not None else None
        return item if isinstance(item, ToolItem) else None

    async def _fill_wear(self, tx: Transaction, measurement: ToolMeasurement) -> None:
        """The measurement is the `before` of the usages it is the last one before (the latest taken before a
        usage opened wins), and the `after` of a usage it is the first one after (the earliest taken at or after
        it closed wins; while a usage is open, the latest taken during it stands in)."""
        assert measurement.measured_at is not None and measurement.tool_instance_id is not None
        at = measurement.measured_at
        symbols = {s: e["value"] for s, e in measurement.measurements.items() if isinstance(e, dict) and "value" in e}
        for usage in await tx.usages_around(measurement.tool_instance_id, at):
            assert isinstance(usage, ToolUsage) and usage.start_time is not None
            wear = dict(usage.wear_measurements)
            if usage.start_time >= at:
                side = "before"
                if not _replaces_before(_kept_at(wear, side), at):
                    continue
            elif usage.end_time is None or usage.end_time <= at or usage.start_time < at:
                side = "after"
                if not _replaces_after(usage.end_time, _kept_at(wear, side), at):
                    continue
            wear.update({side: symbols, f"x-{side}_measurement_id": measurement.measurement_id})
            wear[f"x-{side}_measured_at"] = _iso(at)
            await self._usages.update_in(
                tx, usage.id, 0, {"wear_measurements": wear}, caller=Caller(peer="measurement", system=True)
            )


def _interval(item: ToolItem | None) -> int:
    return (item.calibration_interval_days if item is not None else 0) or DEFAULT_CALIBRATION_INTERVAL_DAYS


def _check_against_schema(values: dict[str, Any], item: ToolItem | None) -> None:
    """The measurement schema of the instance's tool type, its violations named by the request's fields."""
    tool_type = str(item.tool_type) if item is not None else None
    problems = json_fields.check_measurements(tool_type, values)
    if problems:
        raise InvalidArgument.of(
            [FieldViolation("values" + v.field.removeprefix("measurements"), v.description) for v in problems]
        )


def _kept_at(wear: Mapping[str, Any], side: str) -> datetime | None:
    kept = wear.get(f"x-{side}_measured_at")
    return datetime.fromisoformat(kept.replace("Z", "+00:00")) if isinstance(kept, str) else None


def _replaces_before(kept_at: datetime | None, at: datetime) -> bool:
    return kept_at is None or at > kept_at


def _replaces_after(end: datetime | None, kept_at: datetime | None, at: datetime) -> bool:
    if kept_at is None:
        return True
    if end is None:  # still open: the latest taken while it runs
        return at > kept_at
    if kept_at < end:  # one taken while it ran gives way to one taken after it closed
        return at >= end or at > kept_at
    return end <= at < kept_at  # the first after the close


def _iso(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


def _reason(prefix: str, problems: list[str]) -> str:
    text = prefix + "; ".join(problems)
    return text if len(text) <= 500 else text[:497] + "..."


def _encode_token(last: Versioned) -> str:
    assert isinstance(last, ToolMeasurement) and last.measured_at is not None
    raw = json.dumps([_iso(last.measured_at), str(last.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str) -> tuple[datetime, uuid.UUID]:
    try:
        at, entity_id = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        when = datetime.fromisoformat(at.replace("Z", "+00:00"))
        if when.tzinfo is None:
            raise ValueError("no timezone")
        return when, uuid.UUID(entity_id)
    except Exception:  # any malformed or tampered token, whatever the decoder trips on
        raise InvalidArgument.of(
            [FieldViolation("page_token", "not a page token of this list; pass next_page_token unchanged")]
        ) from None


# The dimension of each symbol (DOMAIN.md 2.1): lengths in mm unless named here.
_DIMENSION = {"KAPR": "deg", "PSIR": "deg", "SIG": "deg", "WT": "g", "NOF": "count", "ZEFP": "count"}
_FACTORS = {"mm": {"": 1.0, "mm": 1.0, "in": 25.4}, "deg": {"": 1.0, "deg": 1.0}, "g": {"": 1.0, "g": 1.0}}


def _unit_factor(symbol: str, unit: str) -> float | None:
    """What turns a value in `unit` into the symbol's canonical unit; None for a unit it cannot be in."""
    dimension = _DIMENSION.get(symbol, "mm")
    if dimension == "count":
        return 1.0 if unit == "" else None
    return _FACTORS[dimension].get(unit.strip().lower())


def _checked(given: MeasurementInput) -> dict[str, Any]:
    """The request's own rules (the instance's measurement schema is checked when the instance takes them)."""
    problems: list[FieldViolation] = []
    if not given.measurement_id.strip():
        problems.append(FieldViolation("measurement_id", "required: an id the station chooses, so a retry is safe"))
    if given.tool_instance_id is None and not given.serial_number.strip():
        problems.append(FieldViolation("tool_instance_id", "required: the instance's id or its serial_number"))
    if given.measured_at is None:
        problems.append(FieldViolation("measured_at", "required: when the tool was measured"))
    if not given.values:
        problems.append(FieldViolation("values", "required: at least one symbol, e.g. DC or LF"))
    values: dict[str, Any] = {}
    for symbol, entry in given.values.items():
        clean = {k: float(v) for k, v in entry.items() if v is not None}
        for bound, number in clean.items():
            if bound not in BOUNDS:
                problems.append(FieldViolation(f"values.{symbol}.{bound}", "unknown: value, nominal, min or max"))
            elif not math.isfinite(number):
                problems.append(FieldViolation(f"values.{symbol}.{bound}", "must be a finite number (not NaN)"))
        factor = _unit_factor(symbol, given.units.get(symbol, ""))
        if factor is None:
            dimension = _DIMENSION.get(symbol, "mm")
            allowed = {"mm": "mm or in", "deg": "deg", "g": "g", "count": "none (a count)"}[dimension]
            problems.append(
                FieldViolation(f"values.{symbol}.unit", f"{given.units[symbol]!r} is not a unit of {symbol}: {allowed}")
            )
        else:
            # Stored in the canonical unit (DOMAIN.md 2.1: inches are converted at the boundary, never stored).
            clean = {k: round(v * factor, 9) for k, v in clean.items()} if factor != 1.0 else clean
        values[symbol] = clean
    if problems:
        raise InvalidArgument.of(problems)
    return values
