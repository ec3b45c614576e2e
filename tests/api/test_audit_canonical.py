"""The audit chain's canonical text: orjson's fast path writes exactly the json module's text (the one entries
written before it were hashed over), or steps aside. 20,000 random entry payloads: unicode and control
characters, floats of every magnitude (exponent forms, integral ones beyond 64 bits, NaN and infinities), big
integers, keys that are not strings, UUIDs, datetimes in several zones."""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from server.domain.entities import ToolInstance
from server.domain.identity import AuditEntry
from server.domain.schema import to_json
from server.usecases import audit

CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=audit._json_default, ensure_ascii=False)
TEXT = 'aZ09 -_:,[]{}"\\/ e E 1e5 :2e-6, ä ø \u2013 日本 \u2028 \x7f \x00 \x1f \n\t 😀'


def slow(payload: dict[str, Any]) -> bytes:
    return CANONICAL.encode(audit._canonical_numbers(payload)).encode()


def number(rnd: random.Random) -> Any:
    pick = rnd.randrange(9)
    if pick == 0:
        return rnd.uniform(-1e6, 1e6)
    if pick == 1:
        return rnd.random() * 10.0 ** rnd.randint(-40, 40)
    if pick == 2:
        return float(rnd.randint(-(10**6), 10**6)) / 8
    if pick == 3:
        return round(rnd.uniform(0, 500), rnd.randint(0, 6))
    if pick == 4:
        return rnd.choice([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e16, 1e20, 1e300, 5e-324, 2.0**63])
    if pick == 5:
        return rnd.choice([2**63 - 1, -(2**63), 2**64, 10**30, -1, 0])
    if pick == 6:
        return rnd.randint(-(10**12), 10**12)
    return rnd.choice([True, False, None])


def text(rnd: random.Random) -> str:
    return "".join(rnd.choice(TEXT) for _ in range(rnd.randint(0, 12)))


def value(rnd: random.Random, depth: int = 0) -> Any:
    pick = rnd.randrange(10 if depth < 3 else 6)
    if pick < 3:
        return number(rnd)
    if pick < 5:
        return text(rnd)
    if pick == 5:
        return rnd.choice([uuid.UUID(int=rnd.getrandbits(128)), _instant(rnd)])
    if pick < 8:
        keys: list[Any] = [text(rnd) for _ in range(rnd.randint(0, 5))]
        if rnd.random() < 0.03:
            keys.append(rnd.choice([1, 2.5, None, True]))  # json writes these as strings; orjson refuses them
        return {k: value(rnd, depth + 1) for k in keys}
    return [value(rnd, depth + 1) for _ in range(rnd.randint(0, 4))]


def _instant(rnd: random.Random) -> datetime:
    zone = rnd.choice([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-5, minutes=-30)), None])
    moment = datetime(2026, 1, 1) + timedelta(seconds=rnd.randint(0, 10**8), microseconds=rnd.choice([0, 1, 999999]))
    return moment.replace(tzinfo=zone)


def test_the_fast_text_is_the_json_modules_text_or_none() -> None:
    rnd = random.Random(11)
    fast_taken = 0
    for _ in range(20_000):
        payload = {text(rnd): value(rnd) for _ in range(rnd.randint(1, 6))}
        try:
            expected = slow(payload)
        except (TypeError, ValueError) as exc:  # lone surrogates cannot be UTF-8; both refuse alike
            with pytest.raises(type(exc)):
                audit.canonical_text(payload)
            continue
        fast = audit.fast_canonical_text(payload)
        if fast is not None:
            fast_taken += 1
            assert fast == expected, payload
        assert audit.canonical_text(payload) == expected
    assert fast_taken > 5_000  # the fast path is not a dead branch


def test_a_usual_entry_takes_the_fast_path_and_hashes_as_before() -> None:
    now = datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=UTC)
    instance = ToolInstance(
        id=uuid.uuid4(),
        tool_item_id=uuid.uuid4(),
        serial_number="SN-1 ø",
        measurements={"DC": {"value": 9.998, "min": 9.99, "max": 10.0}},
        tool_life_state={"used": {"cycles": 10, "minutes": 12.5}},
        created_at=now,
        updated_at=now,
        version=3,
    )
    before = to_json(instance)
    entry = AuditEntry(
        occurred_at=now,
        actor_id=uuid.uuid4(),
        action="tool_instance.update",
        entity_type="tool_instance",
        entity_id=str(instance.id),
        entity_version=4,
        before=before,
        after={**before, "version": 4},
        peer="collector",
    )
    payload = {name: getattr(entry, name) for name in ("occurred_at", "actor_id", "action", "before", "after")}
    assert audit.fast_canonical_text(payload) == slow(payload)
    digest = audit.entry_hash(entry, "ab" * 32, seq=5)
    whole = {f.name: getattr(entry, f.name) for f in audit._ENTRY_FIELDS if f.name != "hash"}
    assert digest == __import__("hashlib").sha256(slow({**whole, "prev_hash": "ab" * 32, "seq": 5})).hexdigest()
