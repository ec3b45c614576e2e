"""MES queries and the change stream on a large store (issue 13). Generates (or reuses, with --keep) the floor of
bench_large.py — 10k tool items, 100k instances, 1M usages over a year on 200 machines — and adds what the MES
queries read: 40 presets per machine (its magazine), tool life limits on half the items with each instance's
state computed from its usages, and one tool set per machine. Then, per query: p50/p99 of the use case on the
store and the query plan of the SQL it sends (the index it walks); and the change stream's throughput: changes
per second delivered to each of N watchers over real gRPC while a writer records usages (open, then close: the
collector's path with its instance updates).

Run from the repository root: `python tests/bench/bench_mes.py --help`. Not part of the pytest run (no test_
prefix); it asserts nothing about timing. Add --pg to run the queries on PostgreSQL too (a scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from bench_api import percentile, progress
from bench_large import (
    MAGAZINE,
    YEAR_END,
    YEAR_START,
    Sizes,
    StatementCapture,
    explain,
    fill,
    machine_id,
    sqlite_database,
)
from bench_replication import DEFAULT_PG, ScratchDatabases
from smooth.core.v1 import mes_pb2, mes_pb2_grpc

from agent.grpc_client import authorized_channel
from agent.logs import configure_logging
from server.api.server import GrpcServer
from server.domain import toollife
from server.domain.entities import UserRole
from server.domain.mes import InstanceScope, UsageFilter, UsageGrouping
from server.store.repository import Store, Transaction
from server.store.tables import ENTITY_TABLES, tool_set_instances
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller

ENRICHED_KEY = "bench_mes_enriched"
LIMITED_SHARE = 0.5  # items with a tool life limit


# ================================================================================================= enrichment


async def enrich(store: Store, sizes: Sizes, seed: int) -> None:
    """Presets, tool life and tool sets over the generated floor (once per database: a marker row says so)."""
    async with store.read() as tx:
        if await tx.replication_value(ENRICHED_KEY):
            progress("enrichment: already there")
            return
    rng = random.Random(f"{seed}/mes")
    started = time.perf_counter()
    async with store.engine.connect() as conn:
        items = [r[0] for r in (await conn.execute(sa.text("SELECT id FROM tool_items ORDER BY created_at, id")))]
        instances = (
            await conn.execute(sa.text("SELECT id, tool_item_id FROM tool_instances ORDER BY created_at, id"))
        ).all()
        usages = ENTITY_TABLES["tool_usage"]
        used_rows = (
            await conn.execute(
                sa.select(
                    usages.c.tool_instance_id,
                    sa.func.count(),
                    sa.func.sum(usages.c.usage_metrics["time_in_spindle_s"].as_float()),
                )
                .where(usages.c.end_time.is_not(None))
                .group_by(usages.c.tool_instance_id)
            )
        ).all()
    progress(f"enrichment: read {len(instances):,} instances and the usage totals of {len(used_rows):,}")
    used = {_uuid(r[0]): {"usages": float(r[1]), "time_in_spindle_s": float(r[2] or 0.0)} for r in used_rows}
    by_item: dict[Any, list[float]] = {}
    for instance_id, item_id in instances:
        by_item.setdefault(_uuid(item_id), []).append(used.get(_uuid(instance_id), {}).get("time_in_spindle_s", 0.0))
    limits: dict[Any, dict[str, Any]] = {}
    for item_id in items:
        item_id = _uuid(item_id)
        spent = sorted(by_item.get(item_id, [0.0]))
        if rng.random() < LIMITED_SHARE:
            typical = max(spent[len(spent) // 2], 3600.0)
            limit = round(typical * rng.uniform(0.8, 2.0))
            limits[item_id] = {"time_in_spindle_s": {"limit": limit, "prewarning": round(limit * 0.8)}}
    at = YEAR_END.isoformat().replace("+00:00", "Z")
    items_table, instances_table = ENTITY_TABLES["tool_item"], ENTITY_TABLES["tool_instance"]
    state_rows = []
    for instance_id, item_id in instances:
        policy = limits.get(_uuid(item_id))
        if policy is None:
            continue
        outcome = toollife.account({}, toollife.effective(policy), used.get(_uuid(instance_id), {}), at)
        level, fraction = toollife.summary(outcome.state)
        state_rows.append({"b_id": instance_id, "s": outcome.state, "l": level, "r": fraction})
    now = datetime.now(UTC)
    presets, members, sets = [], [], []
    for m in range(sizes.machines):
        set_id = uuid.uuid4()
        sets.append(
            {
                "id": set_id, "owner_id": None, "created_at": now, "updated_at": now, "version": 1,
                "name": f"Job kit {machine_id(m + 1)}", "description": "", "is_global": True, "tags": [],
            }
        )  # fmt: skip
        in_magazines = min(len(instances), sizes.machines * MAGAZINE)
        for slot in range(-(-(in_magazines - m) // sizes.machines)):
            instance_id = instances[(m + slot * sizes.machines) % len(instances)][0]
            presets.append(
                {
                    "id": uuid.uuid4(), "owner_id": None, "created_at": now, "updated_at": now, "version": 1,
                    "name": f"T{slot + 1}", "description": "", "tool_instance_id": _uuid(instance_id),
                    "machine_id": machine_id(m + 1), "parameters": {"tool_number": slot + 1}, "is_default": True,
                    "tags": [],
                }
            )  # fmt: skip
            members.append({"tool_set_id": set_id, "tool_instance_id": _uuid(instance_id)})
    async with store.write() as tx:
        statement = (
            items_table.update().where(items_table.c.id == sa.bindparam("b_id")).values(tool_life=sa.bindparam("t"))
        )
        await tx._execute(statement, [{"b_id": i, "t": p} for i, p in limits.items()])
        statement = (
            instances_table.update()
            .where(instances_table.c.id == sa.bindparam("b_id"))
            .values(tool_life_state=sa.bindparam("s"), life_level=sa.bindparam("l"), life_remaining=sa.bindparam("r"))
        )
        await tx._execute(statement, [{**r, "b_id": _uuid(r["b_id"])} for r in state_rows])
        await tx.insert_rows(ENTITY_TABLES["tool_preset"], presets)
        await tx.insert_rows(ENTITY_TABLES["tool_set"], sets)
        await tx.insert_rows(tool_set_instances, members)
        await tx.set_replication_value(ENRICHED_KEY, True, now)
    async with store.engine.connect() as conn:  # statistics for the planner after a bulk load (both engines)
        await conn.exec_driver_sql("ANALYZE")
        await conn.commit()
    progress(
        f"enrichment: {len(limits):,} items with limits, {len(state_rows):,} instance states, {len(presets):,} presets, "
        f"{len(sets)} tool sets in {time.perf_counter() - started:.1f}s"
    )


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


# =================================================================================================== queries


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[UseCases], Awaitable[int]]  # the use case call; returns the rows/groups/tools it answered
    rows: Callable[[Transaction], Awaitable[Any]]  # the store call whose SQL is explained


def cases(item_id: uuid.UUID, tool_set_id: uuid.UUID) -> list[Case]:
    machine = machine_id(17)
    week = UsageFilter(YEAR_START + timedelta(days=180), YEAR_START + timedelta(days=187))
    year_one_machine = UsageFilter(YEAR_START, YEAR_END, machine_id=machine)
    day = UsageFilter(YEAR_START + timedelta(days=200), YEAR_START + timedelta(days=201))
    due = date(2025, 3, 1)

    async def life(uc: UseCases, scope: InstanceScope, level: int) -> int:
        return len((await uc.mes.tool_life(scope, level, page_size=50, page_token="")).items)

    async def calibration(uc: UseCases, scope: InstanceScope) -> int:
        return len((await uc.mes.calibration_due(scope, due, page_size=50, page_token="")).items)

    async def totals(uc: UseCases, flt: UsageFilter, group: UsageGrouping) -> int:
        return len((await uc.mes.summarize_usage(flt, group, page_size=100, page_token="")).groups)

    async def readiness(uc: UseCases) -> int:
        result = await uc.mes.job_readiness(
            tool_set_id, machine, parts=0, minutes=30, max_replacements=3, on_date=date(2025, 1, 1), caller=Caller()
        )
        return len(result.tools)

    on_machine, of_item, every = InstanceScope(machine_id=machine), InstanceScope(tool_item_id=item_id), InstanceScope()
    return [
        Case(
            "tool life on a machine (least first)",
            lambda uc: life(uc, on_machine, toollife.OK),
            lambda tx: tx.tool_life_page(on_machine, toollife.OK, None, 51),
        ),
        Case(
            "at or past prewarning, all",
            lambda uc: life(uc, every, toollife.PREWARNING),
            lambda tx: tx.tool_life_page(every, toollife.PREWARNING, None, 51),
        ),
        Case(
            "at or past prewarning, one item",
            lambda uc: life(uc, of_item, toollife.PREWARNING),
            lambda tx: tx.tool_life_page(of_item, toollife.PREWARNING, None, 51),
        ),
        Case(
            "calibration due before a date",
            lambda uc: calibration(uc, every),
            lambda tx: tx.calibration_due_page(every, due, None, 51),
        ),
        Case(
            "calibration due, one machine",
            lambda uc: calibration(uc, on_machine),
            lambda tx: tx.calibration_due_page(on_machine, due, None, 51),
        ),
        Case(
            "usage totals by machine, a week",
            lambda uc: totals(uc, week, UsageGrouping.MACHINE),
            lambda tx: tx.usage_totals(week, UsageGrouping.MACHINE, None, 101),
        ),
        Case(
            "usage totals by program, a machine's year",
            lambda uc: totals(uc, year_one_machine, UsageGrouping.PROGRAM),
            lambda tx: tx.usage_totals(year_one_machine, UsageGrouping.PROGRAM, None, 101),
        ),
        Case(
            "usage totals by tool item, a day",
            lambda uc: totals(uc, day, UsageGrouping.TOOL_ITEM),
            lambda tx: tx.usage_totals(day, UsageGrouping.TOOL_ITEM, None, 101),
        ),
        Case(
            "job readiness, 40 tools",
            readiness,
            lambda tx: tx.sister_instances([(item_id, None)], date(2025, 1, 1), [], 22),
        ),
    ]


@dataclass
class Measured:
    name: str
    answered: int
    calls: int
    p50_ms: float
    p99_ms: float
    plan: list[str]


async def plan_lines(store: Store, case: Case, capture: StatementCapture) -> list[str]:
    """The plan of the (first) SELECT the store call sends, run on the async engine so the SQL can be captured."""
    async with store.engine.connect() as conn:
        with capture.capturing() as seen:
            await case.rows(Transaction(conn))
    selects = [(s, p) for s, p in seen if s.lstrip().upper().startswith("SELECT")]
    if not selects:
        return ["(no SELECT captured)"]
    return await explain_on(store, *selects[0])


async def explain_on(store: Store, statement: str, parameters: Any) -> list[str]:
    @dataclass
    class _Db:
        store: Store

    return await explain(_Db(store), statement, parameters)  # type: ignore[arg-type]


async def measure(uc: UseCases, store: Store, case: Case, seconds: float, capture: StatementCapture) -> Measured:
    answered = await case.run(uc)  # warm
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(latencies) < 5:
        started = time.perf_counter()
        await case.run(uc)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    plan = await plan_lines(store, case, capture)
    return Measured(case.name, answered, len(latencies), percentile(latencies, 0.5), percentile(latencies, 0.99), plan)


async def pick(store: Store) -> tuple[uuid.UUID, uuid.UUID]:
    """A limited tool item with many instances, and machine 17's tool set."""
    async with store.engine.connect() as conn:
        item = (
            await conn.execute(
                sa.text(
                    "SELECT i.tool_item_id FROM tool_instances i JOIN tool_items t ON t.id = i.tool_item_id "
                    "WHERE i.life_level >= 2 GROUP BY i.tool_item_id ORDER BY count(*) DESC LIMIT 1"
                )
            )
        ).scalar()
        tool_set = (
            await conn.execute(sa.text("SELECT id FROM tool_sets WHERE name = :n"), {"n": f"Job kit {machine_id(17)}"})
        ).scalar()
    return _uuid(item), _uuid(tool_set)


