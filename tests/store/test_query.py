"""Page statements built once per shape (server/store/query.py page_select)."""

from __future__ import annotations

import sqlalchemy as sa

from server.domain.registry import KINDS
from server.store import query
from server.store.tables import ENTITY_TABLES
from server.usecases.listing import build_query


def test_a_shape_is_kept_per_base_statement_and_takes_each_querys_values() -> None:
    """Two bases with the same filter get their own statements (one was once served the other's columns), and a
    query of a kept shape is sent its own values."""
    table = ENTITY_TABLES["tool_item"]
    ids_only, all_columns = sa.select(table.c.id), sa.select(table)
    page = build_query(KINDS["tool_item"], page_size=7, page_token="", filter_text='name = "a"', order_by="")
    first, params = query.page_select(ids_only, table, page, "sqlite")
    second, _ = query.page_select(all_columns, table, page, "sqlite")
    assert len(first.selected_columns) == 1 and len(second.selected_columns) == len(table.c)
    other = build_query(KINDS["tool_item"], page_size=7, page_token="", filter_text='name = "b"', order_by="")
    again, other_params = query.page_select(ids_only, table, other, "sqlite")
    assert again is first
    assert list(params.values()) == ["a"] and list(other_params.values()) == ["b"]
