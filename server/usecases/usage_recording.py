"""Usage recorded by the collector: tracker events become ToolUsage rows, written with the tracker's state in
one transaction, so a crash or restart never doubles or drops a usage.

The T number is mapped to a tool instance through the machine's ToolPreset: the preset whose `machine_id` is
the machine's and whose `parameters.tool_number` is the T number (README "Usage recording"). A T number with
no such preset is kept in `collector_unmatched` and attached as soon as a matching preset is written.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from server.domain.collector import MachineStatus, UnmatchedTool, UsageEvent, UsageOpened
from server.domain.entities import ToolPreset, ToolUsage, Versioned
from server.domain.errors import SmoothError
from server.domain.lifecycle import USAGE_FLAG as INSTANCE_STATUS_FLAG
from server.domain.registry import KINDS, EntityKind
from server.domain.rulebook import tool_number_of
from server.usecases.entities import BatchWrite, Caller, EntityService
from server.usecases.ports import Transaction, UnitOfWork

log = structlog.get_logger("smooth_edge.collector")

MAX_PROGRAMS = 100
# Stays older than this are not attached automatically to a newly written preset: the T number may have
# meant another tool back then. They stay visible as unmatched.
ATTACH_WINDOW = timedelta(days=7)


def _tool_number(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    out = dict(metrics)
    if len(out.get("programs", [])) > MAX_PROGRAMS:
        out["programs"] = out["programs"][:MAX_PROGRAMS]
    return out


@dataclass(eq=False)
class _Request:
    """One machine's events and tracker state, waiting to be written."""

    machine_id: str
    events: list[UsageEvent]
    state: dict[str, Any]
    operator: str
    on_commit: Callable[[list[Versioned]], None] | None
    future: asyncio.Future[list[Versioned]]
    taken: bool = False  # the writer has it: it will be committed or fail, whatever the caller does


