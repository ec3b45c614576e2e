"""Large tables (issue 11): a generator that fills a migrated store with 10k tool items, 100k tool instances and 1M
tool usages, the List path's p50/p99 on it against the same queries on a database 1/100 its size (same run), the
query plans of the SQL the store sends, and the agent's RSS serving it with 200 machines configured. Run from the
repository root: `python tests/bench/bench_large.py --help`; see README.md beside this file. Not part of the
pytest run (no test_ prefix), and asserts nothing about timing."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import heapq
import json
import os
import platform
import random
import re
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import sqlalchemy as sa
from bench_api import BenchError, SmoothServer, percentile, progress, run_cli, sigterm_as_exit, wait_serving
from bench_replication import DEFAULT_PG, ScratchDatabases
from benchkit import Processes, free_port, smooth_edge_command
from smooth.core.v1 import tool_instance_pb2 as instance_pb
from smooth.core.v1 import tool_instance_pb2_grpc as instance_grpc
from smooth.core.v1 import tool_item_pb2 as item_pb
from smooth.core.v1 import tool_item_pb2_grpc as item_grpc
from smooth.core.v1 import tool_usage_pb2 as usage_pb
from smooth.core.v1 import tool_usage_pb2_grpc as usage_grpc

from agent.logs import configure_logging
from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolItem, ToolType, ToolUsage, Versioned
from server.domain.errors import SmoothError
from server.domain.query import ListQuery
from server.domain.registry import KINDS
from server.store import migrate
from server.store.inline import InlineConnection
from server.store.repository import Store
from server.store.tables import ENTITY_TABLES
from server.usecases.app import UseCases, build
from server.usecases.listing import build_query
from server.validation.rules import check_entity

STOP_GRACE_S = 10.0
CHUNK = 10_000  # rows per transaction while generating
BASELINE_DIVISOR = 100  # the comparison database: the same generator at 1/100 of every table
SMALL_DIVISOR = 10  # --small
PAGE_SIZE = 50
GOAL_RATIO = 2.0  # big p50 within 2x of the same query on the baseline (issue 11)
GOAL_RSS_MB = 200.0
MAGAZINE = 40  # tool instances loaded in each machine, the ones its usages draw from
YEAR_START = datetime(2025, 1, 1, tzinfo=UTC)  # usages span [YEAR_START, YEAR_END)
YEAR_END = datetime(2026, 1, 1, tzinfo=UTC)
ITEMS_FROM, INSTANCES_FROM = datetime(2023, 1, 1, tzinfo=UTC), datetime(2023, 7, 1, tzinfo=UTC)
CATALOG_SPAN = timedelta(days=540)  # items and instances are created over 18 months before the usages
STATUS_WEIGHTS = {
    ToolInstanceStatus.AVAILABLE: 55,
    ToolInstanceStatus.IN_USE: 30,
    ToolInstanceStatus.MAINTENANCE: 10,
    ToolInstanceStatus.RETIRED: 5,
}
TAGS = (
    "carbide", "hss", "coated", "uncoated", "roughing", "finishing", "aluminium", "steel", "titanium",
    "cell-a", "cell-b", "cell-c", "spare", "regrind", "customer-kit",
)  # fmt: skip
MANUFACTURERS = ("Sandvik", "Kennametal", "Walter", "Iscar", "Seco", "Guhring", "Mitsubishi", "Kyocera")
TOOL_TYPE_WEIGHTS = {
    ToolType.END_MILL: 25, ToolType.DRILL: 20, ToolType.BALL_END_MILL: 8, ToolType.FACE_MILL: 6,
    ToolType.REAMER: 6, ToolType.TAP: 8, ToolType.THREAD_MILL: 4, ToolType.TURNING_INSERT: 10,
    ToolType.BORING_BAR: 4, ToolType.HOLDER: 6, ToolType.OTHER: 3,
}  # fmt: skip


def machine_id(index: int) -> str:
    return f"M-{index:03d}"


# ================================================================================================= generator


@dataclass(frozen=True)
class Sizes:
    items: int
    instances: int
    usages: int
    machines: int

    def scaled(self, divisor: int) -> Sizes:
        """The same floor at 1/divisor of every table; the machine count stays (it is the floor, not the data)."""
        return Sizes(
            max(1, self.items // divisor), max(1, self.instances // divisor), self.usages // divisor, self.machines
        )

    @property
    def rows(self) -> int:
        return self.items + self.instances + self.usages


def uuid7_at(when: datetime, rng: random.Random) -> uuid.UUID:
    """A UUIDv7 as the server mints them (server/domain/ids.py), for the row's own creation time."""
    ms = int(when.timestamp() * 1000)
    return uuid.UUID(int=(ms << 80) | (0x7 << 76) | (rng.getrandbits(12) << 64) | (0b10 << 62) | rng.getrandbits(62))