# ================================================================================================ the stream


@dataclass
class StreamResult:
    watchers: int
    seconds: float
    written: int
    delivered_each: list[int]
    p50_lag_ms: float
    p99_lag_ms: float


async def stream_throughput(store: Store, uc: UseCases, watchers: int, seconds: float) -> StreamResult:
    """N watchers over real gRPC (one channel each, in another process, as MES clients are) while a writer in this
    process opens and closes usages on the machines' tools through the use cases (the collector's path)."""
    _, _, secret = await uc.api_keys.bootstrap(email=f"mes-{uuid.uuid4().hex[:6]}@bench.local", role=UserRole.ADMIN)
    async with store.engine.connect() as conn:
        tools = (await conn.execute(sa.text("SELECT tool_instance_id, machine_id FROM tool_presets LIMIT 400"))).all()
    usages = uc.entities["tool_usage"]
    loop = asyncio.get_running_loop()

    async with GrpcServer(uc, "127.0.0.1:0", shutdown_grace_s=1) as server:
        parent, child = multiprocessing.get_context("spawn").Pipe()
        process = multiprocessing.get_context("spawn").Process(
            target=_watchers_process, args=(server.port, secret, watchers, child), daemon=True
        )
        process.start()
        try:
            if await loop.run_in_executor(None, parent.recv) != "ready":
                raise RuntimeError("the watcher process did not start its watchers")
            async with store.read() as tx:
                _, before = await tx.change_bounds()
            parent.send("go")
            rng = random.Random(7)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                instance_id, machine = rng.choice(tools)
                at = datetime.now(UTC)
                usage = await usages.create(
                    {"tool_instance_id": _uuid(instance_id), "machine_id": machine, "start_time": at},
                    entity_id=None,
                    caller=Caller(),
                )
                await usages.update(
                    usage.id,
                    usage.version,
                    {"end_time": at + timedelta(seconds=1), "usage_metrics": {"time_in_spindle_s": 1.0, "cycles": 1}},
                    caller=Caller(),
                )
            async with store.read() as tx:
                _, newest = await tx.change_bounds()
            total = newest - before
            parent.send(total)  # the watchers stop once each has all of them (or after a 30 s drain)
            received, lags, elapsed = await loop.run_in_executor(None, parent.recv)
        finally:
            process.join(10)
            if process.is_alive():
                process.kill()
    lags.sort()
    return StreamResult(
        watchers,
        elapsed,
        total,
        received,
        percentile(lags, 0.5) if lags else 0.0,
        percentile(lags, 0.99) if lags else 0.0,
    )


