"""Checks the free-form JSON fields (geometry, measurements, parameters, usage, wear, assembly data).

Schemas: server/validation/schemas/*.json (package data, JSON Schema 2020-12); cross-field rules live here.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from importlib.resources import files
from types import MappingProxyType
from typing import Any, cast

import fastjsonschema
from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from referencing import Registry, Resource

from server.domain.entities import ToolType
from server.domain.errors import FieldViolation

TOOL_TYPES: tuple[str, ...] = tuple(tool_type.value for tool_type in ToolType)

SCHEMA_FILES: Mapping[str, str] = MappingProxyType(
    {
        "geometry": "geometry.json",
        "measurements": "measurements.json",
        "parameters": "parameters.json",
        "usage_metrics": "usage_metrics.json",
        "wear_measurements": "wear_measurements.json",
        "assembly_data": "assembly_data.json",
        "tool_life": "tool_life.json",
        "tool_life_state": "tool_life_state.json",
    }
)
_SHARED_FILES = ("common.json",)

# Values come from protobuf doubles, so "equal" and "not greater" allow for rounding.
_TOLERANCE = 1e-6
_UNIT_KEYS = frozenset({"unit", "units", "unit_system"})
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")

# (symbol, bound, factor, bound as written): symbol must not exceed factor * bound (DOMAIN.md 2.1).
_GEOMETRY_LIMITS = (
    ("RE", "DC", 0.5, "DC/2"),
    ("LU", "OAL", 1.0, "OAL"),
    ("LF", "OAL", 1.0, "OAL"),
    ("APMX", "LF", 1.0, "LF"),
)


def _is_rfc3339(value: object) -> bool:
    if not isinstance(value, str):
        return True  # the schema's "type" reports non-strings
    text = value.upper()  # RFC 3339 allows lower-case "t" and "z"
    if _RFC3339.fullmatch(text) is None:
        return False
    try:  # the regex checks the shape, fromisoformat the calendar (no February 30)
        datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _load(name: str) -> dict[str, Any]:
    text = files(__name__.rpartition(".")[0]).joinpath("schemas", name).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)  # a broken schema file fails at import, not per request
    return schema


_SCHEMAS = {name: _load(name) for name in (*SCHEMA_FILES.values(), *_SHARED_FILES)}
_REGISTRY: Registry[Any] = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in _SCHEMAS.values()
)
# Draft 2020-12 treats "format" as an annotation; this checker makes date-time an assertion.
_FORMATS = FormatChecker(formats=())
_FORMATS.checks("date-time")(_is_rfc3339)
_VALIDATORS = {
    field: Draft202012Validator(_SCHEMAS[name], registry=_REGISTRY, format_checker=_FORMATS)
    for field, name in SCHEMA_FILES.items()
}
# Keywords whose meaning is the same in JSON Schema draft-07 (what fastjsonschema compiles) and 2020-12.
_FAST_KEYWORDS = frozenset(
    {
        "$comment", "$defs", "$id", "$ref", "$schema", "additionalProperties", "allOf", "anyOf", "description", "enum",
        "exclusiveMinimum", "format", "items", "maxItems", "maxLength", "maximum", "minLength", "minimum",
        "patternProperties", "properties", "required", "title", "type",
    }
)  # fmt: skip
_ANNOTATIONS = frozenset({"$comment", "description", "title"})


def _fast_safe(schema: object, *, names: bool = False) -> bool:
    """Whether draft-07 reads this schema exactly as 2020-12 does: known keywords only, and no assertion beside a
    $ref (draft-07 ignores a $ref's siblings). `names`: `schema` maps property names to schemas."""
    if isinstance(schema, list):
        return all(_fast_safe(item) for item in schema)
    if not isinstance(schema, dict):
        return True
    if names:
        return all(_fast_safe(item) for item in schema.values())
    if not set(schema) <= _FAST_KEYWORDS or ("$ref" in schema and not set(schema) - {"$ref"} <= _ANNOTATIONS):
        return False
    return all(
        _fast_safe(value, names=key in ("properties", "patternProperties", "$defs"))
        for key, value in schema.items()
        if key not in ("enum", "required", *_ANNOTATIONS)
    )


def _compile_fast(name: str) -> Callable[[object], object] | None:
    """A compiled validator (fastjsonschema, ~20x faster) that only says valid or not; None where its draft-07
    reading could differ. Invalid values always go to the 2020-12 validator, which says what is wrong."""
    by_id = {schema["$id"]: schema for schema in _SCHEMAS.values()}
    # A schema refers to itself and to the shared files only.
    if not all(_fast_safe(_SCHEMAS[n]) for n in (name, *_SHARED_FILES)):
        return None
    return cast(
        Callable[[object], object],
        fastjsonschema.compile(
            _SCHEMAS[name], handlers={"https": by_id.__getitem__}, formats={"date-time": _is_rfc3339}, use_default=False
        ),
    )


_FAST = {field: _compile_fast(name) for field, name in SCHEMA_FILES.items()}
_REQUIRED_SYMBOLS: Mapping[str, tuple[str, ...]] = {
    tool_type: tuple(_SCHEMAS["geometry.json"]["$defs"][tool_type]["allOf"][1]["required"]) for tool_type in TOOL_TYPES
}


def check_geometry(tool_type: str, geometry: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolItem.geometry: ISO 13399 symbols, the required set of `tool_type`, and the cross-field rules."""
    violations = _tool_type_violations(tool_type)
    data, schema_violations = _validate("geometry", geometry)
    violations += schema_violations
    if data is None:
        return violations
    required = _REQUIRED_SYMBOLS.get(tool_type, ())
    for symbol in required:
        if symbol not in data:
            violations.append(
                FieldViolation(f"geometry.{symbol}", f"required for tool_type {tool_type} ({', '.join(required)})")
            )
    numbers = _valid_numbers("geometry", data, violations)
    for symbol, bound, factor, written in _GEOMETRY_LIMITS:
        if symbol not in numbers or bound not in numbers:
            continue
        value, limit = numbers[symbol], numbers[bound] * factor
        if symbol == "RE" and tool_type == ToolType.BALL_END_MILL:
            if abs(value - limit) > _TOLERANCE:
                violations.append(
                    FieldViolation("geometry.RE", f"must equal DC/2 for BALL_END_MILL (RE {value:g}, DC/2 {limit:g})")
                )
        elif value > limit + _TOLERANCE:
            violations.append(
                FieldViolation(f"geometry.{symbol}", f"must be <= {written} ({symbol} {value:g} > {limit:g})")
            )
    return violations


def check_measurements(tool_type: str | None, measurements: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolInstance.measurements. Any symbol is allowed for any tool_type: presetters measure what they measure."""
    violations = [] if tool_type is None else _tool_type_violations(tool_type)
    data, schema_violations = _validate("measurements", measurements)
    violations += schema_violations
    symbols = _schema("measurements")["properties"]
    for symbol, entry in (data or {}).items():
        if symbol not in symbols or not isinstance(entry, dict):
            continue
        # A value outside [min, max] is a valid result (the tool is out of tolerance); min > max is bad data.
        bounds = _valid_numbers(f"measurements.{symbol}", entry, violations)
        if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"] + _TOLERANCE:
            violations.append(
                FieldViolation(
                    f"measurements.{symbol}.max",
                    f"must be >= min (min {bounds['min']:g} > max {bounds['max']:g})",
                )
            )
    return violations


def check_tool_life(policy: Mapping[str, Any]) -> list[FieldViolation]:
    """tool_life of an item, assembly or instance: per counter {limit, prewarning?, direction?}; a prewarning
    counting UP comes before the limit (counting DOWN it is what remains: also at most the limit)."""
    data, violations = _validate("tool_life", policy)
    for counter, spec in (data or {}).items():
        if not isinstance(spec, dict):
            continue
        numbers = _valid_numbers(f"tool_life.{counter}", spec, violations)
        limit, prewarning = numbers.get("limit"), numbers.get("prewarning")
        if limit is not None and prewarning is not None and prewarning > limit + _TOLERANCE:
            violations.append(
                FieldViolation(f"tool_life.{counter}.prewarning", f"must be <= limit ({prewarning:g} > {limit:g})")
            )
    return violations


def check_tool_life_state(state: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolInstance.tool_life_state, as the server maintains it (replication brings it from other stores)."""
    return _validate("tool_life_state", state)[1]


def check_parameters(parameters: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolPreset.parameters: how one machine addresses the tool (T number, pocket, offsets, tool life)."""
    return _validate("parameters", parameters)[1]


def check_usage_metrics(usage_metrics: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolUsage.usage_metrics; the spindle can only run while the tool is in it."""
    data, violations = _validate("usage_metrics", usage_metrics)
    numbers = _valid_numbers("usage_metrics", data or {}, violations)
    runtime, in_spindle = numbers.get("spindle_runtime_s"), numbers.get("time_in_spindle_s")
    if runtime is not None and in_spindle is not None and runtime > in_spindle + _TOLERANCE:
        violations.append(
            FieldViolation(
                "usage_metrics.spindle_runtime_s",
                f"must be <= time_in_spindle_s ({runtime:g} > {in_spindle:g})",
            )
        )
    return violations


def check_wear_measurements(wear: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolUsage.wear_measurements: symbols before/after the usage, flank and crater wear."""
    return _validate("wear_measurements", wear)[1]


def check_assembly_data(assembly_data: Mapping[str, Any]) -> list[FieldViolation]:
    """ToolAssembly.assembly_data: gauge length, stick-out, collet, balance grade, coolant."""
    return _validate("assembly_data", assembly_data)[1]


def _tool_type_violations(tool_type: str) -> list[FieldViolation]:
    if tool_type in TOOL_TYPES:
        return []
    return [FieldViolation("tool_type", f"unknown tool_type {str(tool_type)!r}; allowed: {', '.join(TOOL_TYPES)}")]


def _schema(field: str) -> dict[str, Any]:
    return cast(dict[str, Any], _VALIDATORS[field].schema)


def _validate(field: str, value: object) -> tuple[dict[str, Any] | None, list[FieldViolation]]:
    """The plain-dict copy of `value` (None if it is no object) and its schema violations."""
    data = _plain(value)
    if not isinstance(data, dict):
        return None, [FieldViolation(field, _schema(field)["description"])]
    fast = _FAST[field]
    if fast is not None:
        try:
            fast(data)
            return data, []
        except fastjsonschema.JsonSchemaException:
            pass  # invalid (or beyond the fast validator): the full validator says what is wrong
    violations: list[FieldViolation] = []
    for error in _VALIDATORS[field].iter_errors(data):
        path = ".".join(str(part) for part in (field, *error.absolute_path))
        violations.extend(_describe(path, error))
    return data, list(dict.fromkeys(violations))  # "required" reports each missing key once per error


_SCALARS = frozenset({str, int, bool, type(None)})


def _plain(value: object) -> object:
    """Copies Struct-like containers into the dicts and lists jsonschema's types expect."""
    if type(value) is dict and all(
        type(k) is str and (type(v) in _SCALARS or (type(v) is float and math.isfinite(v))) for k, v in value.items()
    ):
        return value  # a flat dict of JSON scalars (geometry, usage metrics, parameters): nothing to copy
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, Sequence):
        return [_plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # NaN passes every comparison in the schema and cannot be stored as JSON; None fails "type"
    return value


def _describe(path: str, error: ValidationError) -> list[FieldViolation]:
    schema: Mapping[str, Any] = error.schema if isinstance(error.schema, Mapping) else {}
    instance = error.instance if isinstance(error.instance, dict) else {}
    if error.validator == "additionalProperties":
        return [FieldViolation(f"{path}.{key}", _unknown_key(key, schema)) for key in _extra_keys(instance, schema)]
    if error.validator == "required":
        properties = schema.get("properties", {})
        return [
            FieldViolation(f"{path}.{key}", _required(properties.get(key)))
            for key in cast(list[str], error.validator_value)
            if key not in instance
        ]
    return [FieldViolation(path, str(schema.get("description", error.message)))]


def _extra_keys(instance: Mapping[str, Any], schema: Mapping[str, Any]) -> Iterable[str]:
    properties, patterns = schema.get("properties", {}), schema.get("patternProperties", {})
    return (
        key for key in instance if key not in properties and not any(re.search(pattern, key) for pattern in patterns)
    )


def _unknown_key(key: str, schema: Mapping[str, Any]) -> str:
    patterns = list(schema.get("patternProperties", {}))
    if key.lower() in _UNIT_KEYS:
        return "units are not stored: send mm, deg and g (inches are converted at the boundary)"
    if key.startswith("x-") and patterns:
        return f"bad extension key {key!r}: must match {patterns[0]}"
    allowed = ", ".join(schema.get("properties", {}))
    return f"unknown key {key!r}; allowed: {allowed}" + (" or an 'x-' extension key" if patterns else "")


def _required(property_schema: object) -> str:
    if isinstance(property_schema, Mapping) and "description" in property_schema:
        return f"required; {property_schema['description']}"
    return "required"


def _valid_numbers(path: str, data: Mapping[str, Any], violations: Sequence[FieldViolation]) -> dict[str, float]:
    """The numeric entries of `data` that passed the schema, so a cross-field rule never repeats a schema error."""
    flagged = {violation.field for violation in violations}
    return {
        key: float(value)
        for key, value in data.items()
        if isinstance(value, int | float) and not isinstance(value, bool) and f"{path}.{key}" not in flagged
    }
