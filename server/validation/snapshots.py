"""Untrusted entity snapshots (replicated changes, resync pages) decoded strictly: every field must have its
JSON type, and whatever arrives, decoding raises nothing but InvalidArgument with the fields at fault
(STYLE 15). The trusted codec (`server.domain.schema.from_json`) reads what this store wrote itself.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

from server.domain.entities import Versioned
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.schema import FieldInfo, fields_of

E = TypeVar("E", bound=Versioned)

JSON_MAX_DEPTH = 32  # nesting of objects and arrays in a JSON field
JSON_INT_LIMIT = 2**63  # integers in JSON fields stay within a signed 64-bit value
VERSION_MAX = 2**31 - 1  # the version column is a 32-bit integer on every engine


def json_value_problem(value: Any) -> str | None:
    """What makes a decoded JSON value unfit to store (None: nothing). Walks without recursion, so a value
    nested thousands of levels deep is reported, not a RecursionError."""
    return json_value_checked(value)[0]


def json_value_checked(value: Any) -> tuple[str | None, int]:
    """`json_value_problem`, and a bound the length of the value's compact JSON text (`compact_json`) cannot
    exceed, from the same walk: a value well under a size limit need not be encoded to be measured (issue 11).
    The bound takes the longest text each item can have: 6 characters a character of an ASCII string (\\u0000),
    12 of another (an escaped surrogate pair), 24 a float, 20 an integer (64 bits), 5 true, false or null."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    bound = 0
    while stack:
        item, depth = stack.pop()
        if depth > JSON_MAX_DEPTH:
            return f"nested more than {JSON_MAX_DEPTH} levels deep", bound
        kind = type(item)
        if kind is dict:
            bound += 2
            for k, v in item.items():
                if type(k) is not str:
                    return "object keys must be strings", bound
                problem = _text_problem(k)
                if problem:
                    return f"a key {problem}", bound
                bound += _text_bound(k) + 2  # the colon, and a comma
                stack.append((v, depth + 1))
        elif kind is list:
            bound += 2 + len(item)
            stack.extend((v, depth + 1) for v in item)
        elif kind is str:
            problem = _text_problem(item)
            if problem:
                return f"a string {problem}", bound
            bound += _text_bound(item)
        elif kind is float:
            if not math.isfinite(item):
                return "numbers must be finite (no NaN or Infinity)", bound
            bound += 24
        elif kind is int:
            if not -JSON_INT_LIMIT <= item < JSON_INT_LIMIT:
                return "integers must fit in 64 bits", bound
            bound += 20
        elif item is not None and kind is not bool:
            return f"{kind.__name__} is not a JSON value", bound
        else:
            bound += 5
    return None, bound


def _text_bound(text: str) -> int:
    return 2 + (6 if text.isascii() else 12) * len(text)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains NUL characters"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "contains a lone surrogate (not valid Unicode)"
    return None


def _text(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not str:
        raise ValueError("must be a string")
    problem = _text_problem(raw) if "\x00" not in raw else None  # NUL is the field rules' to report
    if problem:
        raise ValueError(problem)
    return raw


def _uuid(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not str:
        raise ValueError("must be a UUID string")
    return uuid.UUID(raw)


def _timestamp(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not str:
        raise ValueError("must be an RFC 3339 timestamp string")
    value = datetime.fromisoformat(raw)
    if value.tzinfo is None:
        raise ValueError("must carry a UTC offset")
    return value


def _date(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not str:
        raise ValueError("must be a YYYY-MM-DD string")
    return date.fromisoformat(raw)


def _bool(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not bool:
        raise ValueError("must be true or false")
    return raw


def _int(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not int:
        raise ValueError("must be an integer")
    if f.name == "version" and not 1 <= raw <= VERSION_MAX:
        raise ValueError(f"must be from 1 to {VERSION_MAX}")
    if not -JSON_INT_LIMIT <= raw < JSON_INT_LIMIT:
        raise ValueError("must fit in 64 bits")
    return raw


def _enum(f: FieldInfo, raw: Any) -> Any:
    assert f.enum_cls is not None
    if type(raw) is not str:
        raise ValueError("must be a string")
    try:
        return f.enum_cls(raw)
    except ValueError:
        raise ValueError(f"one of {', '.join(str(m.value) for m in f.enum_cls)}") from None


def _json(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not dict:
        raise ValueError("must be a JSON object")
    problem = json_value_problem(raw)
    if problem:
        raise ValueError(problem)
    return raw


def _tags(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not list or any(type(t) is not str for t in raw):
        raise ValueError("must be an array of strings")
    for t in raw:
        problem = _text_problem(t) if "\x00" not in t else None
        if problem:
            raise ValueError(problem)
    return raw


def _members(f: FieldInfo, raw: Any) -> Any:
    if type(raw) is not list or any(type(m) is not str for m in raw):
        raise ValueError("must be an array of UUID strings")
    return [uuid.UUID(m) for m in raw]


_DECODERS: dict[str, Callable[[FieldInfo, Any], Any]] = {
    "text": _text,
    "uuid": _uuid,
    "timestamp": _timestamp,
    "date": _date,
    "bool": _bool,
    "int": _int,
    "enum": _enum,
    "json": _json,
    "tags": _tags,
    "members": _members,
}


def decode_entity(cls: type[E], data: Any) -> E:
    """The entity a snapshot describes, or InvalidArgument naming every field of the wrong type. Absent fields
    take their defaults (older snapshots stay readable); unknown keys are ignored."""
    if type(data) is not dict:
        raise InvalidArgument.of([FieldViolation("data", "the snapshot must be a JSON object")])
    values: dict[str, Any] = {}
    violations: list[FieldViolation] = []
    for f in fields_of(cls):
        if f.name not in data:
            if f.name in ("id", "version"):
                violations.append(FieldViolation(f.name, "required in a snapshot"))
            continue
        raw = data[f.name]
        if raw is None:
            if f.nullable:
                values[f.name] = None
            else:
                violations.append(FieldViolation(f.name, "must not be null"))
            continue
        try:
            values[f.name] = _DECODERS[f.kind](f, raw)
        except (ValueError, TypeError, OverflowError) as exc:  # uuid/fromisoformat refusals included
            violations.append(FieldViolation(f.name, str(exc) or "malformed"))
    if violations:
        raise InvalidArgument.of(violations)
    return cls(**values)
