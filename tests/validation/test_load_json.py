"""load_json (server/domain/schema.py): orjson where it reads text as json.loads does, json.loads elsewhere; so
every JSON column, and every change an edge pushes, decodes to exactly what json.loads gives (value and type),
and text json.loads refuses is refused with json.loads's own error."""

from __future__ import annotations

import json
import random
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
