"""The compiled (fastjsonschema, draft-07) validators must agree with the 2020-12 validator on every value: they
only short-cut values both call valid, so a disagreement would let an invalid value through."""

from __future__ import annotations

import random
from typing import Any

import fastjsonschema
import pytest

from server.validation import json_fields

FAST_FIELDS = [field for field, fast in json_fields._FAST.items() if fast is not None]


def _leaf(rng: random.Random) -> Any:
    return rng.choice(
        [
            0,
            1,
            -1,
            7,
            99999,
            100000,
            2.5,
            3.0,
            -0.0,
            1e20,
            -3.5,
            float("nan"),
            True,
            False,
            None,
            "",
            "x",
            "O4711",
            "a" * 200,
            "a" * 201,
            "2026-11-27T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "COLLECTOR",
            "MANUAL",
            "IMPORT",
            "HSK63A",
            "H6",
        ]
    )


def _value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        return [_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 101]) if rng.random() < 0.1 else 2)]
    if depth < 2 and roll < 0.25:
        keys = ["value", "value", "nominal", "min", "max", "a", "x-y"]
        return {rng.choice(keys): _value(rng, depth + 1) for _ in range(rng.randint(0, 3))}
    return _leaf(rng)


def _object(rng: random.Random, schema: dict[str, Any]) -> dict[str, Any]:
    names = list(schema.get("properties", {}))
    keys = rng.sample(names, k=min(len(names), rng.randint(0, 4)))
    if rng.random() < 0.3:
        keys.append(rng.choice(["x-note", "x-a_b", "x-Bad", "x-", "unit", "unknown", "X-upper"]))
    return {key: _value(rng) for key in keys}


@pytest.mark.parametrize("field", FAST_FIELDS)
def test_fast_and_full_validators_agree(field: str) -> None:
    rng = random.Random(f"fast-{field}")
    schema = json_fields._SCHEMAS[json_fields.SCHEMA_FILES[field]]
    fast = json_fields._FAST[field]
    assert fast is not None
    valid_seen = invalid_seen = 0
    for _ in range(3000):
        data = json_fields._plain(_object(rng, schema))
        try:
            fast(data)
            fast_valid = True
        except fastjsonschema.JsonSchemaException:
            fast_valid = False
        full_valid = json_fields._VALIDATORS[field].is_valid(data)
        assert fast_valid == full_valid, (field, data)
        valid_seen += full_valid
        invalid_seen += not full_valid
    assert valid_seen > 100 and invalid_seen > 100  # both sides of the line were exercised


def test_usage_metrics_take_the_fast_path_and_still_report_details() -> None:
    assert json_fields._FAST["usage_metrics"] is not None
    assert json_fields.check_usage_metrics({"source": "COLLECTOR", "tool_number": 3, "max_speed_rpm": 8000.0}) == []
    bad = json_fields.check_usage_metrics({"parts": -1, "x-Bad": 1})
    assert {v.field for v in bad} == {"usage_metrics.parts", "usage_metrics.x-Bad"}


def test_a_ref_with_assertions_beside_it_is_left_to_the_full_validator() -> None:
    # draft-07 ignores what sits beside a $ref; 2020-12 applies it
    assert not json_fields._fast_safe({"$ref": "#/$defs/a", "required": ["DC"]})
    assert json_fields._fast_safe({"$ref": "#/$defs/a", "title": "cutting diameter"})
    assert not json_fields._fast_safe({"type": "object", "unevaluatedProperties": False})
    # geometry's and measurements' schemas put such pairs under allOf, where both drafts apply both
    assert all(fast is not None for fast in json_fields._FAST.values())
