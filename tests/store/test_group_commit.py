"""Group commit (server/store/group_commit.py), on SQLite and PostgreSQL alike: concurrent units share one
commit, a failing unit is undone alone and gets its own error, cancelled units leave nothing, and every
acknowledged unit is committed. Real SQLite files and real PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from server.domain import failpoints
from server.domain.identity import AuditFilter
from server.store import migrate
from server.store.repository import Store


class Refused(Exception):
    """A unit's own failure, raised inside its body."""


@pytest.fixture
def store(migrated_store: Store) -> Store:
    return migrated_store


def count_commits(store: Store) -> list[None]:
    """A list that gets an element at each commit of `store`."""
    commits: list[None] = []
    store.on_commit.append(lambda: commits.append(None))
    return commits


async def test_units_share_commits_and_a_failing_one_is_undone_alone(store: Store) -> None:
    commits = count_commits(store)

    async def unit(i: int) -> None:
        async with store.write() as tx:
            await tx.set_replication_value(f"k{i}", i, datetime.now(UTC))
            await asyncio.sleep(0)  # a real await inside the unit, as a network round trip would be
            if i % 7 == 3:
                raise Refused(i)

    results = await asyncio.gather(*(unit(i) for i in range(40)), return_exceptions=True)
    refused = {r.args[0] for r in results if isinstance(r, Refused)}
    assert refused == {i for i in range(40) if i % 7 == 3}
    assert all(r is None for i, r in enumerate(results) if i not in refused)
    async with store.read() as tx:
        for i in range(40):
            assert await tx.replication_value(f"k{i}") == (None if i in refused else i)
    assert 1 <= len(commits) < 40, "concurrent units were grouped into fewer commits"


async def test_a_unit_alone_that_fails_leaves_nothing(store: Store) -> None:
    with pytest.raises(Refused):
        async with store.write() as tx:
            await tx.set_replication_value("alone", 1, datetime.now(UTC))
            raise Refused("alone")
    async with store.read() as tx:
        assert await tx.replication_value("alone") is None


async def test_cancelled_units_leave_nothing_and_the_rest_commit(store: Store) -> None:
    started = asyncio.Event()

    async def unit(i: int, *, hold: bool) -> None:
        async with store.write() as tx:
            await tx.set_replication_value(f"c{i}", i, datetime.now(UTC))
            if hold:
                started.set()
                await asyncio.Event().wait()  # until cancelled

    held = asyncio.create_task(unit(0, hold=True))
    others = [asyncio.create_task(unit(i, hold=False)) for i in range(1, 10)]
    await started.wait()
    held.cancel()
    await asyncio.gather(*others)
    with pytest.raises(asyncio.CancelledError):
        await held
    async with store.read() as tx:
        assert await tx.replication_value("c0") is None
        assert [await tx.replication_value(f"c{i}") for i in range(1, 10)] == list(range(1, 10))


