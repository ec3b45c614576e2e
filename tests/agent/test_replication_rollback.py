"""An edge whose database went back in time — restored from an older copy taken without its `-wal` file —
while it keeps taking writes: no sequence number central has seen is reused for a different change, what was
written since is pushed (not skipped as a duplicate), what the edge lost comes back from central, and the two
converge. Real SQLite files, real PostgreSQL central, real gRPC, the real replicator."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
import structlog
from conftest import Edge, start_edge
from test_replication import assert_replicated, central, settings, snapshot, sync_key
from test_replicator import reaches

from agent.replicator.status import ReplicatorState
from agent.replicator.wire import status_to_proto
from agent.runtime import replicating
from server.store.tables import changes

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the module's fixture


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a live SQLite database (what a backup job would have kept)."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


async def _settle(replicator: object, *, resyncs: int = 0) -> None:
    await reaches(
        replicator,  # type: ignore[arg-type]
        lambda s: s.backlog == 0 and s.state == ReplicatorState.IDLE and s.resyncs >= resyncs,
        "everything pushed and pulled",
    )


async def _records(e: Edge, origin: uuid.UUID | None) -> dict[int, tuple[str, int, str]]:
    """Change records by sequence: this store's own (origin None), or central's record of one origin's."""
    async with e.store.read() as tx:
        if origin is None:
            stmt = sa.select(changes.c.seq, changes.c.entity_id, changes.c.version, changes.c.operation).where(
                changes.c.origin_id.is_(None)
            )
        else:
            stmt = sa.select(changes.c.origin_seq, changes.c.entity_id, changes.c.version, changes.c.operation).where(
                changes.c.origin_id == origin
            )
        rows = (await tx._conn.execute(stmt)).all()  # type: ignore[attr-defined]
    return {int(r[0]): (str(r[1]), int(r[2]), str(r[3])) for r in rows}


async def test_an_edge_restored_from_an_older_copy_reuses_no_sequence_and_converges(
    tmp_path: Path, central: Edge
) -> None:
    db, old = tmp_path / "edge.db", tmp_path / "older-copy.db"
    key = await sync_key(central)
    async for edge in start_edge(str(db)):
        async with replicating(edge.store, settings(central.address, key)) as replicator:
            kept = [await edge.make.item(name=f"kept {i}") for i in range(5)]
            await _settle(replicator)
            _copy_database(db, old)
            lost = [await edge.make.item(name=f"lost {i}") for i in range(5)]
            await _settle(replicator)
            origin = replicator.origin_id
    # The database is put back to the older copy; the newer WAL is gone with it.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    old.rename(db)

    with structlog.testing.capture_logs() as logs:
        async for edge in start_edge(str(db)):
            # Writes arrive before the replicator has heard from central, and while it starts.
            early = [await edge.make.item(name=f"early {i}") for i in range(3)]
            async with replicating(edge.store, settings(central.address, key)) as replicator:
                assert replicator.origin_id == origin, "the restored copy keeps its origin"
                during = await asyncio.gather(*(edge.make.item(name=f"during {i}") for i in range(5)))
                await _settle(replicator, resyncs=1)
                later = [await edge.make.item(name=f"later {i}") for i in range(2)]
                await _settle(replicator, resyncs=1)
                shown = status_to_proto(await replicator.status())  # what GetReplicationStatus answers
                assert shown.state == "idle" and shown.resyncs == 1 and shown.pulled_cursor > 0
            edge_rows, central_rows = await snapshot(edge), await snapshot(central)
            ours = await _records(edge, None)
    theirs = await _records(central, origin)

    assert any(e["event"] == "replicator.rolled_back" for e in logs), "what happened is logged"
    made_here = {i.id for i in [*kept, *lost, *early, *during, *later]}
    assert made_here <= set(central_rows["tool_item"]), "everything the edge ever wrote reached central"
    assert made_here <= set(edge_rows["tool_item"]), "what the edge lost came back from central"
    assert_replicated(edge_rows, central_rows)
    # No sequence number means two different changes: where central holds a change of this origin under a
    # sequence the edge also has, it is the same change.
    for seq, change in ours.items():
        if seq in theirs:
            assert theirs[seq] == change, f"sequence {seq} reused for a different change"
