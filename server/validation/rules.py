"""Validation of a whole entity before it is written: length limits, required fields, tags, member lists,
JSON Schemas (json_fields.py) and cross-field rules. Returns every violation at once.

The length limits live on the entity fields (server/domain/entities.py); the README renders them as a table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from server.domain.entities import (
    JSON_MAX_BYTES,
    TAG_MAX_LEN,
    TAGS_MAX_COUNT,
    ToolAssembly,
    ToolInstance,
    ToolItem,
    ToolUsage,
    Versioned,
)
from server.domain.errors import FieldViolation
from server.domain.schema import FieldInfo, compact_json, fields_of
from server.validation import json_fields
from server.validation.snapshots import json_value_checked

MEMBERS_MAX_COUNT = 1000

# JSON field -> its checker; `tool_type` comes from the entity (geometry) or its catalog item (measurements).
_JSON_CHECKS: dict[str, Callable[[Mapping[str, Any], str | None], list[FieldViolation]]] = {
    "geometry": lambda v, tt: json_fields.check_geometry(tt or "OTHER", v),
    "measurements": lambda v, tt: json_fields.check_measurements(tt, v),
    "parameters": lambda v, _: json_fields.check_parameters(v),
    "usage_metrics": lambda v, _: json_fields.check_usage_metrics(v),
    "wear_measurements": lambda v, _: json_fields.check_wear_measurements(v),
    "assembly_data": lambda v, _: json_fields.check_assembly_data(v),
    "tool_life": lambda v, _: json_fields.check_tool_life(v),
    "tool_life_state": lambda v, _: json_fields.check_tool_life_state(v),
}


# What else a field's rules read: geometry's required symbols follow the item's tool_type, and an instance's
# measurements are checked with the tool type of the item or assembly it refers to.
_READS: dict[str, tuple[str, ...]] = {"geometry": ("tool_type",), "measurements": ("tool_item_id", "tool_assembly_id")}


def check_entity(
    entity: Versioned, *, tool_type: str | None = None, before: Versioned | None = None
) -> list[FieldViolation]:
    """Every violation of the entity's field rules and cross-field rules.

    `before`: the state the store holds of the entity this updates. A field the update leaves as it was (the very
    same value object, with whatever its rules read unchanged too) is not checked again: the stored state met the
    rules when it was written, as the rulebook already takes for references and unique keys. A collector follow-up
    that moves an instance's tool-life state no longer re-validates its presetter measurements (issue 11)."""
    if before is not None and type(before) is not type(entity):
        before = None
    out: list[FieldViolation] = []
    for f in _checked_fields(type(entity)):
        if before is not None and unchanged(entity, before, f.name):
            continue
        value = getattr(entity, f.name)
        if (  # the common case of a text field, decided inline: what _check_field would find nothing in
            f.kind == "text"
            and type(value) is str
            and len(value) <= (f.max_len or 0)
            and "\x00" not in value
            and (not f.required or value.strip())
        ):
            continue
        out.extend(_check_field(f, value, entity, tool_type))
    out.extend(_cross_field(entity))
    return out


def unchanged(entity: Versioned, before: Versioned | None, name: str) -> bool:
    """Whether an update leaves field `name` as `before` held it, with everything its rules read: then its rules
    need not run again (see check_entity)."""
    return (
        before is not None
        and type(before) is type(entity)
        and getattr(entity, name) is getattr(before, name)
        and all(getattr(entity, r) == getattr(before, r) for r in _READS.get(name, ()))
    )


_CHECKED: dict[type[Versioned], tuple[FieldInfo, ...]] = {}


def _checked_fields(cls: type[Versioned]) -> tuple[FieldInfo, ...]:
    """The fields _check_field has a rule for (ids, times and plain numbers that are optional have none)."""
    cached = _CHECKED.get(cls)
    if cached is None:
        cached = _CHECKED[cls] = tuple(
            f for f in fields_of(cls) if f.required or f.kind in ("text", "tags", "members", "json")
        )
    return cached


def _check_field(f: FieldInfo, value: Any, entity: Versioned, tool_type: str | None) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if f.kind == "text":
        out.extend(text_violations(f.name, value, f.max_len or 0))
        if f.required and not value.strip():
            out.append(FieldViolation(f.name, "required; must not be empty"))
    elif f.required and value is None:
        out.append(FieldViolation(f.name, "required"))
    elif f.kind == "tags":
        out.extend(_check_tags(f.name, value))
    elif f.kind == "members":
        if len(value) > MEMBERS_MAX_COUNT:
            out.append(FieldViolation(f.name, f"at most {MEMBERS_MAX_COUNT} members"))
        if len(set(value)) != len(value):
            out.append(FieldViolation(f.name, "lists a member twice"))
    elif f.kind == "json":
        problem, bound = json_value_checked(value) if type(value) is dict else ("must be a JSON object", 0)
        if problem:
            return [FieldViolation(f.name, problem)]
        # Encoded only when its size could be over the limit (the walk above bounds it): encoding every JSON field
        # to measure it was about a quarter of check_entity, which every writer runs on every state (issue 11).
        text = compact_json(value) if bound > JSON_MAX_BYTES else ""
        size = len(text)
        # json.dumps escapes U+0000 as \u0000 (and a literal backslash before "u0000" too): walk only then
        if "\\u0000" in text and _has_nul(value):
            # PostgreSQL's jsonb cannot store U+0000; refuse it on every engine alike.
            out.append(FieldViolation(f.name, "must not contain NUL characters in keys or strings"))
        elif size > JSON_MAX_BYTES:
            out.append(FieldViolation(f.name, f"at most {JSON_MAX_BYTES} bytes of JSON (got {size})"))
        else:
            if f.name == "geometry" and isinstance(entity, ToolItem):
                tool_type = entity.tool_type.value
            out.extend(_JSON_CHECKS[f.name](value, tool_type))
    return out


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


def text_violations(field: str, value: str, max_len: int) -> list[FieldViolation]:
    """The rules every string follows: no NUL characters, a length limit."""
    out = []
    if "\x00" in value:
        out.append(FieldViolation(field, "must not contain NUL characters"))
    if len(value) > max_len:
        out.append(FieldViolation(field, f"at most {max_len} characters (got {len(value)})"))
    return out


def _check_tags(name: str, tags: list[str]) -> list[FieldViolation]:
    out: list[FieldViolation] = []
    if len(tags) > TAGS_MAX_COUNT:
        out.append(FieldViolation(name, f"at most {TAGS_MAX_COUNT} tags"))
    for i, tag in enumerate(tags):
        if not tag.strip() or len(tag) > TAG_MAX_LEN or "\x00" in tag:
            out.append(FieldViolation(f"{name}.{i}", f"a tag is 1 to {TAG_MAX_LEN} characters, not blank"))
    if len(set(tags)) != len(tags):
        out.append(FieldViolation(name, "lists a tag twice"))
    return out


def _cross_field(entity: Versioned) -> list[FieldViolation]:
    if isinstance(entity, ToolInstance) and entity.tool_item_id is None and entity.tool_assembly_id is None:
        return [FieldViolation("tool_item_id", "a ToolInstance needs tool_item_id or tool_assembly_id (or both)")]
    if isinstance(entity, ToolAssembly) and entity.holder_id is None and entity.cutter_id is None:
        return [FieldViolation("holder_id", "a ToolAssembly needs holder_id or cutter_id (or both)")]
    if (
        isinstance(entity, ToolUsage)
        and entity.end_time is not None
        and entity.start_time is not None
        and entity.end_time < entity.start_time
    ):
        return [FieldViolation("end_time", "must not be before start_time")]
    return []