def _watchers_process(port: int, secret: str, watchers: int, conn: Any) -> None:
    asyncio.run(_watch_all(port, secret, watchers, conn))


async def _watch_all(port: int, secret: str, watchers: int, conn: Any) -> None:
    """The watcher side: N WatchChanges calls from now; reports (changes each, lags of watcher 0 in ms, seconds
    from the first write to the last change delivered)."""
    loop = asyncio.get_running_loop()
    received = [0] * watchers
    last_at = [0.0] * watchers
    lags: list[float] = []
    ready = asyncio.Barrier(watchers + 1)

    async def watch(n: int) -> None:
        async with authorized_channel(f"127.0.0.1:{port}", secret) as channel:
            call = mes_pb2_grpc.ChangeStreamServiceStub(channel).WatchChanges(mes_pb2.WatchChangesRequest())
            first = True
            async for message in call:
                if first:
                    first = False
                    await ready.wait()
                    continue
                if message.changes:
                    received[n] += len(message.changes)
                    last_at[n] = time.perf_counter()
                    if n == 0:
                        now = time.time()
                        lags.extend((now - c.change_time.ToDatetime(UTC).timestamp()) * 1000 for c in message.changes)

    tasks = [asyncio.create_task(watch(n)) for n in range(watchers)]
    await ready.wait()
    conn.send("ready")
    await loop.run_in_executor(None, conn.recv)  # "go"
    started = time.perf_counter()
    total = await loop.run_in_executor(None, conn.recv)
    drain_until = time.perf_counter() + 30
    while min(received) < total and time.perf_counter() < drain_until:  # noqa: ASYNC110 (a bounded drain)
        await asyncio.sleep(0.01)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    conn.send((received, lags, max(last_at) - started))


