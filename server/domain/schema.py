"""Introspection of the entity dataclasses: each field's kind and limits, and a JSON codec for snapshots.

Everything generic (validation, the store, the proto mapping) reads fields through `fields_of`, so an
entity is declared once, in entities.py.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import operator
import re
import types
import typing
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import orjson

from server.domain.entities import Versioned

E = typing.TypeVar("E", bound=Versioned)

FieldKind = Literal["text", "uuid", "timestamp", "date", "bool", "int", "enum", "json", "tags", "members"]
# Fields the server sets; clients may send them but they are ignored on create and refused in masks.
OUTPUT_ONLY = frozenset({"id", "owner_id", "created_at", "updated_at", "version"})


@dataclass(frozen=True, slots=True)
class FieldInfo:
    name: str
    kind: FieldKind
    nullable: bool
    required: bool = False
    max_len: int | None = None
    ref: str | None = None  # registry name of the referenced kind (uuid fields and members)
    enum_cls: type[enum.Enum] | None = None


def _unwrap_optional(hint: Any) -> tuple[Any, bool]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return args[0], len(args) != len(typing.get_args(hint))
    return hint, False


def _kind(hint: Any, meta: typing.Mapping[str, Any]) -> tuple[FieldKind, type[enum.Enum] | None]:
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "enum", hint
    simple: dict[Any, FieldKind] = {
        str: "text",
        uuid.UUID: "uuid",
        datetime: "timestamp",
        date: "date",
        bool: "bool",
        int: "int",
    }
    if hint in simple:
        return simple[hint], None
    origin = typing.get_origin(hint)
    if origin is dict:
        return "json", None
    if origin is list:
        return ("members" if "members" in meta else "tags"), None
    raise TypeError(f"unsupported entity field type {hint!r}")


_FIELDS: dict[type[Versioned], tuple[FieldInfo, ...]] = {}
_FIELD_MAPS: dict[type[Versioned], dict[str, FieldInfo]] = {}


def fields_of(cls: type[Versioned]) -> tuple[FieldInfo, ...]:
    """The fields of an entity class in declaration order (id first)."""
    cached = _FIELDS.get(cls)
    if cached is None:
        cached = _FIELDS[cls] = _introspect(cls)
    return cached


def _introspect(cls: type[Versioned]) -> tuple[FieldInfo, ...]:
    hints = typing.get_type_hints(cls)
    out: list[FieldInfo] = []
    for f in dataclasses.fields(cls):
        hint, nullable = _unwrap_optional(hints[f.name])
        kind, enum_cls = _kind(hint, f.metadata)
        out.append(
            FieldInfo(
                name=f.name,
                kind=kind,
                nullable=nullable,
                required=bool(f.metadata.get("required", False)),
                max_len=f.metadata.get("max_len"),
                ref=f.metadata.get("ref") or f.metadata.get("members"),
                enum_cls=enum_cls,
            )
        )
    # id first: it reads better in snapshots and errors.
    out.sort(key=lambda fi: fi.name != "id")
    return tuple(out)


def field_map(cls: type[Versioned]) -> dict[str, FieldInfo]:
    cached = _FIELD_MAPS.get(cls)
    if cached is None:
        cached = _FIELD_MAPS[cls] = {f.name: f for f in fields_of(cls)}
    return cached


class JsonText(str):
    """A JSON value already encoded as text: stores pass it through instead of encoding it again."""

    __slots__ = ()


_COMPACT = json.JSONEncoder(separators=(",", ":"))


def compact_json(value: Any) -> str:
    """JSON text without spaces. (json.dumps with any argument builds a new encoder per call; this one is made
    once, which matters where every change of a batch is encoded.)"""
    return _COMPACT.encode(value)


def load_json(text: str) -> Any:
    """json.loads, faster: orjson parses what it can (3-5x faster; a List page decodes three JSON columns a row),
    and the json module the rest, so every value and every refusal is json.loads's own. orjson refuses some text
    json.loads accepts (NaN and Infinity, lone surrogates, nesting past 1,024), and reads integers of 19 digits or
    more as floats where json.loads keeps them exact: text with such a run of digits goes to json.loads at once."""
    if _LONG_DIGITS.search(text):
        return json.loads(text)
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


_LONG_DIGITS = re.compile(r"[0-9]{19}")


def to_json(entity: Versioned) -> dict[str, Any]:
    """A JSON-ready snapshot of an entity (ids as strings, times as RFC 3339, enums by name)."""
    out: dict[str, Any] = {}
    for name, encode in _codecs(type(entity))[0]:
        value = getattr(entity, name)
        out[name] = value if encode is None or value is None else encode(value)
    return out


_Codec = tuple[tuple[tuple[str, Callable[[Any], Any] | None], ...], tuple[tuple[str, Callable[[Any], Any] | None], ...]]
_CODECS: dict[type[Versioned], _Codec] = {}


def _codecs(cls: type[Versioned]) -> _Codec:
    """(encoders, decoders) per field, None where the value is stored as it is: `encode_value`/`decode_value`
    resolved once per class (snapshots are encoded and decoded for every change)."""
    cached = _CODECS.get(cls)
    if cached is None:
        fields = fields_of(cls)
        cached = _CODECS[cls] = (
            tuple((f.name, _encoder(f)) for f in fields),
            tuple((f.name, _decoder(f)) for f in fields),
        )
    return cached


def _encoder(f: FieldInfo) -> Callable[[Any], Any] | None:
    if f.kind == "uuid":
        return str
    if f.kind in ("timestamp", "date"):
        return operator.methodcaller("isoformat")
    if f.kind == "enum":
        return operator.attrgetter("value")
    if f.kind == "members":
        return lambda value: [str(v) for v in value]
    return None


def _decoder(f: FieldInfo) -> Callable[[Any], Any] | None:
    if f.kind == "uuid":
        return uuid.UUID
    if f.kind == "timestamp":
        return datetime.fromisoformat
    if f.kind in ("date", "enum", "members"):
        return lambda raw: decode_value(f, raw)
    return None


def encode_value(f: FieldInfo, value: Any) -> Any:
    if value is None:
        return None
    if f.kind == "uuid":
        return str(value)
    if f.kind in ("timestamp", "date"):
        return typing.cast(date, value).isoformat()
    if f.kind == "enum":
        return typing.cast(enum.Enum, value).value
    if f.kind == "members":
        return [str(v) for v in value]
    return value


def from_json(cls: type[E], data: typing.Mapping[str, Any]) -> E:
    """The inverse of `to_json`; unknown keys are ignored (older snapshots stay readable)."""
    values: dict[str, Any] = {}
    for name, decode in _codecs(cls)[1]:
        if name not in data:
            continue
        raw = data[name]
        values[name] = raw if decode is None or raw is None else decode(raw)
    return cls(**values)


def decode_value(f: FieldInfo, raw: Any) -> Any:
    if raw is None:
        return None
    if f.kind == "uuid":
        return uuid.UUID(raw)
    if f.kind == "timestamp":
        return datetime.fromisoformat(raw)
    if f.kind == "date":
        return date.fromisoformat(raw)
    if f.kind == "enum":
        assert f.enum_cls is not None
        return f.enum_cls(raw)
    if f.kind == "members":
        return [uuid.UUID(v) for v in raw]
    return raw