class UsageRecorder:
    """Applies machines' usage events and saves their tracker states, atomically.

    Group commit: every machine's `apply` joins a queue; one writer takes whatever has queued up (at most
    MAX_BATCH requests and MAX_BATCH_EVENTS usage events) and writes it in one transaction with a few statements
    for all of them (the same use case rules as one write: EntityService.write_many_in). A batch that fails is
    retried request by request, so one machine's bad data fails only that machine's request. Under load, batches
    grow and the cost per tool change falls; when quiet, a request is written alone at once.

    The events bound what one batch costs the event loop: on SQLite a transaction runs inline, and each usage also
    updates its instance (status, tool life). A batch of hundreds of tool changes held the loop for a second and
    more, long enough for the OPC UA sessions' keep-alives to time out (bench_collector with 200 machines lost
    sessions and the tool changes they would have seen). Measured there: 256 events a batch kept every session
    and tripled the throughput of 48 (each commit costs); yielding inside a batch cost more than it saved.
    """

    MAX_BATCH = 500
    MAX_BATCH_EVENTS = 256

    def __init__(self, store: UnitOfWork, usages: EntityService, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.usages = usages
        self._clock = clock
        self._queue: deque[_Request] = deque()
        self._writer: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Machines' requests waiting for the next batch (the batch being written not included)."""
        return len(self._queue)

    async def load_state(self, machine_id: str) -> dict[str, Any] | None:
        async with self.store.read() as tx:
            return await tx.collector_state(machine_id)

    async def apply(
        self,
        machine_id: str,
        events: Sequence[UsageEvent],
        state: dict[str, Any],
        *,
        operator: str = "",
        on_commit: Callable[[list[Versioned]], None] | None = None,
    ) -> list[Versioned]:
        """Write the events' usages and the new tracker state in one transaction; returns the usages written.

        `on_commit` runs right after the commit, before this returns. If the caller is cancelled after the
        writer took its request, this waits for the outcome (on_commit tells whether it committed), then
        re-raises the cancellation; a request not yet taken is withdrawn and never written.
        """
        request = _Request(
            machine_id, list(events), state, operator, on_commit, asyncio.get_running_loop().create_future()
        )
        self._queue.append(request)
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain(), name="usage-writer")
        try:
            return await asyncio.shield(request.future)
        except asyncio.CancelledError:
            if not request.taken:
                self._queue.remove(request)
                raise
            while not request.future.done():
                with contextlib.suppress(BaseException):
                    await asyncio.shield(request.future)
            raise

    async def _drain(self) -> None:
        while self._queue:
            batch: list[_Request] = []
            events = 0
            while self._queue and len(batch) < self.MAX_BATCH and (not batch or events < self.MAX_BATCH_EVENTS):
                request = self._queue.popleft()
                request.taken = True
                batch.append(request)
                events += len(request.events)
            try:
                await self._write(batch)
                await asyncio.sleep(0)  # let the sessions, the API and the replicator run between batches
            except BaseException as exc:  # cancelled (the loop is closing): nobody is left to write them
                for request in batch + list(self._queue):
                    if not request.future.done():
                        request.future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
                self._queue.clear()
                raise

    async def _write(self, batch: list[_Request]) -> None:
        try:
            async with self.store.write() as tx:
                results = await self._write_batch(tx, batch)
        except SmoothError as exc:
            if len(batch) > 1:
                log.warning("collector.batch_retried_one_by_one", requests=len(batch), error=str(exc))
                for request in batch:
                    await self._write([request])
                return
            batch[0].future.set_exception(exc)
            return
        except Exception as exc:  # a bug: logged here with its traceback, and every waiting machine fails with it
            log.exception("collector.batch_failed", requests=len(batch))
            for request in batch:
                request.future.set_exception(exc)
            return
        for request, written in zip(batch, results, strict=True):
            if request.on_commit is not None:
                request.on_commit(written)
            request.future.set_result(written)

    async def _write_batch(self, tx: Transaction, batch: Sequence[_Request]) -> list[list[Versioned]]:
        """Plan every request's writes against one read of the usages and presets involved, then write them."""
        kind = self.usages.kind
        ids = list({e.usage_id for r in batch for e in r.events})
        known = await tx.get_many(kind, ids) if ids else {}
        machines = sorted({r.machine_id for r in batch if r.events})
        numbers = sorted({e.tool_number for r in batch for e in r.events})
        instances: dict[tuple[str, int], uuid.UUID] = {}
        for machine_id, value, instance_id in await tx.preset_instances(machines, numbers) if machines else []:
            number = _tool_number(value)
            if number is not None and instance_id is not None:
                instances[(machine_id, number)] = instance_id
        plan = _Plan(known)
        owners: list[int] = []  # request index of each write
        for index, request in enumerate(batch):
            caller = Caller(peer=f"collector:{request.machine_id}")
            for event in request.events:
                instance = instances.get((request.machine_id, event.tool_number))
                if plan.add(request.machine_id, event, instance, request.operator, caller, self._clock()):
                    owners.append(index)
        written = await self.usages.write_many_in(tx, plan.writes)
        if plan.unmatched:
            await tx.upsert_unmatched_many(list(plan.unmatched.values()))
        if plan.matched:
            await tx.delete_unmatched_many(sorted(plan.matched))
        await tx.save_collector_states({r.machine_id: r.state for r in batch}, self._clock())
        results: list[list[Versioned]] = [[] for _ in batch]
        for index, usage in zip(owners, written, strict=True):
            results[index].append(usage)
        return results

    async def attach_unmatched(self, tx: Transaction, preset: ToolPreset, caller: Caller) -> int:
        """A preset was written: turn the finished stays of its T number on its machine into usages."""
        number = tool_number_of(preset)
        if number is None or preset.tool_instance_id is None:
            return 0
        oldest = self._clock() - ATTACH_WINDOW
        rows = [
            row
            for row in await tx.unmatched(machine_id=preset.machine_id, tool_number=number)
            # Still in the spindle: the close will find the preset. Too old to be this tool for sure: it stays
            # listed as unmatched for an operator.
            if row["end_time"] is not None and row["end_time"] >= oldest
        ]
        if not rows:
            return 0
        await tx.delete_unmatched_many([row["id"] for row in rows])
        await self.usages.write_many_in(
            tx,
            [
                BatchWrite(None, row["id"], _usage_values(row, preset.tool_instance_id, "", late=True), caller)
                for row in rows
            ],
        )
        return len(rows)

    async def statuses(self, live: dict[str, MachineStatus]) -> list[MachineStatus]:
        """Every machine the collector knows (live or from saved state), with its unmatched T numbers."""
        async with self.store.read() as tx:
            rows = await tx.unmatched()
            open_usages = await tx.get_many(
                KINDS["tool_usage"], [s.open_usage_id for s in live.values() if s.open_usage_id is not None]
            )
        unmatched: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for row in rows:
            unmatched.setdefault(row["machine_id"], {}).setdefault(row["tool_number"], []).append(row)
        out = []
        for machine_id in sorted(set(live) | set(unmatched)):
            status = live.get(machine_id, MachineStatus(machine_id))
            tools = [
                UnmatchedTool(
                    tool_number=number,
                    intervals=len(stays),
                    first_seen=min(r["start_time"] for r in stays),
                    last_seen=max(r["end_time"] or r["start_time"] for r in stays),
                )
                for number, stays in sorted(unmatched.get(machine_id, {}).items())
            ]
            usage = open_usages.get(status.open_usage_id) if status.open_usage_id is not None else None
            flag = usage.usage_metrics.get(INSTANCE_STATUS_FLAG, "") if isinstance(usage, ToolUsage) else ""
            out.append(replace(status, unmatched=tools, open_tool_status=str(flag)))
        return out


