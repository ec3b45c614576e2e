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

from server.domain.query import ListQuery, OrderKey
from server.store.tables import MEMBER_TABLES

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda c, v: c == v,
    "!=": lambda c, v: c != v,
    "<": lambda c, v: c < v,
    "<=": lambda c, v: c <= v,
    ">": lambda c, v: c > v,
    ">=": lambda c, v: c >= v,
}

Getter = Callable[[ListQuery], Any]

# Pages' statements by shape: built once each (SQLAlchemy's statement building and cache-key walk cost a List
# more than its SELECT, issue 11). Bounded: when full it starts again (shapes are few: a client's filters).
MAX_PAGE_SHAPES = 512
_PAGES: dict[tuple[Any, ...], tuple[sa.Select[Any], tuple[tuple[str, Getter], ...]]] = {}


def page_select(
    base: sa.Select[Any], table: sa.Table, query: ListQuery, dialect: str
) -> tuple[sa.Select[Any], dict[str, Any]]:
    """The SELECT of one page (`base` filtered, sorted, after the page token's position, one row more than the
    page) and its parameters. The statement of a shape (the query without its values) is built once, with every
    value a named bind parameter: a List builds only the parameters."""
    key = (base, *_shape(query, dialect))  # the base by identity: the store's is built once per kind
    built = _PAGES.get(key)
    if built is None:
        binds = _Binds(query)
        conditions = where_terms(table, query, dialect, binds)
        if query.private_viewer is not None and "is_global" in table.c:
            viewer = binds(lambda qy: qy.private_viewer, table.c.owner_id.type)
            conditions.append(sa.or_(table.c.is_global.is_(True), table.c.owner_id == viewer))
        after = keyset_after(table, query, binds)
        if after is not None:
            conditions.append(after)
        stmt = base.where(*conditions).order_by(*order_by(table, query)).limit(query.page_size + 1)
        built = (stmt, tuple(binds.getters))
        if len(_PAGES) >= MAX_PAGE_SHAPES:
            _PAGES.clear()
        _PAGES[key] = built
    stmt, getters = built
    return stmt, {name: get(query) for name, get in getters}


def _shape(query: ListQuery, dialect: str) -> tuple[Any, ...]:
    """What decides a page's SQL: everything but the values, except whether a value is NULL (it is compared
    with IS, and a NULL sort value ends its keyset alternative)."""
    return (
        dialect,
        query.kind.name,
        tuple((t.field.name, t.op, t.prefix, t.value is None) for t in query.terms),
        tuple((k.field.name, k.desc) for k in query.order),
        query.page_size,
        query.private_viewer is not None,
        None if query.after is None else tuple(v is None for v in query.after),
    )


class _Binds:
    """Makes each value of a page a named bind parameter, and records how to take it from any query of the same
    shape (`getter`). A NULL is written into the SQL instead (IS NULL): whether a value is NULL is part of the
    shape."""

    def __init__(self, query: ListQuery) -> None:
        self.query = query
        self.getters: list[tuple[str, Getter]] = []

    def __call__(self, getter: Getter, type_: Any) -> Any:
        value = getter(self.query)
        if value is None:
            return None
        name = f"p{len(self.getters)}"
        self.getters.append((name, getter))
        return sa.bindparam(name, value, type_=type_)


def _term_value(i: int) -> Getter:
    return lambda query: query.terms[i].value


def _escaped_prefix(i: int) -> Getter:
    """A prefix term's value for LIKE ... ESCAPE '/' (what SQLAlchemy's autoescape does to a literal)."""
    return lambda query: query.terms[i].value.replace("/", "//").replace("%", "/%").replace("_", "/_")


def where_terms(table: sa.Table, query: ListQuery, dialect: str, binds: _Binds) -> list[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    for i, term in enumerate(query.terms):
        name = term.field.name
        value = _term_value(i)
        if term.field.kind == "tags":
            out.append(_has_tag(table.c[name], value, dialect, binds))
        elif term.field.kind == "members":
            member_table, column = MEMBER_TABLES[name]
            member = member_table.c[column]
            out.append(sa.exists().where(member_table.c.tool_set_id == table.c.id, member == binds(value, member.type)))
        elif term.prefix:
            out.append(table.c[name].startswith(binds(_escaped_prefix(i), table.c[name].type), escape="/"))
        elif term.op == "!=" and term.field.nullable:
            out.append(table.c[name].is_distinct_from(binds(value, table.c[name].type)))
        else:
            out.append(_COMPARE[term.op](table.c[name], binds(value, table.c[name].type)))
    return out


def _has_tag(column: sa.ColumnElement[Any], tag: Getter, dialect: str, binds: _Binds) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        as_json = binds(lambda query: json.dumps([tag(query)]), sa.String())
        return column.op("@>")(sa.cast(as_json, JSONB))
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists().select_from(each).where(each.c.value == binds(tag, sa.String()))


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


def _part_values(table: sa.Table, key: OrderKey, at: int) -> list[Getter]:
    """How to take the values of a sort key's parts from a query's page token (`at`: the key's place)."""
    if _nullable(table, key):
        return [lambda query: 1 if _after(query)[at] is None else 0, lambda query: _after(query)[at]]
    return [lambda query: _after(query)[at]]


def _after(query: ListQuery) -> tuple[Any, ...]:
    assert query.after is not None  # the keyset condition is there only when the query has a position
    return query.after


def order_by(table: sa.Table, query: ListQuery) -> list[sa.ColumnElement[Any]]:
    return [expr.desc() if desc else expr.asc() for key in query.order for expr, desc in _sort_parts(table, key)]


def keyset_after(table: sa.Table, query: ListQuery, binds: _Binds) -> sa.ColumnElement[bool] | None:
    """Rows strictly after the page token's position: (a > x) OR (a = x AND b > y) OR ..."""
    if query.after is None:
        return None
    parts: list[tuple[sa.ColumnElement[Any], bool, Getter, bool]] = []
    for at, key in enumerate(query.order):
        nullable = _nullable(table, key)
        for (expr, desc), value in zip(_sort_parts(table, key), _part_values(table, key, at), strict=True):
            parts.append((expr, desc, value, nullable))
    if not any(n for *_, n in parts) and len({d for _, d, _, _ in parts}) == 1:
        # One direction, no NULLs: a row-value comparison, which both engines answer from an index range.
        left = sa.tuple_(*(e for e, _, _, _ in parts))
        right = sa.tuple_(*(binds(v, e.type) for e, _, v, _ in parts))
        return left < right if parts[0][1] else left > right
    alternatives: list[sa.ColumnElement[bool]] = []
    for i, (expr, desc, value, _) in enumerate(parts):
        if value(query) is None:
            continue  # nothing sorts after NULL within this key (NULLs are last)
        # `=` where NULL cannot occur: an index can serve it (IS NOT DISTINCT FROM it cannot, on PostgreSQL).
        same_prefix = [
            e.is_not_distinct_from(binds(v, e.type)) if n else e == binds(v, e.type) for e, _, v, n in parts[:i]
        ]
        bound = binds(value, expr.type)
        alternatives.append(sa.and_(*same_prefix, expr < bound if desc else expr > bound))
    return sa.or_(*alternatives) if alternatives else sa.false()


def row_position(query: ListQuery, row: Any) -> tuple[Any, ...]:
    """The order values of a row: what the next page token records."""
    return tuple(getattr(row, key.field.name) for key in query.order)
