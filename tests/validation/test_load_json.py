"""load_json (server/domain/schema.py): orjson where it reads text as json.loads does, json.loads elsewhere; so
every JSON column, and every change an edge pushes, decodes to exactly what json.loads gives (value and type),
and text json.loads refuses is refused with json.loads's own error."""

from __future__ import annotations

import json
import random
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from server.domain.schema import load_json

EDGE_CASES = [
    # integers past 64 bits: orjson would read them as floats
    "100000000000000000000",
    "-9223372036854775809",
    "18446744073709551616",
    '{"DC": 123456789012345678901234567890}',
    "9223372036854775807",
    # what orjson refuses and json.loads accepts
    "NaN",
    "Infinity",
    "-Infinity",
    '"\\ud800"',
    '"\\udc00x"',
    "[" * 1100 + "]" * 1100,
    # numbers at the edges
    "1E400",
    "-1E400",
    "1e-400",
    "-0",
    "-0.0",
    "1.7976931348623157e308",
    "12345678901234567890.5",
    "0.30000000000000004",
    # text json.loads refuses
    "\ufeff{}",
    "[1,]",
    '{"a":1',
    "",
    "01",
    "1.",
    ".5",
    '"\x01"',
    "+1",
    # ordinary documents
    '{"a":1,"a":2}',
    ' {"a" : [1 , 2.50], "b": {"c": null, "d": true}} ',
    '"\\u0000 \\uD83D\\uDE00 é"',
]


def outcome(decode: Callable[[str], Any], text: str) -> tuple[str, ...]:
    try:
        value = decode(text)
    except RecursionError:
        return ("refused", "RecursionError")
    except ValueError as exc:
        return ("refused", type(exc).__name__, str(exc))
    return ("value", repr(value), repr(_types(value)))


def _types(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _types(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_types(v) for v in value]
    return type(value).__name__


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_decode_as_json_loads_does(text: str) -> None:
    assert outcome(load_json, text) == outcome(json.loads, text)


def test_random_documents_decode_as_json_loads_does() -> None:
    rng = random.Random(11)

    def number() -> str:
        pick = rng.random()
        if pick < 0.3:
            return str(rng.randint(-(10 ** rng.randint(1, 25)), 10 ** rng.randint(1, 25)))
        x = rng.uniform(-1e6, 1e6) if pick < 0.6 else rng.random() * 10 ** rng.randint(-300, 300)
        return repr(x) if rng.random() < 0.5 else f"{x:.{rng.randint(1, 25)}g}"

    def document(depth: int = 0) -> str:
        pick = rng.random()
        if depth > 3 or pick < 0.5:
            return number() if rng.random() < 0.7 else json.dumps(rng.choice(["a", "é", "\u2028", "x\\y", ""]))
        if pick < 0.75:
            return "[" + ",".join(document(depth + 1) for _ in range(rng.randint(0, 4))) + "]"
        return "{" + ",".join(f'"k{i}":' + document(depth + 1) for i in range(rng.randint(0, 4))) + "}"

    for _ in range(20_000):
        text = document()
        assert outcome(load_json, text) == outcome(json.loads, text), text


def test_the_size_bound_of_a_json_value_is_never_below_its_encoded_length() -> None:
    """check_entity measures a JSON field by encoding it only when the bound from its validity walk is over the
    limit: the bound must hold for every value, whatever its strings (escapes, non-ASCII, astral characters),
    numbers and nesting."""
    from server.domain.schema import compact_json
    from server.validation.snapshots import json_value_checked

    rng = random.Random(5)
    alphabet = ["a", '"', "\\", "\n", "\x01", "\x7f", "é", "\u2028", "\uffff", "😀", "𝄞", " ", "/"]

    def value(depth: int = 0) -> Any:
        pick = rng.random()
        if depth > 4 or pick < 0.5:
            leaf = rng.random()
            if leaf < 0.3:
                return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
            if leaf < 0.5:
                return rng.choice([-(2**63), 2**63 - 1, 0, -1, rng.randint(-(10**18), 10**18)])
            if leaf < 0.75:
                return rng.choice([-1.2345678901234567e-308, 1.7976931348623157e308, 5e-324, -0.0, rng.random()])
            return rng.choice([True, False, None])
        if pick < 0.75:
            return [value(depth + 1) for _ in range(rng.randint(0, 5))]
        return {
            "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))): value(depth + 1)
            for _ in range(rng.randint(0, 5))
        }

    for _ in range(20_000):
        candidate = {"v": value()}
        problem, bound = json_value_checked(candidate)
        assert problem is None
        assert len(compact_json(candidate)) <= bound, candidate


@pytest.mark.parametrize("char,width", [("a", 1), ("é", 6), ("😀", 12)])
def test_a_json_field_is_refused_exactly_past_its_size_limit(char: str, width: int) -> None:
    """The limit is on the field's compact JSON text (non-ASCII escaped), to the character, wherever the size
    bound lets check_entity skip encoding."""
    from datetime import UTC, datetime

    from server.domain.entities import JSON_MAX_BYTES, ToolItem, ToolType
    from server.validation.rules import check_entity

    def size_violations(length: int) -> list[str]:
        now = datetime.now(UTC)
        item = ToolItem(
            id=uuid.uuid4(),
            name="big",
            tool_type=ToolType.OTHER,
            geometry={"x": char * length},
            created_at=now,
            updated_at=now,
            version=1,
        )
        return [v.description for v in check_entity(item) if "bytes of JSON" in v.description]

    fits = (JSON_MAX_BYTES - len('{"x":""}')) // width
    assert size_violations(fits) == []
    assert size_violations(fits + 1) == [f"at most {JSON_MAX_BYTES} bytes of JSON (got {8 + (fits + 1) * width})"]