# ================================================================================================== the run


def render(engine: str, measured: Sequence[Measured]) -> list[str]:
    out = [f"## {engine}", "", "| query | answered | calls | p50 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
    for m in measured:
        out.append(f"| {m.name} | {m.answered} | {m.calls} | {m.p50_ms:.2f} | {m.p99_ms:.2f} |")
    out.append("")
    for m in measured:
        out.append(f"{m.name}:")
        out += [f"    {line}" for line in m.plan]
    out.append("")
    return out


async def queries_on(store: Store, seconds: float) -> list[Measured]:
    uc = build(store)
    item_id, tool_set_id = await pick(store)
    capture = StatementCapture()
    out = []
    for case in cases(item_id, tool_set_id):
        progress(f"  {case.name}")
        out.append(await measure(uc, store, case, seconds, capture))
    return out


async def main_async(args: argparse.Namespace) -> int:
    configure_logging("WARNING")
    sizes = Sizes(args.items, args.instances, args.usages, args.machines)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-mes-"))
    workdir.mkdir(parents=True, exist_ok=True)
    db = workdir / f"mes-{sizes.instances}-{sizes.usages}.db"
    await sqlite_database(db, sizes, args.seed, "sqlite")
    report: list[str] = [
        f"# MES queries on {sizes.items:,} items, {sizes.instances:,} instances, {sizes.usages:,} usages, "
        f"{sizes.machines} machines",
        "",
    ]
    results: dict[str, Any] = {}
    async with Store(str(db)) as store:
        await enrich(store, sizes, args.seed)
        progress("sqlite: measuring the queries")
        measured = await queries_on(store, args.seconds)
        report += render("SQLite", measured)
        results["sqlite"] = [m.__dict__ for m in measured]
        if args.watchers:
            progress(f"sqlite: the change stream, {args.watchers} watchers, {args.stream_seconds:g}s of writes")
            stream = await stream_throughput(store, build(store), args.watchers, args.stream_seconds)
            rate = [n / stream.seconds for n in stream.delivered_each]
            report += [
                "## Change stream (SQLite)",
                "",
                f"{stream.watchers} watchers over gRPC while a writer opened and closed usages for "
                f"{args.stream_seconds:g}s: {stream.written:,} changes committed; each watcher received "
                f"{min(stream.delivered_each):,}..{max(stream.delivered_each):,} "
                f"({min(rate):,.0f}..{max(rate):,.0f} changes/s each, {sum(rate):,.0f}/s in all); "
                f"commit-to-delivery lag p50 {stream.p50_lag_ms:.1f} ms, p99 {stream.p99_lag_ms:.1f} ms.",
                "",
            ]
            results["stream"] = stream.__dict__
    if args.pg:
        scratch = ScratchDatabases(args.pg)
        try:
            name = await scratch.create("mes")
            async with Store(scratch.app_url(name)) as store:
                progress("postgresql: generating")
                await fill(store, sizes, args.seed, "postgresql")
                await enrich(store, sizes, args.seed)
                progress("postgresql: measuring the queries")
                measured = await queries_on(store, args.seconds)
                report += render("PostgreSQL", measured)
                results["postgresql"] = [m.__dict__ for m in measured]
        finally:
            await scratch.drop_all()
    print("\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--usages", type=int, default=1_000_000)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per query (default 3)")
    parser.add_argument("--watchers", type=int, default=10, help="change stream watchers (0: skip the stream)")
    parser.add_argument("--stream-seconds", type=float, default=10.0, help="seconds of writes for the stream")
    parser.add_argument("--keep", help="directory to keep (and reuse) the generated SQLite database in")
    parser.add_argument("--pg", nargs="?", const=DEFAULT_PG, default=None, help="also PostgreSQL (admin DSN)")
    parser.add_argument("--json", help="write the figures here as JSON too")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
