"""SQLite run inline on the event loop (server/store/inline.py): a writer of another process is waited for
without blocking the loop, and what each side committed is kept. Real SQLite file, migrated by Alembic."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from server.store import migrate
from server.store.repository import Store


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
