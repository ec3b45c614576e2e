"""SQLite run inline on the event loop (server/store/inline.py): a writer of another process is waited for
without blocking the loop, and what each side committed is kept. Real SQLite file, migrated by Alembic."""

from __future__ import annotations

import asyncio
import dataclasses
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


async def test_reader_connections_kept_open_see_every_commit_and_overlapping_reads_have_their_own(
    tmp_path: Path,
) -> None:
    """Reads on SQLite reuse connections kept open between them: a kept connection reads what was committed since
    it was last used, a read that fails leaves it usable, and reads that overlap (one awaits inside) each get
    their own transaction, each seeing the database as of its start."""
    db = tmp_path / "edge.db"
    async with Store(str(db)) as store:
        await migrate.upgrade(store.engine)

        async def write(value: int) -> None:
            async with store.write() as tx:
                await tx.set_replication_value("n", value, datetime.now(UTC))

        await write(1)
        async with store.read() as tx:
            assert await tx.replication_value("n") == 1
        await write(2)  # committed after the reader connection was kept
        async with store.read() as tx:
            assert await tx.replication_value("n") == 2
        with pytest.raises(RuntimeError):
            async with store.read() as tx:
                await tx.replication_value("n")
                raise RuntimeError("a read that fails half way")
        async with store.read() as tx:
            assert await tx.replication_value("n") == 2

        inside = asyncio.Event()
        carry_on = asyncio.Event()

        async def long_read() -> object:
            async with store.read() as tx:
                first = await tx.replication_value("n")
                inside.set()
                await carry_on.wait()  # another read and a write happen meanwhile
                return first, await tx.replication_value("n")

        pending = asyncio.create_task(long_read())
        await inside.wait()
        await write(3)
        async with store.read() as tx:
            assert await tx.replication_value("n") == 3
        carry_on.set()
        assert await pending == (2, 2)  # its own snapshot, from start to end


async def test_many_rows_straight_to_the_driver_store_what_sqlalchemy_would(tmp_path: Path) -> None:
    """Bulk inserts and versioned bulk updates go to the driver in one executemany (issue 11): the rows read back
    are what SQLAlchemy's own executemany stores (JSON, UTC times, enums, JSON already encoded as JsonText), a
    stale version is seen in the count, and refusals map to the same domain errors."""
    from server.domain.entities import ToolItem, ToolType
    from server.domain.schema import JsonText

    now = datetime.now(UTC).replace(microsecond=123000)
    kind = KINDS["tool_item"]
    items = [
        ToolItem(
            id=uuid.uuid4(),
            name=f"mill {i}",
            tool_type=ToolType.END_MILL,
            geometry={"DC": 10 + i, "NOF": 4},
            tags=["carbide", f"t{i}"],
            created_at=now,
            updated_at=now,
            version=1,
        )
        for i in range(5)
    ]
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        async with store.write() as tx:
            await tx.bulk_insert(kind, items)
            await tx.insert_rows(
                ENTITY_TABLES["tool_item"],
                [
                    {
                        "id": uuid.uuid4(),
                        "name": "encoded",
                        "description": "",
                        "manufacturer": "",
                        "part_number": "",
                        "tool_type": "DRILL",
                        "geometry": JsonText('{"DC": 6.5}'),
                        "tags": ["a"],
                        "owner_id": None,
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                ],
            )
        async with store.read() as tx:
            stored = await tx.get_many(kind, [i.id for i in items])
            (encoded,) = await tx.find_in(kind, "name", ["encoded"])
        assert [stored[i.id] for i in items] == items
        assert encoded.geometry == {"DC": 6.5} and encoded.tool_type == ToolType.DRILL
        bumped = [(dataclasses.replace(i, name=i.name + "!", version=2), 1) for i in items]
        async with store.write() as tx:
            assert await tx.bulk_update(kind, bumped)
        async with store.write() as tx:  # one of them no longer has version 1
            assert not await tx.bulk_update(kind, [(dataclasses.replace(i, version=3), 1) for i, _ in bumped[:2]])
        async with store.read() as tx:
            after = await tx.get_many(kind, [i.id for i in items])
        assert [after[i.id].name for i in items] == [f"mill {i}!" for i in range(5)]
        with pytest.raises(AlreadyExists):
            async with store.write() as tx:
                await tx.bulk_insert(kind, items[:1])
        with pytest.raises(InvalidArgument):
            async with store.write() as tx:
                await tx.bulk_insert(kind, [dataclasses.replace(items[0], id=uuid.uuid4(), name="x" * 201)])


async def test_a_read_begun_on_the_driver_is_one_snapshot_with_statements_sqlalchemy_runs(tmp_path: Path) -> None:
    """Reads begin and end their transaction on the driver; a statement SQLAlchemy runs itself (an IN list of
    several ids) joins that transaction: the read is one snapshot, and whatever happens in it, its connection
    goes back to the pool with no transaction left open (a writer given it would not begin its own)."""
    db = tmp_path / "edge.db"
    kind = KINDS["tool_item"]
    now = datetime.now(UTC)
    async with Store(str(db)) as store:
        await migrate.upgrade(store.engine)
        ids = [uuid.uuid4() for _ in range(3)]

        async def add(item_id: uuid.UUID) -> None:
            async with store.write() as tx:
                await tx.insert(
                    kind, kind.cls(id=item_id, name=f"item {item_id}", created_at=now, updated_at=now, version=1)
                )

        await add(ids[0])
        await add(ids[1])
        inside, carry_on = asyncio.Event(), asyncio.Event()

        async def long_read() -> tuple[int, int, int]:
            async with store.read() as tx:
                one = len(await tx.get_many(kind, ids[:1]))  # straight to the driver
                inside.set()
                await carry_on.wait()
                several = len(await tx.find_in(kind, "id", ids))  # expanding IN: through SQLAlchemy
                again = len(await tx.get_many(kind, ids[2:]))
                return one, several, again

        pending = asyncio.create_task(long_read())
        await inside.wait()
        await add(ids[2])  # committed while the read is open: it must not see it
        carry_on.set()
        assert await pending == (1, 2, 0)

        with pytest.raises(RuntimeError):
            async with store.read() as tx:
                assert len(await tx.find_in(kind, "id", ids)) == 3
                raise RuntimeError("a read that fails after a statement SQLAlchemy ran")
        for conn in [*store._readers]:
            dbapi = conn.connection.dbapi_connection
            assert dbapi is not None and not dbapi.in_transaction and not conn.in_transaction()
        async with store.read() as tx:  # the kept connections serve the next reads, and writes still begin
            assert len(await tx.get_many(kind, ids)) == 3
        await add(uuid.uuid4())
        async with store.read() as tx:
            assert len(await tx.get_many(kind, [*ids[:1], uuid.uuid4()])) == 1