def geometry_for(tool_type: ToolType, rng: random.Random) -> tuple[dict[str, Any], float | None]:
    """Nominal geometry with the symbols the tool type requires (geometry.json), and the cutting diameter."""
    dc = round(rng.choice((3, 4, 5, 6, 8, 10, 12, 16, 20, 25)) + rng.choice((0.0, 0.5)), 1)
    oal = round(dc * rng.uniform(5, 9) + 30, 1)
    if tool_type == ToolType.DRILL:
        return {"DC": dc, "SIG": 140, "OAL": oal, "LU": round(oal * 0.6, 1)}, dc
    if tool_type == ToolType.END_MILL:
        return {"DC": dc, "NOF": rng.choice((2, 3, 4, 6)), "OAL": oal, "APMX": round(dc * 2, 1)}, dc
    if tool_type == ToolType.BALL_END_MILL:
        return {"DC": dc, "NOF": 2, "RE": dc / 2, "OAL": oal}, dc
    if tool_type == ToolType.FACE_MILL:
        dc = float(rng.choice((40, 50, 63, 80, 100)))
        return {"DC": dc, "ZEFP": rng.choice((4, 5, 6, 8)), "KAPR": rng.choice((45, 90))}, dc
    if tool_type == ToolType.REAMER:
        return {"DC": dc, "NOF": 6, "OAL": oal}, dc
    if tool_type in (ToolType.TAP, ToolType.THREAD_MILL):
        td = float(rng.choice((4, 5, 6, 8, 10, 12)))
        return {"TD": td, "TP": round(td * 0.15, 2)}, None
    if tool_type == ToolType.TURNING_INSERT:
        return {"IC": 12.7, "RE": rng.choice((0.4, 0.8, 1.2)), "S": 4.76}, None
    if tool_type == ToolType.BORING_BAR:
        return {"DC": dc, "OAL": oal}, dc
    if tool_type == ToolType.HOLDER:
        return {"CCMS": rng.choice(("HSK63A", "SK40", "BT40", "CAPTO C6"))}, None
    return {}, None


