"""List requests: the AIP-160 filter subset, order_by, page sizes and opaque keyset page tokens.

Parsing here is pure; the store turns the parsed query into SQL (server/store/query.py).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any, Generic, TypeVar

from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.query import ListQuery, OrderKey, Term
from server.domain.registry import EntityKind
from server.domain.schema import FieldInfo, compact_json, decode_value, encode_value, field_map

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
MAX_FILTER_TERMS = 20
# Parsed filters and sort orders kept by their text: a client lists with the same few again and again, and
# parsing them and the page token's fingerprint were 3-4 % of a List's server time (issue 11). Parsing is pure;
# what fails to parse is not kept, nor is a text longer than PARSED_KEPT_MAX_LEN (the cache's memory stays bounded
# whatever clients send).
PARSED_KEPT = 1024
PARSED_KEPT_MAX_LEN = 1000


class _Kept(Generic[T]):
    """`parse` with its results kept (`cache`) for texts up to PARSED_KEPT_MAX_LEN characters."""

    def __init__(self, parse: Callable[[EntityKind, str], T]) -> None:
        self.parse = parse
        self.cache = functools.lru_cache(maxsize=PARSED_KEPT)(parse)
        self.__doc__ = parse.__doc__

    def __call__(self, kind: EntityKind, text: str) -> T:
        return self.cache(kind, text) if len(text) <= PARSED_KEPT_MAX_LEN else self.parse(kind, text)


_TOKEN = re.compile(
    r"""\s*(?:(?P<and>AND)\b|(?P<field>[a-z_][a-z0-9_]*)\s*(?P<op>!=|<=|>=|=|<|>|:)\s*"""
    r"""(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<bare>[^\s"]+)))\s*"""
)
_ORDERABLE_OPS: frozenset[str] = frozenset({"=", "!=", "<", "<=", ">", ">="})


def _bad(field: str, description: str) -> InvalidArgument:
    return InvalidArgument.of([FieldViolation(field, description)])


@_Kept
def parse_filter(kind: EntityKind, text: str) -> tuple[Term, ...]:
    """Parse `field op value [AND field op value ...]` against the kind's filterable fields."""
    text = text.strip()
    if not text:
        return ()
    fields = field_map(kind.cls)
    terms: list[Term] = []
    pos, expect_term = 0, True
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise _bad("filter", f"cannot parse filter at character {pos}: {text[pos : pos + 30]!r}")
        pos = m.end()
        if m.group("and"):
            if expect_term:
                raise _bad("filter", "AND must join two terms")
            expect_term = True
            continue
        if not expect_term:
            raise _bad("filter", "join terms with AND (OR is not supported)")
        expect_term = False
        name, op = m.group("field"), m.group("op")
        if name not in kind.filterable:
            allowed = ", ".join(sorted(kind.filterable))
            raise _bad("filter", f"cannot filter {kind.label} by {name!r}; allowed: {allowed}")
        if "\x00" in m.group(0):
            raise _bad("filter", "must not contain NUL characters")
        raw = m.group("quoted")
        raw = raw.replace('\\"', '"').replace("\\\\", "\\") if raw is not None else m.group("bare")
        terms.append(_term(fields[name], op, raw))
    if expect_term:
        raise _bad("filter", "filter ends with AND")
    if len(terms) > MAX_FILTER_TERMS:
        raise _bad("filter", f"at most {MAX_FILTER_TERMS} terms")
    return tuple(terms)


def _term(f: FieldInfo, op: str, raw: str) -> Term:
    if f.kind in ("tags", "members"):
        if op != ":":
            raise _bad("filter", f'{f.name} supports only the has operator, e.g. {f.name}:"value"')
        value: Any = raw if f.kind == "tags" else _typed(f, raw)
        return Term(f, ":", value)
    if op == ":":
        raise _bad("filter", f"the has operator ':' applies to tags and member lists, not {f.name}")
    if f.kind in ("uuid", "bool", "enum") and op not in ("=", "!="):
        raise _bad("filter", f"{f.name} supports only = and !=")
    if f.kind == "text" and raw.endswith("*") and op == "=":
        return Term(f, "=", raw[:-1], prefix=True)
    assert op in _ORDERABLE_OPS
    return Term(f, op, _typed(f, raw))  # type: ignore[arg-type]


def _typed(f: FieldInfo, raw: str) -> Any:
    try:
        if f.kind in ("uuid", "members"):
            return uuid.UUID(raw)
        if f.kind == "timestamp":
            value = datetime.fromisoformat(raw.replace("Z", "+00:00"))
            if value.tzinfo is None:
                raise ValueError("a timezone is required")
            return value.astimezone(UTC)
        if f.kind == "date":
            return date.fromisoformat(raw)
        if f.kind == "bool":
            if raw not in ("true", "false"):
                raise ValueError("use true or false")
            return raw == "true"
        if f.kind == "enum":
            assert f.enum_cls is not None
            names = [e.name for e in f.enum_cls]
            for name in names:
                if raw == name or (raw.endswith("_" + name) and raw.startswith(_enum_prefix(f))):
                    return f.enum_cls[name]
            raise ValueError(f"one of {', '.join(names)}")
    except (ValueError, OverflowError) as exc:
        raise _bad("filter", f"bad value {raw!r} for {f.name}: {exc}") from None
    return raw


def _enum_prefix(f: FieldInfo) -> str:
    assert f.enum_cls is not None
    return re.sub(r"(?<!^)(?=[A-Z])", "_", f.enum_cls.__name__).upper()


@_Kept
def parse_order_by(kind: EntityKind, text: str) -> tuple[OrderKey, ...]:
    fields = field_map(kind.cls)
    keys: list[OrderKey] = []
    text = text.strip() or kind.default_order
    for part in text.split(","):
        words = part.split()
        if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
            raise _bad("order_by", f"cannot parse {part.strip()!r}; use 'field' or 'field desc'")
        name = words[0]
        if name not in kind.orderable and name != "id":
            allowed = ", ".join(sorted(kind.orderable))
            raise _bad("order_by", f"cannot order {kind.label} by {name!r}; allowed: {allowed}")
        if any(k.field.name == name for k in keys):
            raise _bad("order_by", f"{name!r} appears twice")
        keys.append(OrderKey(fields[name], len(words) == 2 and words[1].lower() == "desc"))
    if not any(k.field.name == "id" for k in keys):
        keys.append(OrderKey(fields["id"], keys[-1].desc))  # the tie-breaker makes keyset paging exact
    return tuple(keys)


def page_size_of(requested: int) -> int:
    if requested < 0:
        raise _bad("page_size", "must not be negative")
    return DEFAULT_PAGE_SIZE if requested == 0 else min(requested, MAX_PAGE_SIZE)


def _fingerprint(kind: EntityKind, filter_text: str, order_text: str) -> str:
    return _hashed(kind, f"{filter_text}\0{order_text}")


@_Kept
def _hashed(kind: EntityKind, text: str) -> str:
    return hashlib.sha256(f"{kind.name}\0{text}".encode()).hexdigest()[:16]


def encode_token(query: ListQuery, filter_text: str, order_text: str, last_values: tuple[Any, ...]) -> str:
    payload = {
        "q": _fingerprint(query.kind, filter_text, order_text),
        "v": [encode_value(k.field, v) for k, v in zip(query.order, last_values, strict=True)],
    }
    raw = compact_json(payload).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(
    kind: EntityKind, order: tuple[OrderKey, ...], token: str, filter_text: str, order_text: str
) -> tuple[Any, ...]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        values = payload["v"]
        if payload["q"] != _fingerprint(kind, filter_text, order_text) or len(values) != len(order):
            raise _bad("page_token", "the token belongs to another filter or order_by; start from the first page")
        return tuple(_checked(k.field, decode_value(k.field, v)) for k, v in zip(order, values, strict=True))
    except InvalidArgument:
        raise
    except Exception:  # any malformed or tampered token, whatever the decoder trips on
        raise _bad("page_token", "not a page token of this list; pass next_page_token unchanged") from None


def _checked(f: FieldInfo, value: Any) -> Any:
    """A decoded token value must have its field's type (tokens are not signed: never trust their content)."""
    if value is None:
        if not f.nullable:
            raise ValueError(f"{f.name} cannot be empty")
        return None
    expected: dict[str, type | tuple[type, ...]] = {
        "text": str,
        "uuid": uuid.UUID,
        "timestamp": datetime,
        "date": date,
        "bool": bool,
        "int": int,
    }
    wanted = expected.get(f.kind)
    if wanted is not None and (not isinstance(value, wanted) or (f.kind == "int" and isinstance(value, bool))):
        raise ValueError(f"{f.name} has the wrong type")
    if f.kind == "timestamp" and value.tzinfo is None:
        raise ValueError(f"{f.name} needs a timezone")
    if f.kind == "date" and isinstance(value, datetime):
        raise ValueError(f"{f.name} must be a date")
    return value


def build_query(kind: EntityKind, *, page_size: int, page_token: str, filter_text: str, order_by: str) -> ListQuery:
    """Validate every list parameter at once into a ListQuery."""
    terms = parse_filter(kind, filter_text)
    order = parse_order_by(kind, order_by)
    after = decode_token(kind, order, page_token, filter_text, order_by) if page_token else None
    return ListQuery(kind, terms, order, page_size_of(page_size), after)
