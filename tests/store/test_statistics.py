"""PostgreSQL: the store analyzes a table its commits grew by a good deal (server/store/statistics.py), after the
commit and off the writer, so statements planned while it was small are planned again (central's checks of a
pushed batch read whole tables sequentially before). A table that grew little is left to autovacuum."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from server.domain.entities import ToolItem
from server.domain.registry import KINDS
from server.store import migrate, statistics
from server.store.repository import Store

pytestmark = pytest.mark.postgres
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def items(count: int) -> list[ToolItem]:
    return [ToolItem(id=uuid.uuid4(), name=f"mill {i}", created_at=T0, updated_at=T0, version=1) for i in range(count)]


async def analyzed_rows(store: Store, table: str) -> float | None:
    """pg_class.reltuples once the table was analyzed (None before: -1 on PostgreSQL 14 and later)."""
    async with store.engine.connect() as conn:
        count = await conn.scalar(sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table})
    return None if count is None or count < 0 else float(count)


async def test_a_table_grown_past_the_threshold_is_analyzed_after_the_commit(pg_database: str) -> None:
    async with Store(pg_database) as store:
        await migrate.upgrade(store.engine)
        async with store.write() as tx:
            await tx.bulk_insert(KINDS["tool_item"], items(100))
        async with store.write() as tx:
            await tx.bulk_insert(KINDS["tool_item"], items(statistics.MIN_ROWS))
        stats = store._statistics
        assert stats is not None and stats._task is not None  # started by the commit, run after it
        await stats._task
        assert stats.analyzed["tool_items"] == 1
        assert await analyzed_rows(store, "tool_items") == statistics.MIN_ROWS + 100
        # The next analysis waits for the table to grow by GROWTH of what was counted: not after 100 more rows.
        done = stats._task
        async with store.write() as tx:
            await tx.bulk_insert(KINDS["tool_item"], items(100))
        assert stats._task is done  # the commit started no pass: the decision is made at the commit
        assert stats.analyzed["tool_items"] == 1


async def test_a_table_grown_a_little_is_left_alone(pg_database: str) -> None:
    async with Store(pg_database) as store:
        await migrate.upgrade(store.engine)
        async with store.write() as tx:
            await tx.bulk_insert(KINDS["tool_item"], items(200))
        assert store._statistics is not None and store._statistics._task is None  # no pass started
        assert not store._statistics.analyzed
