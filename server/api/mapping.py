"""The one proto <-> domain mapping, driven by the entity field table.

Policy for `*_UNSPECIFIED` (and unknown enum numbers): refused wherever the field is being set; an enum field
not being set (not in an update mask) is not looked at. Empty strings in id fields mean "no reference".
"""

from __future__ import annotations

import enum
import math
import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import Any

from google.protobuf import json_format, timestamp_pb2
from google.protobuf.message import Message
from google.type import date_pb2
from smooth.core.v1 import common_pb2

from server.domain.entities import (
    ChangeOperation,
    Revision,
    ToolInstanceStatus,
    ToolType,
    UserRole,
    Versioned,
)
from server.domain.errors import FieldViolation, InvalidArgument, ViolationCollector
from server.domain.registry import EntityKind
from server.domain.schema import OUTPUT_ONLY, FieldInfo, fields_of

# domain enum -> the proto enum's value-name prefix (buf style: TOOL_TYPE_DRILL).
ENUM_PREFIX: dict[type[enum.Enum], str] = {
    ToolType: "TOOL_TYPE",
    ToolInstanceStatus: "TOOL_INSTANCE_STATUS",
    UserRole: "USER_ROLE",
    ChangeOperation: "CHANGE_OPERATION",
}


def _enum_to_proto(msg: Message, f: FieldInfo, value: enum.Enum) -> int:
    enum_type = msg.DESCRIPTOR.fields_by_name[f.name].enum_type
    assert enum_type is not None
    return int(enum_type.values_by_name[f"{ENUM_PREFIX[type(value)]}_{value.name}"].number)


def _enum_from_proto(msg: Message, f: FieldInfo, number: int) -> enum.Enum | None:
    """None for UNSPECIFIED or a number this server does not know."""
    assert f.enum_cls is not None
    enum_type = msg.DESCRIPTOR.fields_by_name[f.name].enum_type
    assert enum_type is not None
    value = enum_type.values_by_number.get(number)
    if value is None or number == 0:
        return None
    name = value.name.removeprefix(ENUM_PREFIX[f.enum_cls] + "_")
    return f.enum_cls[name]


