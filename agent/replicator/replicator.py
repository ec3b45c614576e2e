"""The replicator: pushes this edge's change log to central by position (DESIGN decision 7, like litestream).

It reads local changes after the last acknowledged sequence, sends bounded batches (`origin_id`, `after_seq`,
changes in order — one local transaction's changes are consecutive), and advances the acknowledged position
only after central's answer. It wakes on new local commits or a timer, flushes on shutdown within a time bound,
and exposes its state. Failures are told apart (errors.py): a transient one (central unreachable, busy, at
another position) is retried with exponential backoff to a cap; a permanent one (refused, central failed, a
bug here) is logged with its traceback once, shown in the status, and retried only slowly. The loop itself is run
by the agent's supervisor: should it die of an unexpected error anyway, it is logged and restarted with backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import structlog

from agent.replicator.central_client import CentralClient, PushResult
from agent.replicator.errors import SequenceGap, is_transient
from agent.replicator.ports import EdgeStore, EdgeTransaction, PullApply, ResyncApply
from agent.replicator.status import ReplicatorState, ReplicatorStatus
from agent.replicator.wire import wire_size
from agent.supervisor import Supervisor
from server.domain import failpoints
from server.domain.entities import Revision
from server.domain.errors import SmoothError
from server.usecases.replication.edge import RESYNC_ORDER

log = structlog.get_logger("smooth_edge.replicator")

ACKED_KEY = "acked_seq"
SENT_KEY = "sent_seq"  # the highest sequence ever offered to central, written durably before it is sent
MAX_BATCH_BYTES = 4 * 1024 * 1024  # well under central's 16 MiB message limit
MIN_BATCH = 20  # the smallest push a flapping link shrinks batches to
REJECTED_KEY = "rejected_count"
IN_FLIGHT = 3  # pushes on the wire at once (central applies them one after another, in order)
PULL_PAGE = 500  # central's changes applied per local transaction
SNAPSHOT_PAGE = 1000  # entities per page of a full resync


@dataclass(frozen=True, slots=True)
class ReplicatorSettings:
    central: str  # host:port of central's gRPC (the composition root builds the client from these three)
    key: str  # an API key with the sync scope
    credentials: grpc.ChannelCredentials | None = None  # TLS to central
    batch_size: int = 2000
    interval_s: float = 1.0
    max_backoff_s: float = 30.0  # cap of the backoff after transient failures
    failed_retry_s: float = 60.0  # after a permanent failure: retry after this, or on a commit (after the cap)
    flush_timeout_s: float = 10.0
    schema_version: str = ""


class Replicator:
    """`async with Replicator(...) as r:` replicates until the block ends (then flushes). `central` is open for as
    long as the replicator is (the caller opens and closes it); `pull` and `resync` apply what comes from central
    to `store` (agent/runtime.py wires the real ones)."""

    def __init__(
        self,
        store: EdgeStore,
        central: CentralClient,
        settings: ReplicatorSettings,
        clock: Callable[[], datetime],
        *,
        pull: PullApply,
        resync: ResyncApply,
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._supervisor = supervisor or Supervisor()
        self._central = central
        self._pull = pull
        self._resync_apply = resync
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.origin_id: uuid.UUID | None = None
        self.acked = 0
        self.rejected = 0
        self._state = ReplicatorState.STARTING
        self._connected = False
        self._last_error = ""
        self._logged_failure = ""  # the permanent failure last logged with its traceback
        self.last_success: datetime | None = None
        self.sent = 0
        self.pulled_cursor = 0
        self.resyncs = 0  # full resyncs finished
        self._resync_due = False  # this store went back in time: take central's state again
        # Changes per push: halved when a push fails on the way (a link that drops before a long push is
        # answered), doubled back after each answered one, so replication progresses on a flapping link.
        self.batch_limit = settings.batch_size

    @property
    def connected(self) -> bool:
        """Central answered the last round (health reads this without touching the store)."""
        return self._connected

    def notify(self) -> None:
        """Something was committed locally: push soon."""
        self._wake.set()

    async def __aenter__(self) -> Replicator:
        origin = await self._pull.store_id()
        async with self._store.write() as tx:
            self.acked = int(await tx.replication_value(ACKED_KEY) or 0)
            self.rejected = int(await tx.replication_value(REJECTED_KEY) or 0)
            # Before anything can write (this runs before the API and the collector start): a power cut may have
            # undone commits whose sequences central has already seen; never hand those numbers out again.
            sent = int(await tx.replication_value(SENT_KEY) or 0)
            if sent > await tx.last_local_seq():
                log.error("replicator.local_log_behind_sent", sent=sent)
            await tx.ensure_sequence_above(sent)
        self.origin_id = origin
        self._task = self._supervisor.restarting("replicator", self._settings.central, self._run)
        log.info("replicator.started", central=self._settings.central, origin_id=str(origin), acked=self.acked)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=self._settings.flush_timeout_s)
        except (TimeoutError, SmoothError) as exc:
            log.warning(
                "replicator.flush_incomplete", error=_describe(exc), acked=self.acked, unsent=await self._unsent()
            )
        except Exception:
            log.exception("replicator.flush_failed", acked=self.acked, unsent=await self._unsent())
            raise
        finally:
            self._state = ReplicatorState.STOPPED
        log.info("replicator.stopped", acked=self.acked)

    async def _unsent(self) -> int | str:
        """How many local changes central has not acknowledged (for the shutdown log)."""
        try:
            async with self._store.read() as tx:
                return (await tx.local_backlog(self.acked))[0]
        except SmoothError as exc:
            return f"unknown ({_describe(exc)})"

    async def flush(self) -> None:
        """Push until nothing local is left unacknowledged (raises if central cannot be reached)."""
        await self._push_all()

    async def _run(self) -> None:
        backoff = self._settings.interval_s
        checked = False
        while True:
            failpoints.hit("replicator-loop")  # (outside the try below: what its supervisor is for)
            try:
                if not checked:
                    await self._check_watermark()
                    checked = True
                await self._push_all()
                while await self._pull_once():
                    pass
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # classified here, the one place that decides how a failure is retried
                if is_transient(exc):
                    self._failed(exc, permanent=False)
                    log.warning("replicator.retrying", error=_describe(exc), retry_in_s=backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._settings.max_backoff_s)
                else:
                    self._failed(exc, permanent=True)
                    await self._pause_after_permanent()
                    backoff = self._settings.interval_s
                continue
            self._answered()
            self._state = ReplicatorState.IDLE
            self._logged_failure = ""
            backoff = self._settings.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._settings.interval_s)
            self._wake.clear()

    def _answered(self) -> None:
        """Central answered as expected: whatever failed before is over."""
        self._state = ReplicatorState.REPLICATING
        self._connected, self._last_error = True, ""

    def _failed(self, exc: Exception, *, permanent: bool) -> None:
        described = _describe(exc)
        self._connected = False
        self._last_error = f"{'permanent' if permanent else 'transient'}: {described}"
        if not permanent:
            self._state = ReplicatorState.RETRYING
            return
        self._state = ReplicatorState.FAILED
        if described != self._logged_failure:  # the traceback once; a repeat is one line
            self._logged_failure = described
            log.error("replicator.failed", error=described, retry_in_s=self._settings.failed_retry_s, exc_info=exc)
        else:
            log.warning("replicator.still_failing", error=described, retry_in_s=self._settings.failed_retry_s)

    async def _pause_after_permanent(self) -> None:
        """Retrying at once cannot help: wait for a local commit (but at least the backoff cap) or
        `failed_retry_s`, whichever comes first."""
        settings = self._settings
        floor = min(settings.max_backoff_s, settings.failed_retry_s)
        await asyncio.sleep(floor)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=settings.failed_retry_s - floor)
        self._wake.clear()

    async def _check_watermark(self) -> None:
        """At the first answer from central: a sequence central has seen is never reused here for another change.

        After a power cut (SQLite in WAL mode with synchronous=NORMAL) the commits lost were never sent: the
        "sent" marker is fsynced before a batch leaves. If central has applied more of this origin than this store
        durably sent, the store went back in time (restored from an older copy, or its disk lost fsynced data):
        its own changes after what it sent may carry numbers central holds other changes under. They are moved
        above central's watermark (so they are pushed, not skipped as duplicates), and central's state is taken
        back with a full resync (so what the store lost returns). Logged as `replicator.rolled_back`.
        """
        assert self.origin_id is not None
        mark = await self._central.watermark(self.origin_id)
        self._answered()
        async with self._store.write(durable=True) as tx:
            durably_sent = max(int(await tx.replication_value(SENT_KEY) or 0), self.acked)
            if mark > durably_sent:
                moved = await tx.renumber_local_changes_after(durably_sent, mark)
                await tx.set_replication_value(SENT_KEY, mark, self._clock())
                self.sent = max(self.sent, mark)
                self._resync_due = True
                log.error(
                    "replicator.rolled_back",
                    central_watermark=mark,
                    durably_sent=durably_sent,
                    renumbered=moved,
                    next_step="changes made here since are pushed under new sequences; central's state is resynced",
                )
            elif mark > await tx.last_local_seq():
                log.error("replicator.local_log_behind_central", central=mark)
                await tx.ensure_sequence_above(mark)
            if mark > self.acked:
                await self._save_ack(tx, mark)

    async def _push_all(self) -> None:
        """Push until nothing is left, with up to IN_FLIGHT batches on the wire and the next one read, encoded
        and made durable ahead, so it goes out the moment an answer frees a place (central applies them strictly
        in order, each after its predecessor's commit). Answers are taken in order; the acknowledged position
        only follows them."""
        after = self.acked
        inflight: deque[tuple[asyncio.Task[PushResult], list[Revision]]] = deque()
        ahead: asyncio.Task[list[Revision]] | None = None
        try:
            while True:
                while len(inflight) < IN_FLIGHT:
                    batch = await (ahead if ahead is not None else self._prepare(after))
                    ahead = None
                    if not batch:
                        break
                    failpoints.hit("edge-before-push")
                    inflight.append((asyncio.create_task(self._send(batch, after)), batch))
                    after = batch[-1].sequence
                    ahead = asyncio.create_task(self._prepare(after))
                if not inflight:
                    return
                task, batch = inflight.popleft()
                try:
                    moved = await self._receive(task, batch)
                except SmoothError as exc:
                    if is_transient(exc) and not isinstance(exc, SequenceGap):
                        self._shrink_batches(len(batch))
                    raise
                self._grow_batches()
                if moved:
                    # Central's position is not where ours was: drop what is in flight, go on from its position.
                    await _cancel([t for t, _ in inflight] + ([ahead] if ahead is not None else []))
                    inflight.clear()
                    ahead = None
                    after = self.acked
        finally:
            await _cancel([t for t, _ in inflight] + ([ahead] if ahead is not None else []))

    def _shrink_batches(self, failed: int) -> None:
        smaller = max(MIN_BATCH, min(self.batch_limit, failed) // 2)
        if smaller < self.batch_limit:
            log.info("replicator.batch_smaller", changes=smaller)
        self.batch_limit = smaller

    def _grow_batches(self) -> None:
        self.batch_limit = min(self._settings.batch_size, self.batch_limit * 2)

    async def _prepare(self, after: int) -> list[Revision]:
        """The batch after `after`, read, with the "sent" marker made durable (empty: nothing to send)."""
        async with self._store.read() as tx:
            candidates = await tx.local_changes(after, self.batch_limit + 200, as_text=True)
        if not candidates:
            return []
        batch = _batch(candidates, self.batch_limit)
        # Durable first: this fsyncs the WAL, so every change we are about to send survives a power cut.
        if batch[-1].sequence > self.sent:
            async with self._store.write(durable=True) as tx:
                await tx.set_replication_value(SENT_KEY, batch[-1].sequence, self._clock())
            self.sent = max(batch[-1].sequence, self.sent)
        return batch

    async def _send(self, batch: list[Revision], after: int) -> PushResult:
        assert self.origin_id is not None
        return await self._central.push(self.origin_id, after, batch, self._settings.schema_version)

    async def _receive(self, call: asyncio.Task[PushResult], batch: list[Revision]) -> bool:
        """Central's answer to one batch, saved; True when central's position is not where ours was."""
        try:
            response = await call
        except SequenceGap as gap:
            # Central applied less (or more) than we thought: continue from its watermark.
            log.warning("replicator.resync_position", ours=self.acked, central=gap.watermark)
            async with self._store.write() as tx:
                await self._save_ack(tx, gap.watermark)
            return True
        failpoints.hit("edge-after-push-before-ack")  # central committed; we never saw its answer
        async with self._store.write() as tx:
            if response.rejected:
                self.rejected += len(response.rejected)
                await tx.set_replication_value(REJECTED_KEY, self.rejected, self._clock())
                for r in response.rejected:
                    log.error(
                        "replicator.change_rejected", seq=r.seq, entity=r.entity_type, id=r.entity_id, reason=r.reason
                    )
            await self._save_ack(tx, response.acked_seq)
        self.last_success = self._clock()
        self._answered()
        return response.acked_seq != batch[-1].sequence

    async def _pull_once(self) -> bool:
        """Apply one page of central's changes (not our own) with the cursor; True if there may be more."""
        assert self.origin_id is not None
        cursor = await self._pull.cursor()
        page = await self._central.pull(self.origin_id, cursor, PULL_PAGE)
        self._answered()
        if page.resync_required or self._resync_due:
            await self._resync(page.central_id)
            self._resync_due = False
            return True
        if page.next_cursor <= cursor:
            return False
        failpoints.hit("edge-mid-pull")
        rejected = await self._pull.apply(page.central_id, page.changes, page.next_cursor)
        for r in rejected:
            log.error("replicator.pulled_change_rejected", seq=r.seq, entity=r.entity_type, reason=r.reason)
        self.pulled_cursor = page.next_cursor
        return page.more

    async def _resync(self, central_id: uuid.UUID) -> None:
        """Central no longer keeps the changes after our cursor: take its current state instead (never skip)."""
        assert self.origin_id is not None
        head = await self._central.snapshot(self.origin_id)
        self._state = ReplicatorState.RESYNCING
        log.warning("replicator.full_resync", central_as_of=head.as_of_seq)
        resync = self._resync_apply
        kept: dict[str, set[uuid.UUID]] = {}
        for kind in RESYNC_ORDER:
            kept[kind] = set()
            token = ""
            while True:
                page = await self._central.snapshot(self.origin_id, kind, page_size=SNAPSHOT_PAGE, page_token=token)
                kept[kind].update(uuid.UUID(r["id"]) for r in page.rows)
                await resync.apply_kind(central_id, kind, page.rows)
                token = page.next_page_token
                if not token:
                    break
        removed = await resync.finish(central_id, kept, head.as_of_seq)
        self.pulled_cursor = head.as_of_seq
        self.resyncs += 1
        self._state = ReplicatorState.REPLICATING
        log.warning("replicator.full_resync_done", as_of=head.as_of_seq, removed=removed)

    async def _save_ack(self, tx: EdgeTransaction, seq: int) -> None:
        await tx.set_replication_value(ACKED_KEY, seq, self._clock())
        self.acked = seq

    async def status(self) -> ReplicatorStatus:
        async with self._store.read() as tx:
            backlog, newest, oldest = await tx.local_backlog(self.acked)
            last_local = await tx.last_local_seq()
        return ReplicatorStatus(
            central=self._settings.central,
            origin_id=self.origin_id,
            state=self._state,
            connected=self._connected,
            last_local_seq=max(last_local, newest),
            acked_seq=self.acked,
            backlog=backlog,
            lag_seconds=(self._clock() - oldest).total_seconds() if backlog and oldest else 0.0,
            last_error=self._last_error,
            last_success=self.last_success,
            rejected=self.rejected,
            pulled_cursor=self.pulled_cursor,
            resyncs=self.resyncs,
        )


def _batch(changes: list[Revision], limit: int) -> list[Revision]:
    """Up to `limit` changes and MAX_BATCH_BYTES, never ending inside a local transaction (unless one
    transaction alone exceeds the candidates fetched)."""
    out: list[Revision] = []
    size = 0
    for i, change in enumerate(changes):
        change_size = wire_size(change)
        full = len(out) >= limit or (out and size + change_size > MAX_BATCH_BYTES)
        if full and change.tx_id != changes[i - 1].tx_id:
            break
        out.append(change)
        size += change_size
    return out


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SmoothError):
        return f"{exc.reason}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"