def _usage_values(row: dict[str, Any], instance_id: uuid.UUID, operator: str, *, late: bool) -> dict[str, Any]:
    return {
        "tool_instance_id": instance_id,
        "start_time": row["start_time"],
        "end_time": row["end_time"],
        "machine_id": row["machine_id"],
        "program_name": row["program_name"],
        "operator": operator[:200],
        "usage_metrics": {**row["usage_metrics"], "x-attached_late": True} if late else row["usage_metrics"],
    }


class _Plan:
    """The writes of a batch of events, planned against what the store holds and what the batch did so far.

    Replays (a usage already opened, or already closed) write nothing: a crash between the commit and the
    tracker learning of it is harmless.
    """

    def __init__(self, known: dict[uuid.UUID, Versioned]) -> None:
        self.writes: list[BatchWrite] = []
        self.unmatched: dict[uuid.UUID, dict[str, Any]] = {}  # rows to upsert into collector_unmatched
        self.matched: set[uuid.UUID] = set()  # collector_unmatched rows that became usages
        self._usages: dict[uuid.UUID, ToolUsage] = {i: u for i, u in known.items() if isinstance(u, ToolUsage)}
        self._opened: dict[uuid.UUID, dict[str, Any]] = {}  # usage id -> metrics, for usages created here
        self._closed: set[uuid.UUID] = set()

    def add(
        self,
        machine_id: str,
        event: UsageEvent,
        instance: uuid.UUID | None,
        operator: str,
        caller: Caller,
        now: datetime,
    ) -> bool:
        """Plan one event; True when it adds a usage write."""
        usage_id = event.usage_id
        row: dict[str, Any] = {
            "id": usage_id,
            "machine_id": machine_id,
            "tool_number": event.tool_number,
            "start_time": event.start,
            "end_time": None,
            "program_name": event.program[:200],
            "usage_metrics": {},
            "created_at": now,
        }
        if isinstance(event, UsageOpened):
            if usage_id in self._usages or usage_id in self._opened:
                return False  # already recorded (a replay after a crash)
            metrics: dict[str, Any] = {"source": "COLLECTOR", "tool_number": event.tool_number}
            if event.interrupted:
                metrics["interrupted"] = True
            row["usage_metrics"] = metrics
            if instance is None:
                self.unmatched[usage_id] = row
                return False
            self._opened[usage_id] = metrics
            values = _usage_values(row, instance, operator, late=False)
            del values["end_time"]
            self.writes.append(BatchWrite(None, usage_id, values, caller))
            return True
        metrics = _metrics(event.metrics)
        existing = self._usages.get(usage_id)
        if existing is not None or usage_id in self._opened:
            if usage_id in self._closed or (existing is not None and existing.end_time is not None):
                return False  # already closed (a replay after a crash)
            before = existing.usage_metrics if existing is not None else self._opened[usage_id]
            self._closed.add(usage_id)
            # The close names the program the stay started with: a program changed at the very instant of the
            # tool change may have reached the tracker after the usage was opened (issue 10, case 5).
            values = {
                "end_time": event.end,
                "usage_metrics": {**before, **metrics},
                "program_name": event.program[:200],
            }
            self.writes.append(BatchWrite(existing, usage_id, values, caller))
            return True
        row.update(end_time=event.end, usage_metrics=metrics)
        if instance is None:
            self.unmatched[usage_id] = row
            return False
        self.unmatched.pop(usage_id, None)
        self.matched.add(usage_id)
        self._closed.add(usage_id)
        self.writes.append(BatchWrite(None, usage_id, _usage_values(row, instance, operator, late=False), caller))
        return True


class PresetService(EntityService):
    """ToolPresets: one T number per machine, and writing a preset attaches the usages waiting for it."""

    def __init__(
        self, store: UnitOfWork, kind: EntityKind, clock: Callable[[], datetime], recorder: UsageRecorder
    ) -> None:
        super().__init__(store, kind, clock)
        self._recorder = recorder

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        assert isinstance(after, ToolPreset)
        await self._recorder.attach_unmatched(tx, after, Caller(peer=caller.peer or "preset"))