async def test_a_writer_that_dies_fails_every_waiting_unit_and_tells_its_supervisor(tmp_path: Path) -> None:
    """Issue 14, item 3: the writer's task dying of an unexpected error (a fault injected where a bug would raise)
    fails the units it had, instead of leaving them waiting forever, and ends with that error, where the agent's
    supervisor sees it (and stops the agent: tests/agent/test_supervision.py)."""
    leaders: list[asyncio.Task[None]] = []
    groups: list[int] = []  # each group's size, as the metrics are told

    def spawn(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        leaders.append(asyncio.get_running_loop().create_task(work, name=name))
        return leaders[-1]

    async def unit(store: Store, i: int) -> None:
        async with store.write() as tx:
            await tx.set_replication_value(f"k{i}", i, datetime.now(UTC))

    async with Store(str(tmp_path / "dies.db"), spawn=spawn, on_group=groups.append) as store:
        await migrate.upgrade(store.engine)
        failpoints.arm("group-commit=raise")
        try:
            results = await asyncio.gather(*(unit(store, i) for i in range(10)), return_exceptions=True)
        finally:
            failpoints.disarm("group-commit")
        assert all(isinstance(r, failpoints.InjectedFault) for r in results)
        (dead,) = leaders
        assert isinstance(dead.exception(), failpoints.InjectedFault)
        assert store.write_queue_depth == 0 and groups == []
        await unit(store, 99)  # the next unit gets a new writer
        assert len(leaders) == 2 and groups == [1]
        async with store.read() as tx:
            assert await tx.replication_value("k99") == 99 and await tx.replication_value("k0") is None


async def test_units_arriving_while_a_group_is_written_join_it(store: Store) -> None:
    """An RPC's handler reaches its write a few loop turns after the previous one's: the leader lets the loop turn
    before it commits, so such units join the group being written instead of each taking a commit of its own (50
    Creates in flight were committed one by one before, issue 11). The first unit of a group has no savepoint:
    one failing there is undone alone too."""
    commits = count_commits(store)

    async def unit(i: int) -> None:
        for _ in range(3 * i):  # three loop turns apart: each arrives after the one before it was written
            await asyncio.sleep(0)
        async with store.write() as tx:
            await tx.set_replication_value(f"s{i}", i, datetime.now(UTC))
            if i in (0, 5):
                raise Refused(i)

    results = await asyncio.gather(*(unit(i) for i in range(12)), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, Refused)] == [0, 5]
    assert all(r is None for i, r in enumerate(results) if i not in (0, 5))
    async with store.read() as tx:
        assert [await tx.replication_value(f"s{i}") for i in range(12)] == [None, *range(1, 5), None, *range(6, 12)]
    assert len(commits) <= 3, f"12 units three loop turns apart took {len(commits)} commits"


async def test_audit_entries_of_units_undone_in_a_group_leave_the_chain_whole(store: Store) -> None:
    """The units of a group share their transaction's view of the audit chain's head: one that appended entries
    and then failed is rolled back with its entries, and the next unit chains onto what is really there."""
    from server.domain.identity import AuditEntry
    from server.usecases import audit
    from server.usecases.audit import AuditService

    async def unit(i: int) -> None:
        async with store.write() as tx:
            await audit.append(tx, AuditEntry(occurred_at=datetime.now(UTC), action=f"test.unit{i}"))
            await asyncio.sleep(0)
            if i % 3 == 1:
                await audit.append(tx, AuditEntry(occurred_at=datetime.now(UTC), action=f"test.more{i}"))
                raise Refused(i)

    results = await asyncio.gather(*(unit(i) for i in range(30)), return_exceptions=True)
    assert {r.args[0] for r in results if isinstance(r, Refused)} == {i for i in range(30) if i % 3 == 1}
    verified = await AuditService(store, lambda: datetime.now(UTC)).verify()
    assert verified.ok, verified.reason
    assert verified.checked == 20  # the kept units' entries, numbered without a gap


async def test_the_audit_head_is_the_last_kept_entry_when_the_last_unit_fails(store: Store) -> None:
    """The head moves in the transaction's memory and is written once before the commit: a unit undone at the end
    of its group takes its move back with it, and the head written is the last entry kept."""
    from server.domain.identity import AuditEntry
    from server.usecases import audit
    from server.usecases.audit import AuditService

    async def unit(i: int, fail: bool) -> None:
        async with store.write() as tx:
            await audit.append(tx, AuditEntry(occurred_at=datetime.now(UTC), action=f"test.unit{i}"))
            await asyncio.sleep(0)
            if fail:
                raise Refused(i)

    results = await asyncio.gather(*(unit(i, fail=i == 9) for i in range(10)), return_exceptions=True)
    assert [i for i, r in enumerate(results) if isinstance(r, Refused)] == [9]
    async with store.read() as tx:
        head = await tx.audit_head()
        entries = await tx.audit_entries(AuditFilter(), 0, 100)
    assert [e.action for e in entries] == [f"test.unit{i}" for i in range(9)]
    assert head == (entries[-1].seq, entries[-1].hash)
    verified = await AuditService(store, lambda: datetime.now(UTC)).verify()
    assert verified.ok and verified.checked == 9
