"""Turns a parsed ListQuery into SQL: filter terms, ORDER BY and the keyset condition after a page token.

Keyset paging (not OFFSET) walks every row present when the walk started exactly once, even while rows are
inserted. Nullable sort columns sort last, through an extra `IS NULL` key.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from server.domain.query import ListQuery, OrderKey, Term
from server.store.tables import MEMBER_TABLES

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}


def where_terms(table: sa.Table, terms: tuple[Term, ...], dialect: str) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    for term in terms:
        name = term.field.name
        if term.field.kind == "tags":
            out.append(_has_tag(table.c[name], term.value, dialect))
        elif term.field.kind == "members":
            member_table, column = MEMBER_TABLES[name]
            out.append(
                sa.exists().where(member_table.c.tool_set_id == table.c.id, member_table.c[column] == term.value)
            )
        elif term.prefix:
            out.append(table.c[name].startswith(term.value, autoescape=True))
        elif term.op == "!=" and term.field.nullable:
            out.append(table.c[name].is_distinct_from(term.value))
        else:
            out.append(_COMPARE[term.op](table.c[name], term.value))
    return out


def _has_tag(column: sa.ColumnElement[Any], tag: str, dialect: str) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return column.op("@>")(sa.cast(sa.literal(json.dumps([tag])), JSONB))
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists().select_from(each).where(each.c.value == tag)


def _nullable(table: sa.Table, key: OrderKey) -> bool:
    """Whether the sort column can hold NULL: the table decides (created_at is optional on the entity, never
    NULL in the table). An ORDER BY that starts with a NULLs-last expression can use no index (issue 11)."""
    return bool(table.c[key.field.name].nullable)


def _sort_parts(table: sa.Table, key: OrderKey) -> list[tuple[sa.ColumnElement[Any], bool]]:
    column = table.c[key.field.name]
    if _nullable(table, key):
        # NULLs last in both directions, on both engines.
        return [(sa.case((column.is_(None), 1), else_=0), False), (column, key.desc)]
    return [(column, key.desc)]


def _part_values(table: sa.Table, key: OrderKey, value: Any) -> list[Any]:
    return [1 if value is None else 0, value] if _nullable(table, key) else [value]


def order_by(table: sa.Table, query: ListQuery) -> list[sa.ColumnElement[Any]]:
    return [expr.desc() if desc else expr.asc() for key in query.order for expr, desc in _sort_parts(table, key)]


def keyset_after(table: sa.Table, query: ListQuery) -> sa.ColumnElement[bool] | None:
    """Rows strictly after the page token's position: (a > x) OR (a = x AND b > y) OR ..."""
    if query.after is None:
        return None
    parts: list[tuple[sa.ColumnElement[Any], bool, Any, bool]] = []
    for key, value in zip(query.order, query.after, strict=True):
        nullable = _nullable(table, key)
        for (expr, desc), v in zip(_sort_parts(table, key), _part_values(table, key, value), strict=True):
            parts.append((expr, desc, v, nullable))
    if not any(n for *_, n in parts) and len({d for _, d, _, _ in parts}) == 1:
        # One direction, no NULLs: a row-value comparison, which both engines answer from an index range.
        left = sa.tuple_(*(e for e, _, _, _ in parts))
        right = sa.tuple_(*(sa.literal(v, type_=e.type) for e, _, v, _ in parts))
        return left < right if parts[0][1] else left > right
    alternatives: list[sa.ColumnElement[bool]] = []
    for i, (expr, desc, value, _) in enumerate(parts):
        if value is None:
            continue  # nothing sorts after NULL within this key (NULLs are last)
        # `=` where NULL cannot occur: an index can serve it (IS NOT DISTINCT FROM it cannot, on PostgreSQL).
        same_prefix = [e.is_not_distinct_from(v) if n else e == v for e, _, v, n in parts[:i]]
        beyond = expr < value if desc else expr > value
        alternatives.append(sa.and_(*same_prefix, beyond))
    return sa.or_(*alternatives) if alternatives else sa.false()


def row_position(query: ListQuery, row: Any) -> tuple[Any, ...]:
    """The order values of a row: what the next page token records."""
    return tuple(getattr(row, key.field.name) for key in query.order)
