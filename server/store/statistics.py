"""PostgreSQL: the planner's statistics kept up with tables that grow fast (issue 11).

PostgreSQL plans a statement from the table's statistics, and a prepared statement (asyncpg prepares every one)
keeps its generic plan until those statistics change. A table that grew from nothing since it was last analyzed
therefore goes on being read as the small table it was: central's check of a pushed batch (the versions of 2,000
ids, their history) read the whole of tool_items and changes sequentially on every push, 870,000 rows per table
after 60,000 changes, and the 1M-change drain slowed as central's tables grew. Autovacuum analyzes a table once a
tenth of it has changed, but only when its next round comes (a minute by default) and while it keeps up; a
central taking an edge's first sync, or a backlog after an outage, outruns it.

So the store counts the rows its own commits add to each table and, when a table has grown by `GROWTH` of what
its statistics last saw (and by at least `MIN_ROWS`), runs ANALYZE on it, on a connection of its own, after the
commit: writers never wait for it. ANALYZE reads a sample (30,000 rows by default), not the table, and takes a lock
that writes do not conflict with. A failure is logged with what to do and the count kept, so the next commit
retries it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Mapping

import sqlalchemy as sa
import structlog
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine

from server.store.group_commit import Spawn

log = structlog.get_logger("smooth_edge.store")

GROWTH = 0.2  # analyze once a table has grown by this fraction of the rows its statistics last counted
MIN_ROWS = 5_000  # ... and by at least this many rows (a small table is read whole in no time anyway)


class TableStatistics:
    """Counts rows added per table and analyzes the tables that grew (see the module's text)."""

    def __init__(self, engine: AsyncEngine, spawn: Spawn | None = None) -> None:
        self._engine = engine
        self._spawn = spawn
        self._added: Counter[str] = Counter()  # rows added since the table was last analyzed here
        self._seen: dict[str, float] = {}  # the row count the table's statistics last gave (pg_class.reltuples)
        self._task: asyncio.Task[None] | None = None
        self.analyzed: Counter[str] = Counter()  # ANALYZE runs per table (metrics, tests)

    def added(self, rows: Mapping[str, int]) -> None:
        """A commit added these rows: analyze what grew enough, after it, in the background."""
        self._added.update(rows)
        if self._task is not None and not self._task.done():
            return  # the running pass looks at the counts again when it ends
        if self._due():
            work = self._analyze_due()
            if self._spawn is not None:  # the agent's supervisor: an unexpected error stops the agent
                self._task = self._spawn(work, "store-analyze")
            else:
                self._task = asyncio.create_task(work)
                self._task.add_done_callback(_log_crash)

    def _due(self) -> list[str]:
        return [t for t, n in self._added.items() if n >= max(MIN_ROWS, GROWTH * self._seen.get(t, 0.0))]

    async def _analyze_due(self) -> None:
        while tables := self._due():
            try:
                async with self._engine.connect() as conn:
                    await conn.execution_options(isolation_level="AUTOCOMMIT")
                    for table in tables:
                        added = self._added[table]
                        await conn.execute(sa.text(f'ANALYZE "{table}"'))
                        count = await conn.scalar(
                            sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass(:t)"), {"t": table}
                        )
                        self._seen[table] = float(count or 0)
                        self._added[table] -= added  # what commits added meanwhile still counts
                        self.analyzed[table] += 1
                        log.info("store.analyzed", table=table, rows_added=added, rows=self._seen[table])
            except (sa_exc.DBAPIError, OSError, TimeoutError) as exc:
                # Retried once the table has grown by as much again (not at every commit of a failing database).
                self._seen.update({t: self._seen.get(t, 0.0) + self._added[t] / GROWTH for t in tables})
                log.warning(
                    "store.analyze_failed",
                    tables=tables,
                    error=str(exc)[:300],
                    next_step="queries on these tables may be planned as if they were small until they are "
                    "analyzed: run ANALYZE on them (the store's role must own them)",
                )
                return

    async def stop(self) -> None:
        """Cancel a pass still running (the store is closing)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


def _log_crash(task: asyncio.Task[None]) -> None:
    """Loud, with its traceback: not a database error (those are handled in the pass), a bug."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("store.analyze_crashed", exc_info=exc)
