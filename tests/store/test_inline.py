"""SQLite run inline on the event loop (server/store/inline.py): a writer of another process is waited for
without blocking the loop, and what each side committed is kept. Real SQLite file, migrated by Alembic."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from server.domain.errors import AlreadyExists, InvalidArgument
from server.domain.registry import KINDS
from server.store import migrate
from server.store.repository import Store
from server.store.tables import ENTITY_TABLES


async def test_a_writer_of_another_process_is_waited_for_without_blocking_the_loop(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    async with Store(str(db)) as store:
        await migrate.upgrade(store.engine)
        other = sqlite3.connect(db, isolation_level=None)  # another process's connection, as far as SQLite knows
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO replication_state (key, value, updated_at) VALUES ('other', '1', '2026-01-01')")

            async def write() -> None:
                async with store.write() as tx:
                    await tx.set_replication_value("ours", 2, datetime.now(UTC))

            waiting = asyncio.create_task(write())
            reads = 0
            for _ in range(5):  # the loop goes on serving while our writer waits for the lock
                await asyncio.sleep(0.01)
                async with store.read() as tx:
                    assert await tx.replication_value("ours") is None
                reads += 1
            assert reads == 5 and not waiting.done()
            other.execute("COMMIT")
            await asyncio.wait_for(waiting, timeout=30)
        finally:
            other.close()
        async with store.read() as tx:
            assert await tx.replication_value("ours") == 2
            assert await tx.replication_value("other") == 1


async def test_rows_sent_straight_to_the_driver_are_refused_like_any_other(tmp_path: Path) -> None:
    """The inline insert path maps the database's refusals to the same domain errors as a Core statement."""
    now = datetime.now(UTC)
    row = {
        "id": uuid.uuid4(),
        "name": "drill",
        "description": "",
        "manufacturer": "",
        "part_number": "",
        "tool_type": "OTHER",
        "geometry": {},
        "tags": [],
        "owner_id": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        async with store.write() as tx:
            await tx._insert(ENTITY_TABLES["tool_item"], row)
        with pytest.raises(AlreadyExists):
            async with store.write() as tx:
                await tx._insert(ENTITY_TABLES["tool_item"], row)
        with pytest.raises(InvalidArgument):
            async with store.write() as tx:
                await tx._insert(ENTITY_TABLES["tool_item"], {**row, "id": uuid.uuid4(), "name": "x" * 201})
        async with store.read() as tx:
            assert len(await tx.find_in(KINDS["tool_item"], "name", ["drill"])) == 1