class RowGenerator:
    """Deterministic rows (one seed, one floor) in insertion order, as a store that lived through them holds them:
    UUIDv7 ids of each row's creation time, catalog first, then a year of usages in start-time order."""

    def __init__(self, sizes: Sizes, seed: int) -> None:
        self.sizes = sizes
        self.seed = seed
        # Filled as the earlier tables are generated: what later rows refer to.
        self.item_ids: list[uuid.UUID] = []
        self.item_types: list[ToolType] = []
        self.item_dc: list[float | None] = []
        self.instance_ids: list[uuid.UUID] = []

    def _times(self, start: datetime, count: int, rng: random.Random) -> Iterator[datetime]:
        step = CATALOG_SPAN / max(1, count)
        for i in range(count):
            yield start + step * i + step * rng.random() * 0.9

    def items(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{self.seed}/items")
        types, weights = list(TOOL_TYPE_WEIGHTS), list(TOOL_TYPE_WEIGHTS.values())
        for i, created in enumerate(self._times(ITEMS_FROM, self.sizes.items, rng)):
            tool_type = rng.choices(types, weights)[0]
            geometry, dc = geometry_for(tool_type, rng)
            maker = rng.choice(MANUFACTURERS)
            row_id = uuid7_at(created, rng)
            self.item_ids.append(row_id)
            self.item_types.append(tool_type)
            self.item_dc.append(dc)
            size = f" D{dc:g}" if dc is not None else ""
            yield {
                "id": row_id,
                "owner_id": None,
                "created_at": created,
                "updated_at": created,
                "version": 1,
                "name": f"{tool_type.value.replace('_', ' ').title()}{size} {maker}",
                "description": "" if rng.random() < 0.7 else f"catalog entry {i}, imported from the {maker} list",
                "manufacturer": maker,
                "part_number": f"{maker[:3].upper()}-{i:06d}",
                "tool_type": tool_type,
                "geometry": geometry,
                "tags": rng.sample(TAGS, rng.randint(0, 2)),
            }

    def instances(self) -> Iterator[dict[str, Any]]:
        rng = random.Random(f"{self.seed}/instances")
        statuses, weights = list(STATUS_WEIGHTS), list(STATUS_WEIGHTS.values())
        for i, created in enumerate(self._times(INSTANCES_FROM, self.sizes.instances, rng)):
            item = rng.randrange(len(self.item_ids))
            dc = self.item_dc[item]
            measurements: dict[str, Any] = {}
            calibrated: datetime | None = None
            if dc is not None and rng.random() < 0.4:  # a presetter measured it: DOMAIN.md 2.2's shape
                calibrated = created + timedelta(days=rng.randint(1, 300))
                measurements = {
                    "DC": {"value": round(dc + rng.uniform(-0.02, 0.01), 3), "nominal": dc},
                    "measured_at": calibrated.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "station_id": f"PRESET-{rng.randint(1, 3)}",
                }
            version = rng.randint(1, 4)
            row_id = uuid7_at(created, rng)
            self.instance_ids.append(row_id)
            yield {
                "id": row_id,
                "owner_id": None,
                "created_at": created,
                "updated_at": calibrated or created + timedelta(days=version - 1),
                "version": version,
                "tool_item_id": self.item_ids[item],
                "tool_assembly_id": None,
                "serial_number": f"SN-{i:07d}",
                "status": rng.choices(statuses, weights)[0],
                "measurements": measurements,
                "purchase_date": (created - timedelta(days=rng.randint(0, 30))).date(),
                "last_calibration": calibrated,
                "calibration_due": (calibrated + timedelta(days=365)).date() if calibrated else None,
                "tags": rng.sample(TAGS, rng.randint(0, 3)),
            }

    def usages(self) -> Iterator[dict[str, Any]]:
        """Each machine's stays one after another over the year (never overlapping; the last one still open),
        merged across machines by start time as the collector would have written them."""
        rng = random.Random(f"{self.seed}/usages")
        n, machines = self.sizes.usages, self.sizes.machines
        instances = len(self.instance_ids)
        in_magazines = min(instances, machines * MAGAZINE)
        counts = [n // machines + (1 if m < n % machines else 0) for m in range(machines)]
        year = YEAR_END - YEAR_START
        programs = [[f"O{1000 + (m * 37 + k * 11) % 9000}" for k in range(6)] for m in range(machines)]
        heap: list[tuple[datetime, int, int]] = []  # (start, machine, its usage number)
        for m, count in enumerate(counts):
            if count:
                heap.append((YEAR_START + year / count * rng.random() * 0.5, m, 0))
        heapq.heapify(heap)
        while heap:
            start, m, k = heapq.heappop(heap)
            count = counts[m]
            gap = year / count
            if k + 1 < count:
                heapq.heappush(heap, (YEAR_START + gap * (k + 1 + rng.random() * 0.5), m, k + 1))
            slot = rng.randrange(max(1, -(-(in_magazines - m) // machines)))  # its magazine: m, m+machines, ...
            instance = (m + slot * machines) % instances
            end = None if k + 1 == count else start + gap * rng.uniform(0.2, 0.5)  # never past the next start
            spindle_s = round((end - start).total_seconds(), 3) if end else 0.0
            program = rng.choice(programs[m])
            yield {
                "id": uuid7_at(start, rng),
                "owner_id": None,
                "created_at": start,
                "updated_at": end or start,
                "version": 1 if end is None else 2,
                "tool_instance_id": self.instance_ids[instance],
                "start_time": start,
                "end_time": end,
                "machine_id": machine_id(m + 1),
                "program_name": program,
                "operator": f"operator-{rng.randint(1, 40):02d}",
                "usage_metrics": (
                    {
                        "time_in_spindle_s": spindle_s,
                        "spindle_runtime_s": round(spindle_s * rng.uniform(0.4, 0.9), 3),
                        "cycles": rng.randint(1, 30),
                        "programs": [program],
                        "source": "COLLECTOR",
                        "tool_number": slot + 1,
                    }
                    if end
                    else {"programs": [program], "source": "COLLECTOR", "tool_number": slot + 1}
                ),
                "wear_measurements": {"VB": round(rng.uniform(0, 0.3), 3)} if rng.random() < 0.02 else {},
                "notes": "",
            }


def chunks(rows: Iterator[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def check_sample(
    cls: type[Versioned], rows: Sequence[dict[str, Any]], tool_types: Callable[[dict[str, Any]], str | None]
) -> None:
    """The rows the API will read must pass the same field rules as what it writes (server/validation)."""
    for row in rows:
        entity = cls(**row)
        problems = check_entity(entity, tool_type=tool_types(row))
        if problems:
            raise BenchError(f"generated {cls.__name__} {row['id']} fails validation: {problems[:3]}")


async def fill(store: Store, sizes: Sizes, seed: int, label: str) -> float:
    """Migrate with Alembic, then bulk-insert every table in transactions of CHUNK rows (executemany on SQLite,
    COPY on PostgreSQL: `insert_rows`, the store's own bulk path). The change log stays empty: these rows did not
    come through the use cases, and no List reads it. Returns the seconds it took."""
    await migrate.upgrade(store.engine)
    gen = RowGenerator(sizes, seed)
    item_type = dict[uuid.UUID, str]()
    started = time.perf_counter()
    done, last_report = 0, started

    def no_tool_type(row: dict[str, Any]) -> str | None:
        return None  # an item's own tool_type decides its geometry; a usage has none

    def item_tool_type(row: dict[str, Any]) -> str | None:
        return item_type.get(row["tool_item_id"])  # an instance's measurements are checked against its item's

    for name, rows, cls, total, tool_types in (
        ("tool_item", gen.items(), ToolItem, sizes.items, no_tool_type),
        ("tool_instance", gen.instances(), ToolInstance, sizes.instances, item_tool_type),
        ("tool_usage", gen.usages(), ToolUsage, sizes.usages, no_tool_type),
    ):
        table = ENTITY_TABLES[name]
        written = 0
        for chunk in chunks(rows, CHUNK):
            if name == "tool_item":
                item_type.update((r["id"], r["tool_type"].value) for r in chunk)
            # The first 500 rows of each table, then one in 97: the generator is a handful of templates.
            check_sample(cls, chunk[:500] if written == 0 else chunk[::97], tool_types)
            async with store.write() as tx:
                await tx.insert_rows(table, chunk)
            written += len(chunk)
            done += len(chunk)
            now = time.perf_counter()
            if now - last_report >= 3 or written == total:
                rate = done / (now - started)
                eta = (sizes.rows - done) / rate if rate else 0.0
                progress(f"  {label}: {name} {written:,}/{total:,} ({rate:,.0f} rows/s, ETA {eta:,.0f}s)")
                last_report = now
    if store.dialect == "postgresql":
        # A bulk load leaves no statistics; autovacuum would analyze soon, a benchmark should not wait for it.
        async with store.engine.connect() as conn:
            await conn.exec_driver_sql("ANALYZE")
            await conn.commit()
    return time.perf_counter() - started


def sqlite_stamp(sizes: Sizes, seed: int) -> dict[str, Any]:
    return {"sizes": asdict(sizes), "seed": seed, "head": migrate.head_revision(), "chunk": CHUNK}


async def sqlite_database(path: Path, sizes: Sizes, seed: int, label: str) -> float | None:
    """Generate a SQLite file, or reuse the one a previous `--keep` run left with the same stamp (None)."""
    stamp_path = path.with_suffix(".json")
    if path.exists() and stamp_path.exists() and json.loads(stamp_path.read_text()) == sqlite_stamp(sizes, seed):
        progress(f"{label}: reusing {path} (same sizes, seed and schema)")
        return None
    for stale in (path, stamp_path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        stale.unlink(missing_ok=True)
    progress(f"{label}: generating {sizes.rows:,} rows into {path}")
    async with Store(str(path)) as store:
        seconds = await fill(store, sizes, seed, label)
    stamp_path.write_text(json.dumps(sqlite_stamp(sizes, seed)))
    return seconds


# =================================================================================================== queries


@dataclass(frozen=True)
class Query:
    name: str
    kind: str
    filter_text: str = ""
    order_by: str = ""
    page: int = 1  # 2: the page after the first, through its page_token


QUERIES = (
    Query("instances, first page", "tool_instance"),
    Query("instances, second page", "tool_instance", page=2),
    Query("instances by status", "tool_instance", "status = MAINTENANCE"),
    Query("instances by tag", "tool_instance", 'tags:"roughing"'),
    Query("usages, first page", "tool_usage"),
    # The whole year: one machine's year holds usages/machines rows, so the 1/100 baseline (50 a machine) still
    # fills a page, and both sides return the same number of rows. The range still goes through the index.
    Query(
        "usages by machine + time",
        "tool_usage",
        f'machine_id = "{machine_id(17)}" AND start_time >= "{YEAR_START:%Y-%m-%dT%H:%M:%SZ}" '
        f'AND start_time < "{YEAR_END:%Y-%m-%dT%H:%M:%SZ}"',
    ),
)


class StatementCapture:
    """The SQL and parameters the store sends, taken from the driver's cursor (`before_cursor_execute`): what
    EXPLAIN must see is what runs, not a statement rebuilt beside it."""

    def __init__(self) -> None:
        self.on = False
        self.seen: list[tuple[str, Any]] = []
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._record)
        # On SQLite the store's reads go straight to the driver (InlineConnection._run), past SQLAlchemy's events.
        run = InlineConnection._run

        def recorded(conn: InlineConnection, sql: str, args: tuple[Any, ...]) -> Any:
            if self.on:
                self.seen.append((sql, args))
            return run(conn, sql, args)

        InlineConnection._run = recorded  # type: ignore[method-assign,assignment]

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool) -> None:
        if self.on:
            self.seen.append((statement, parameters))

    @contextlib.contextmanager
    def capturing(self) -> Iterator[list[tuple[str, Any]]]:
        self.seen = []
        self.on = True
        try:
            yield self.seen
        finally:
            self.on = False


@dataclass
class Plan:
    lines: list[str]
    findings: list[str]  # what makes the query's cost grow with the table
    fixes: list[str]  # what would remove them: a store change, an index


@dataclass
class Timing:
    rows: int
    calls: int
    p50_ms: float
    p99_ms: float
    plan: Plan


@dataclass
class QueryResult:
    query: Query
    engine: str
    big: Timing
    small: Timing

    @property
    def ratio(self) -> float:
        return self.big.p50_ms / self.small.p50_ms if self.small.p50_ms > 0 else float("inf")


@dataclass
class Database:
    label: str  # "big" / "small"
    store: Store
    uc: UseCases


async def list_once(db: Database, q: Query, token: str) -> tuple[int, str]:
    result = await db.uc.entities[q.kind].list(
        page_size=PAGE_SIZE, page_token=token, filter_text=q.filter_text, order_by=q.order_by
    )
    return len(result.items), result.next_page_token


async def explain(db: Database, statement: str, parameters: Any) -> list[str]:
    """The plan of exactly this SQL and these driver parameters, on a connection of the store's own engine."""
    async with db.store.engine.connect() as conn:
        if db.store.dialect == "sqlite":
            rows = (await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)).all()
            depth: dict[int, int] = {0: 0}
            lines = []
            for node, parent, _, detail in rows:
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * (depth[node] - 1) + str(detail))
            return lines
        return [str(r[0]) for r in (await conn.exec_driver_sql("EXPLAIN " + statement, parameters)).all()]


SORTS_ALL = "sorts every matching row to return one page"


def findings(dialect: str, table: str, lines: Sequence[str]) -> list[str]:
    """What in a plan makes one page cost more as the table grows: reading all of it, or sorting all matches."""
    out: list[str] = []
    for line in lines:
        text = line.strip()
        if dialect == "sqlite":
            if re.fullmatch(rf"SCAN {table}", text):
                out.append(f"full scan of {table}")
            if text == "USE TEMP B-TREE FOR ORDER BY":  # ("FOR RIGHT PART OF ORDER BY" only orders ties)
                out.append(SORTS_ALL)
        else:
            if re.search(rf"Seq Scan on {table}\b", text):
                out.append(f"full scan of {table} (Seq Scan)")
            # A Sort node (not its "Sort Key:" line, nor an Incremental Sort over presorted rows, which stops at
            # the page like the index walk under it).
            if re.match(r"(->\s+)?Sort\s+\(", text):
                out.append(SORTS_ALL)
    return list(dict.fromkeys(out))


def nulls_last_on_not_null(query: ListQuery) -> list[str]:
    """Sort keys the store wraps in its NULLs-last CASE (server/store/query.py `_sort_parts`, decided by the entity
    field being Optional) although their column is NOT NULL: an ORDER BY that starts with that CASE expression
    is one no index can give, so every matching row is sorted."""
    table = ENTITY_TABLES[query.kind.name]
    return [k.field.name for k in query.order if k.field.nullable and not table.c[k.field.name].nullable]


def remedies(dialect: str, query: ListQuery) -> list[str]:
    """What would let the database walk rows in the page's order from the first match and stop after one page:
    an ORDER BY of plain columns, and an index on the equality-filtered columns, then the ORDER BY keys (id last,
    the keyset tie-breaker) unless an existing index already leads with them."""
    table = ENTITY_TABLES[query.kind.name]
    out: list[str] = []
    wrapped = nulls_last_on_not_null(query)
    if wrapped:
        out.append(
            f"store: ORDER BY and page-token condition on {', '.join(wrapped)} of {table.name} without the NULLs-last "
            "CASE (NOT NULL columns; server/store/query.py _sort_parts reads the entity field's Optional, not the column)"
        )
    equal = [t.field.name for t in query.terms if t.op == "=" and not t.prefix and t.field.kind != "tags"]
    columns = equal + [k.field.name for k in query.order if k.field.name not in equal]
    lead = columns[: len(equal) + 1]
    if not any([c.name for c in index.columns][: len(lead)] == lead for index in table.indexes):
        out.append(f"CREATE INDEX ix_{table.name}_{'_'.join(columns)} ON {table.name} ({', '.join(columns)})")
    if dialect == "postgresql" and any(t.field.kind == "tags" for t in query.terms):
        out.append(f"CREATE INDEX ix_{table.name}_tags ON {table.name} USING gin (tags jsonb_path_ops)  (rare tags)")
    return out


async def plan_of(db: Database, q: Query, token: str, capture: StatementCapture) -> Plan:
    table = ENTITY_TABLES[q.kind].name
    with capture.capturing() as seen:
        await list_once(db, q, token)
    selects = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT") and f"FROM {table}" in s]
    if not selects:
        raise BenchError(f"{q.name}: the store sent no SELECT from {table} to capture")
    lines = await explain(db, *selects[0])
    found = findings(db.store.dialect, table, lines)
    query = build_query(
        KINDS[q.kind], page_size=PAGE_SIZE, page_token=token, filter_text=q.filter_text, order_by=q.order_by
    )
    if SORTS_ALL in found and nulls_last_on_not_null(query):
        found.append(
            f"the ORDER BY starts with a CASE on {', '.join(nulls_last_on_not_null(query))}: no index serves it"
        )
    return Plan(lines, found, remedies(db.store.dialect, query) if found else [])


async def time_window(db: Database, q: Query, token: str, seconds: float, min_calls: int) -> list[float]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < min_calls:
        t0 = time.perf_counter()
        await list_once(db, q, token)
        latencies.append(time.perf_counter() - t0)
    return latencies


async def measure_query(
    q: Query, dbs: Sequence[Database], seconds: float, min_calls: int, capture: StatementCapture
) -> QueryResult | None:
    """Each side gets `seconds`, in two windows ordered small, big, big, small: drift hits both alike."""
    tokens: dict[str, str] = {}
    rows: dict[str, int] = {}
    for db in dbs:
        token = ""
        if q.page == 2:
            _, token = await list_once(db, replace(q, page=1), "")
            if not token:
                progress(f"  skipped: the {db.label} database has no second page (raise the sizes)")
                return None
        tokens[db.label] = token
        for _ in range(3):  # warm: caches, statement compilation
            rows[db.label], _ = await list_once(db, q, token)
    latencies: dict[str, list[float]] = {db.label: [] for db in dbs}
    for db in [*dbs, *reversed(dbs)]:
        latencies[db.label] += await time_window(db, q, tokens[db.label], seconds / 2, min_calls)
    timings: dict[str, Timing] = {}
    for db in dbs:
        ordered = sorted(latencies[db.label])
        plan = await plan_of(db, q, tokens[db.label], capture)
        timings[db.label] = Timing(
            rows[db.label], len(ordered), percentile(ordered, 0.5) * 1e3, percentile(ordered, 0.99) * 1e3, plan
        )
    return QueryResult(q, dbs[0].store.dialect, timings["big"], timings["small"])


@contextlib.asynccontextmanager
async def opened(paths: dict[str, str]) -> AsyncIterator[list[Database]]:
    async with contextlib.AsyncExitStack() as stack:
        dbs = []
        for label, url in paths.items():
            store = await stack.enter_async_context(Store(url))
            await migrate.ensure_at_head(store.engine)
            dbs.append(Database(label, store, build(store)))
        yield dbs


async def measure_engine(
    urls: dict[str, str], settings: Settings, capture: StatementCapture, engine: str
) -> list[QueryResult]:
    results = []
    async with opened(urls) as dbs:
        for q in QUERIES:
            progress(f"{engine}: {q.name}")
            result = await measure_query(q, dbs, settings.seconds, settings.min_calls, capture)
            if result is None:
                continue
            progress(
                f"  p50 {result.small.p50_ms:.2f} ms small, {result.big.p50_ms:.2f} ms big ({result.ratio:.1f}x)"
                + (f"; {', '.join(result.big.plan.findings)}" if result.big.plan.findings else "")
            )
            results.append(result)
    return results


# ==================================================================================================== memory


@dataclass
class MemoryResult:
    machines: int
    calls: int
    errors: int
    entities_seen: int
    rss_idle_mb: float  # serving, 200 collector sessions retrying, no call yet
    rss_max_mb: float  # the largest VmRSS sampled during the calls
    rss_after_mb: float
    hwm_mb: float  # VmHWM: the peak RSS of the process's whole life
    first_error: str = ""


def proc_status_mb(pid: int, key: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise BenchError(f"/proc/{pid}/status has no {key}")


def write_machines(path: Path, machines: int) -> None:
    """200 cnc machines on a local port nobody listens on: each session fails to connect and backs off (capped),
    as a floor whose controllers are down would have it; the sessions and their state are what costs memory."""
    closed_port = free_port()
    lines: list[str] = []
    for m in range(1, machines + 1):
        lines += [
            "[[machines]]",
            f'machine_id = "{machine_id(m)}"',
            f'endpoint = "opc.tcp://127.0.0.1:{closed_port}/floor/"',
            'profile = "cnc"',
            "",
        ]
    path.write_text("\n".join(lines))


async def rpc_mix(
    channel: grpc.aio.Channel, metadata: tuple[tuple[str, str], ...], calls: int, machines: int, seed: int
) -> tuple[int, int, str]:
    """Lists (page walks, filters by status, tag, machine and month) and Gets of ids those lists returned."""
    rng = random.Random(seed)
    instances = instance_grpc.ToolInstanceServiceStub(channel)
    usages = usage_grpc.ToolUsageServiceStub(channel)
    items = item_grpc.ToolItemServiceStub(channel)
    seen: dict[str, list[str]] = {"instance": [], "usage": [], "item": []}
    distinct: set[str] = set()
    walk = {"instance": "", "item": ""}
    errors, first_error = 0, ""
    months = [YEAR_START + timedelta(days=30 * k) for k in range(12)]

    def remember(kind: str, messages: Sequence[Any]) -> None:
        ids = [m.id for m in messages]
        seen[kind] = (seen[kind] + ids)[-2000:]
        distinct.update(ids)

    for n in range(calls):
        step = n % 8
        try:
            if step == 0:
                reply = await instances.ListToolInstances(
                    instance_pb.ListToolInstancesRequest(page_size=PAGE_SIZE, page_token=walk["instance"]),
                    metadata=metadata,
                )
                walk["instance"] = reply.next_page_token
                remember("instance", reply.tool_instances)
            elif step in (1, 2):
                text = (
                    f"status = {rng.choice(list(STATUS_WEIGHTS)).value}" if step == 1 else f'tags:"{rng.choice(TAGS)}"'
                )
                reply = await instances.ListToolInstances(
                    instance_pb.ListToolInstancesRequest(page_size=PAGE_SIZE, filter=text), metadata=metadata
                )
                remember("instance", reply.tool_instances)
            elif step == 3:
                start = rng.choice(months)
                text = (
                    f'machine_id = "{machine_id(rng.randint(1, machines))}" AND start_time >= "{start:%Y-%m-%dT%H:%M:%SZ}"'
                    f' AND start_time < "{start + timedelta(days=30):%Y-%m-%dT%H:%M:%SZ}"'
                )
                ureply = await usages.ListToolUsages(
                    usage_pb.ListToolUsagesRequest(page_size=PAGE_SIZE, filter=text), metadata=metadata
                )
                remember("usage", ureply.tool_usages)
            elif step == 4 and seen["instance"]:
                await instances.GetToolInstance(
                    instance_pb.GetToolInstanceRequest(id=rng.choice(seen["instance"])), metadata=metadata
                )
            elif step == 5 and seen["usage"]:
                await usages.GetToolUsage(usage_pb.GetToolUsageRequest(id=rng.choice(seen["usage"])), metadata=metadata)
            elif step == 6:
                ireply = await items.ListToolItems(
                    item_pb.ListToolItemsRequest(page_size=PAGE_SIZE, page_token=walk["item"]), metadata=metadata
                )
                walk["item"] = ireply.next_page_token
                remember("item", ireply.tool_items)
            elif step == 7 and seen["item"]:
                await items.GetToolItem(item_pb.GetToolItemRequest(id=rng.choice(seen["item"])), metadata=metadata)
        except grpc.aio.AioRpcError as err:
            errors += 1
            first_error = first_error or f"{err.code().name}: {err.details()}"
        if n and n % 100 == 0:
            progress(f"  {n}/{calls} calls")
    return errors, len(distinct), first_error


async def measure_memory(db: Path, workdir: Path, procs: Processes, settings: Settings) -> MemoryResult:
    log = workdir / "cli.log"
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"  # unique: a kept database is reused by later runs
    out = run_cli(["user", "create", "--db", str(db), "--email", email, "--admin"], log)
    secret = out.strip().splitlines()[-1].strip() if out.strip() else ""
    if not secret.startswith("sek_"):
        raise BenchError("`smooth-edge user create` did not print an API key (sek_...) on its last stdout line")
    config = workdir / "machines.toml"
    write_machines(config, settings.sizes.machines)
    port = free_port()
    server_log = workdir / "agent.log"
    argv = [
        *smooth_edge_command(),
        "--log-level", "WARNING",
        "serve", "--db", str(db), "--config", str(config), "--listen", f"127.0.0.1:{port}",
    ]  # fmt: skip
    proc = procs.start("agent", argv, server_log)
    server = SmoothServer("agent", db, port, proc, server_log)
    metadata = (("authorization", f"Bearer {secret}"),)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await wait_serving(channel, server)
        progress(f"agent serving (pid {proc.pid}); {settings.settle:g}s for its {settings.sizes.machines} sessions")
        await asyncio.sleep(settings.settle)
        idle = proc_status_mb(proc.pid, "VmRSS")
        samples: list[float] = []

        async def sample() -> None:
            while True:
                samples.append(proc_status_mb(proc.pid, "VmRSS"))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        try:
            errors, distinct, first_error = await rpc_mix(
                channel, metadata, settings.rpc_calls, settings.sizes.machines, settings.seed
            )
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        after = proc_status_mb(proc.pid, "VmRSS")
        hwm = proc_status_mb(proc.pid, "VmHWM")
    procs.stop(proc)
    return MemoryResult(
        settings.sizes.machines,
        settings.rpc_calls,
        errors,
        distinct,
        idle,
        max([*samples, after]),
        after,
        hwm,
        first_error,
    )


# ==================================================================================================== report


def _plan_block(result: QueryResult) -> list[str]:
    lines = [f"-- {result.engine}: {result.query.name} ({result.query.filter_text or 'no filter'})"]
    for label, timing in (("big", result.big), ("small", result.small)):
        if label == "small" and timing.plan.lines == result.big.plan.lines:
            lines.append("   small: the same plan")
            continue
        lines.append(f"   {label}:")
        lines += [f"     {line}" for line in timing.plan.lines]
    lines += [f"   !! {finding}" for finding in result.big.plan.findings]
    lines += [f"   fix: {fix}" for fix in result.big.plan.fixes]
    return lines


def plan_summary(plan: Plan) -> str:
    parts = []
    if any(f.startswith("full scan") for f in plan.findings):
        parts.append("full scan")
    if SORTS_ALL in plan.findings:
        parts.append("sorts all matches")
    return " + ".join(parts) or "walks an index, stops at a page"


def render(
    settings: Settings, results: Sequence[QueryResult], memory: MemoryResult | None, generated: dict[str, Any]
) -> str:
    big, small = settings.sizes, settings.sizes.scaled(BASELINE_DIVISOR)
    lines = [
        f"big:   {big.items:,} items, {big.instances:,} instances, {big.usages:,} usages, {big.machines} machines",
        f"small: {small.items:,} items, {small.instances:,} instances, {small.usages:,} usages (1/{BASELINE_DIVISOR})",
    ]
    for name, value in generated.items():
        lines.append(f"generated {name}: {value}")
    lines += [
        "",
        f"List p50/p99 in ms, page_size {PAGE_SIZE}, in process (use case -> store), goal big/small p50 <= "
        f"{GOAL_RATIO:g}x",
    ]
    header = ("engine", "query", "rows b/s", "small p50", "p99", "big p50", "p99", "big/small", "goal", "plan (big)")
    table = [header]
    for r in results:
        table.append(
            (
                r.engine,
                r.query.name,
                f"{r.big.rows}/{r.small.rows}",
                f"{r.small.p50_ms:.2f}",
                f"{r.small.p99_ms:.2f}",
                f"{r.big.p50_ms:.2f}",
                f"{r.big.p99_ms:.2f}",
                f"{r.ratio:.1f}x",
                "met" if r.ratio <= GOAL_RATIO else "NOT met",
                plan_summary(r.big.plan),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        lines.append(
            "  ".join(
                cell.ljust(w) if j in (0, 1, 9) else cell.rjust(w)
                for j, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    calls = sorted({r.big.calls for r in results} | {r.small.calls for r in results})
    lines.append(f"(calls per side and query: {calls[0]}..{calls[-1]}; a p99 of fewer than 100 calls is near the max)")
    lines += ["", "Query plans of the SQL the store sent (captured at the cursor, EXPLAIN QUERY PLAN / EXPLAIN):"]
    for r in results:
        lines += _plan_block(r)
    engines: dict[str, list[str]] = {}
    for r in results:
        for fix in r.big.plan.fixes:
            engines.setdefault(fix, [])
            if r.engine not in engines[fix]:
                engines[fix].append(r.engine)
    lines += [
        "",
        "Fixes (the bench changes no schema):" if engines else "No full scan or full sort on the big database.",
    ]
    ordered = sorted(engines.items(), key=lambda item: (not item[0].startswith("store:"), item[0]))
    lines += [f"  [{', '.join(names)}] {fix}" for fix, names in ordered]
    if memory is not None:
        verdict = "met" if memory.hwm_mb < GOAL_RSS_MB else "NOT met"
        lines += [
            "",
            f"Agent memory (smooth-edge serve on the big SQLite file, {memory.machines} machines configured, "
            f"{memory.calls} List/Get calls over gRPC, {memory.entities_seen:,} distinct entities returned, "
            f"{memory.errors} errors)",
            f"  RSS idle {memory.rss_idle_mb:.0f} MB, max during calls {memory.rss_max_mb:.0f} MB, after "
            f"{memory.rss_after_mb:.0f} MB, peak (VmHWM) {memory.hwm_mb:.0f} MB; goal < {GOAL_RSS_MB:g} MB: {verdict}",
        ]
        if memory.first_error:
            lines.append(f"  first error: {memory.first_error}")
    return "\n".join(lines)


def report_json(
    settings: Settings, results: Sequence[QueryResult], memory: MemoryResult | None, generated: dict[str, Any]
) -> dict[str, Any]:
    return {
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(settings).items()},
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "generated": generated,
        "queries": [
            {
                "engine": r.engine,
                "query": asdict(r.query),
                "ratio": r.ratio,
                "big": asdict(r.big),
                "small": asdict(r.small),
            }
            for r in results
        ],
        "memory": asdict(memory) if memory is not None else None,
    }


# ====================================================================================================== main


@dataclass(frozen=True)
class Settings:
    sizes: Sizes
    seed: int
    seconds: float
    min_calls: int
    pg: str  # "" = SQLite only
    rpc_calls: int  # 0 = no memory measurement
    settle: float
    keep_dir: Path | None
    json_path: Path | None = field(default=None)


async def run(
    settings: Settings, workdir: Path, procs: Processes
) -> tuple[list[QueryResult], MemoryResult | None, dict[str, Any]]:
    configure_logging("WARNING")  # as the agent runs: no log line per call
    capture = StatementCapture()
    big_db, small_db = workdir / "large.db", workdir / "baseline.db"
    small_sizes = settings.sizes.scaled(BASELINE_DIVISOR)
    generated: dict[str, Any] = {}
    seconds = await sqlite_database(big_db, settings.sizes, settings.seed, "sqlite big")
    await sqlite_database(small_db, small_sizes, settings.seed, "sqlite small")
    size_mb = sum(p.stat().st_size for p in workdir.glob("large.db*")) / 2**20
    generated["sqlite big"] = (
        f"{seconds:.0f}s ({settings.sizes.rows / seconds:,.0f} rows/s), {size_mb:,.0f} MB"
        if seconds
        else f"reused, {size_mb:,.0f} MB"
    )
    results = await measure_engine({"big": str(big_db), "small": str(small_db)}, settings, capture, "sqlite")
    if settings.pg:
        scratch = ScratchDatabases(settings.pg)
        try:
            urls = {}
            for label, sizes in (("big", settings.sizes), ("small", small_sizes)):
                name = await scratch.create(f"large_{label}")
                urls[label] = scratch.app_url(name)
                progress(f"postgresql {label}: generating {sizes.rows:,} rows into {name} (COPY)")
                async with Store(urls[label]) as store:
                    pg_seconds = await fill(store, sizes, settings.seed, f"postgresql {label}")
                if label == "big":
                    generated["postgresql big"] = f"{pg_seconds:.0f}s ({sizes.rows / pg_seconds:,.0f} rows/s)"
            results += await measure_engine(urls, settings, capture, "postgresql")
        finally:
            await scratch.drop_all()
    memory = None
    if settings.rpc_calls:
        progress(f"memory: serving {big_db.name} with {settings.sizes.machines} machines configured")
        memory = await measure_memory(big_db, workdir, procs, settings)
    return results, memory, generated


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        description="Large tables: generate a store of 10k items, 100k instances and 1M usages (and one 1/100 its "
        "size), time the List path on both, print the query plans, and measure the agent's RSS serving it."
    )
    parser.add_argument("--items", type=int, default=None, help="tool items (default 10,000)")
    parser.add_argument("--instances", type=int, default=None, help="tool instances (default 100,000)")
    parser.add_argument("--usages", type=int, default=None, help="tool usages (default 1,000,000)")
    parser.add_argument("--machines", type=int, default=200, help="machine ids of the usages and the agent's config")
    parser.add_argument("--small", action="store_true", help=f"1/{SMALL_DIVISOR} of the default sizes (a quick run)")
    parser.add_argument("--seed", type=int, default=1, help="the generator's seed (default 1)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per query and database (default 4)")
    parser.add_argument("--min-calls", type=int, default=5, help="at least this many calls per window (default 5)")
    parser.add_argument(
        "--pg",
        nargs="?",
        const=os.environ.get("SMOOTH_EDGE_TEST_PG_URL", DEFAULT_PG),
        default="",
        metavar="URL",
        help=f"also on PostgreSQL, in scratch databases it creates and drops (default URL {DEFAULT_PG})",
    )
    parser.add_argument("--rpc-calls", type=int, default=400, help="gRPC calls for the RSS figure; 0 skips it")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds between SERVING and the idle RSS")
    parser.add_argument(
        "--keep", type=Path, default=None, metavar="DIR", help="work in DIR and keep the SQLite files (reused)"
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    divisor = SMALL_DIVISOR if args.small else 1
    sizes = Sizes(
        args.items if args.items is not None else 10_000 // divisor,
        args.instances if args.instances is not None else 100_000 // divisor,
        args.usages if args.usages is not None else 1_000_000 // divisor,
        args.machines,
    )
    if min(sizes.items, sizes.instances, sizes.machines) < 1 or sizes.usages < 0 or sizes.machines > 999:
        parser.error("--items, --instances and --machines must be >= 1 (machines <= 999), --usages >= 0")
    if sizes.machines < 17:
        parser.error(f"--machines must be >= 17: the usage query filters by {machine_id(17)}")
    if args.seconds <= 0 or args.min_calls < 1 or args.rpc_calls < 0 or args.settle < 0:
        parser.error("--seconds must be > 0, --min-calls >= 1, --rpc-calls and --settle >= 0")
    return Settings(
        sizes, args.seed, args.seconds, args.min_calls, args.pg, args.rpc_calls, args.settle, args.keep, args.json
    )


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    """A temp dir removed on exit, or `--keep DIR`, whose SQLite files a later run with the same sizes reuses."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep.resolve()
        return
    with tempfile.TemporaryDirectory(prefix="smooth-bench-large-") as tmp:
        yield Path(tmp)


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        with (
            sigterm_as_exit(),
            workspace(settings.keep_dir) as workdir,
            Processes(STOP_GRACE_S, progress) as procs,
        ):
            progress(f"work dir {workdir}")
            results, memory, generated = asyncio.run(run(settings, workdir, procs))
    except KeyboardInterrupt:
        progress("interrupted; processes stopped, scratch databases dropped, temp files removed")
        return 130
    except BenchError as err:
        progress(f"error: {err}")
        return 1
    except SmoothError as err:
        progress(f"error: {err.message}")
        return 1
    progress("done")
    print(render(settings, results, memory, generated))
    if settings.json_path is not None:
        settings.json_path.write_text(
            json.dumps(report_json(settings, results, memory, generated), indent=2, default=str) + "\n"
        )
        progress(f"wrote {settings.json_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