def _normalize_json(value: Any) -> Any:
    """Struct carries every number as a double: store integral ones as integers (3, not 3.0)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: _normalize_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize_json(v) for v in value]
    return value


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False


def to_proto(entity: Versioned, message_cls: type[Message]) -> Message:
    msg = message_cls()
    present = msg.DESCRIPTOR.fields_by_name
    for f in fields_of(type(entity)):
        value = getattr(entity, f.name)
        if value is None or f.name not in present:  # e.g. User has no owner_id on the wire
            continue
        target = getattr(msg, f.name)
        if f.kind == "uuid":
            setattr(msg, f.name, str(value))
        elif f.kind == "timestamp":
            target.FromDatetime(value)
        elif f.kind == "date":
            target.year, target.month, target.day = value.year, value.month, value.day
        elif f.kind == "enum":
            setattr(msg, f.name, _enum_to_proto(msg, f, value))
        elif f.kind == "json":
            target.update(value)
        elif f.kind == "tags":
            target.extend(value)
        elif f.kind == "members":
            target.extend(str(v) for v in value)
        else:
            setattr(msg, f.name, value)
    return msg


def from_proto(kind: EntityKind, msg: Message, names: Iterable[str]) -> dict[str, Any]:
    """Typed values of the named fields of an entity message; every bad value is reported at once."""
    fields = {f.name: f for f in fields_of(kind.cls)}
    errors = ViolationCollector()
    out: dict[str, Any] = {}
    for name in names:
        f = fields[name]
        try:
            out[name] = _field_from_proto(msg, f)
        except ValueError as exc:
            errors.add(name, str(exc))
    errors.raise_if_any()
    return out


def _field_from_proto(msg: Message, f: FieldInfo) -> Any:
    raw = getattr(msg, f.name)
    if f.kind == "uuid":
        return parse_id(raw, f.name, required=False)
    if f.kind == "members":
        return [parse_id(v, f.name, required=True) for v in raw]
    if f.kind == "timestamp":
        return timestamp_to_datetime(raw) if msg.HasField(f.name) else None
    if f.kind == "date":
        return date_from_proto(raw) if msg.HasField(f.name) else None
    if f.kind == "enum":
        member = _enum_from_proto(msg, f, raw)
        if member is None:
            allowed = ", ".join(f"{ENUM_PREFIX[f.enum_cls]}_{e.name}" for e in f.enum_cls)  # type: ignore[index,union-attr]
            raise ValueError(f"{raw} is not an allowed value; use one of {allowed}")
        return member
    if f.kind == "json":
        value = _normalize_json(json_format.MessageToDict(raw)) if msg.HasField(f.name) else {}
        if _has_non_finite(value):
            raise ValueError("numbers must be finite (no NaN or Infinity)")
        return value
    if f.kind == "tags":
        return list(raw)
    return raw


def parse_id(text: str, field: str, *, required: bool) -> uuid.UUID | None:
    if not text:
        if required:
            raise ValueError("required: a UUID")
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is not a UUID") from None


def require_id(text: str, field: str = "id") -> uuid.UUID:
    try:
        value = parse_id(text, field, required=True)
    except ValueError as exc:
        raise InvalidArgument.of([FieldViolation(field, str(exc))]) from None
    assert value is not None
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def timestamp_to_datetime(ts: timestamp_pb2.Timestamp) -> datetime:
    if not 0 <= ts.nanos < 1_000_000_000:
        raise ValueError("nanos must be in [0, 1e9)")
    try:
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)  # (ToDatetime is slower)
    except (ValueError, OverflowError):
        raise ValueError("out of range (years 1 to 9999)") from None


def date_from_proto(d: date_pb2.Date) -> date:
    try:
        return date(d.year, d.month, d.day)
    except ValueError:
        raise ValueError("a full calendar date is required (year, month and day)") from None


def settable_fields(kind: EntityKind) -> list[str]:
    return [f.name for f in fields_of(kind.cls) if f.name not in OUTPUT_ONLY]


def update_paths(kind: EntityKind, msg: Message, mask_paths: list[str]) -> list[str]:
    """The fields an Update changes: the mask's paths; '*' = all; no mask = every field set to a non-default."""
    settable = settable_fields(kind)
    if mask_paths == ["*"]:
        return settable
    if not mask_paths:
        return [n for n in settable if _is_set(msg, n)]
    errors = ViolationCollector()
    for path in mask_paths:
        if path in OUTPUT_ONLY:
            errors.add("update_mask", f"{path!r} is output only and cannot be updated")
        elif path not in settable:
            errors.add("update_mask", f"{path!r} is not a field of {kind.label}; allowed: {', '.join(settable)}")
    errors.raise_if_any()
    return list(dict.fromkeys(mask_paths))


def _is_set(msg: Message, name: str) -> bool:
    descriptor = msg.DESCRIPTOR.fields_by_name[name]
    if descriptor.message_type is not None and not _is_repeated(descriptor):
        return msg.HasField(name)
    value = getattr(msg, name)
    return bool(len(value)) if _is_repeated(descriptor) else bool(value)


def _is_repeated(descriptor: Any) -> bool:
    if hasattr(descriptor, "is_repeated"):  # protobuf >= 6 dropped `label` for editions
        return bool(descriptor.is_repeated)
    return bool(descriptor.label == descriptor.LABEL_REPEATED)


def revision_info(revision: Revision) -> common_pb2.RevisionInfo:
    info = common_pb2.RevisionInfo(
        sequence=revision.sequence,
        version=revision.version,
        operation=_enum_to_proto(common_pb2.RevisionInfo(), _OPERATION_FIELD, revision.operation),
        actor_id=str(revision.actor_id) if revision.actor_id else "",
        request_id=revision.request_id,
    )
    info.change_time.FromDatetime(revision.change_time)
    return info


_OPERATION_FIELD = FieldInfo("operation", "enum", nullable=False, enum_cls=ChangeOperation)
