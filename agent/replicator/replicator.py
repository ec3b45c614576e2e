"""The replicator: pushes this edge's change log to central by position (DESIGN decision 7, like litestream).

It reads local changes after the last acknowledged sequence, sends bounded batches (`origin_id`, `after_seq`,
changes in order — one local transaction's changes are consecutive), and advances the acknowledged position
only after central's answer. It wakes on new local commits or a timer, backs off exponentially to a cap while
central is unreachable, flushes on shutdown within a time bound, and exposes its state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import grpc
import structlog
from smooth.core.v1 import sync_pb2, sync_pb2_grpc

from agent.grpc_client import authorized_channel
from server.api.sync_services import change_from_proto, change_to_proto
from server.domain import failpoints
from server.domain.entities import Revision
from server.store.repository import Store, Transaction
from server.usecases.sync import RESYNC_ORDER, PullApplier, ResyncApplier

log = structlog.get_logger("smooth_edge.replicator")

ORIGIN_KEY = "origin_id"
ACKED_KEY = "acked_seq"
SENT_KEY = "sent_seq"  # the highest sequence ever offered to central, written durably before it is sent
MAX_BATCH_BYTES = 4 * 1024 * 1024  # well under central's 16 MiB message limit
REJECTED_KEY = "rejected_count"
IN_FLIGHT = 3  # pushes on the wire at once (central applies them one after another, in order)


@dataclass(frozen=True, slots=True)
class ReplicatorSettings:
    central: str  # host:port of central's gRPC
    key: str  # an API key with the sync scope
    credentials: grpc.ChannelCredentials | None = None  # TLS to central
    batch_size: int = 2000
    interval_s: float = 1.0
    max_backoff_s: float = 30.0
    flush_timeout_s: float = 10.0
    schema_version: str = ""


class Replicator:
    """`async with Replicator(store, settings, clock) as r:` replicates until the block ends (then flushes)."""

    def __init__(self, store: Store, settings: ReplicatorSettings, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._channel: grpc.aio.Channel | None = None
        self.origin_id: uuid.UUID | None = None
        self.acked = 0
        self.rejected = 0
        self.connected = False
        self.last_error = ""
        self.last_success: datetime | None = None
        self._pull = PullApplier(store, clock)
        self.sent = 0
        self.pulled_cursor = 0

    def notify(self) -> None:
        """Something was committed locally: push soon."""
        self._wake.set()

    async def __aenter__(self) -> Replicator:
        async with self._store.write() as tx:
            origin = await tx.replication_value(ORIGIN_KEY)
            if origin is None:
                origin = str(uuid.uuid4())
                await tx.set_replication_value(ORIGIN_KEY, origin, self._clock())
            self.acked = int(await tx.replication_value(ACKED_KEY) or 0)
            self.rejected = int(await tx.replication_value(REJECTED_KEY) or 0)
            # Before anything can write (this runs before the API and the collector start): a power cut may have
            # undone commits whose sequences central has already seen; never hand those numbers out again.
            sent = int(await tx.replication_value(SENT_KEY) or 0)
            if sent > await tx.last_local_seq():
                log.error("replicator.local_log_behind_sent", sent=sent)
            await tx.ensure_sequence_above(sent)
        self.origin_id = uuid.UUID(origin)
        self._channel = authorized_channel(self._settings.central, self._settings.key, self._settings.credentials)
        self._task = asyncio.create_task(self._run(), name="replicator")
        log.info("replicator.started", central=self._settings.central, origin_id=origin, acked=self.acked)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await asyncio.wait_for(self.flush(), timeout=self._settings.flush_timeout_s)
        except (TimeoutError, grpc.aio.AioRpcError, OSError) as exc:
            log.warning("replicator.flush_incomplete", error=str(exc), acked=self.acked)
        if self._channel is not None:
            await self._channel.close()
        log.info("replicator.stopped", acked=self.acked)

    async def flush(self) -> None:
        """Push until nothing local is left unacknowledged (raises if central cannot be reached)."""
        await self._push_all()

    async def _run(self) -> None:
        backoff = self._settings.interval_s
        checked = False
        while True:
            try:
                if not checked:
                    await self._check_watermark()
                    checked = True
                await self._push_all()
                while await self._pull_once():
                    pass
                self.connected, self.last_error = True, ""
                backoff = self._settings.interval_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=self._settings.interval_s)
                self._wake.clear()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # central unreachable, refused, or the store busy: retry later
                self.connected = False
                self.last_error = _describe(exc)
                log.warning("replicator.push_failed", error=self.last_error, retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self._settings.max_backoff_s)

    async def _check_watermark(self) -> None:
        """At start-up: a sequence central has seen is never reused here, even if a power cut undid commits."""
        assert self._channel is not None and self.origin_id is not None
        stub = sync_pb2_grpc.SyncServiceStub(self._channel)
        mark = await stub.GetWatermark(sync_pb2.GetWatermarkRequest(origin_id=str(self.origin_id)), timeout=10)
        async with self._store.write() as tx:
            if mark.last_seq > await tx.last_local_seq():
                log.error("replicator.local_log_behind_central", central=mark.last_seq)
                await tx.ensure_sequence_above(mark.last_seq)
            if mark.last_seq > self.acked:
                await self._save_ack(tx, mark.last_seq)

    async def _push_all(self) -> None:
        """Push until nothing is left, with up to IN_FLIGHT batches on the wire and the next one read, encoded
        and made durable ahead, so it goes out the moment an answer frees a place (central applies them strictly
        in order, each after its predecessor's commit). Answers are taken in order; the acknowledged position
        only follows them."""
        after = self.acked
        inflight: deque[tuple[asyncio.Task[Any], list[sync_pb2.Change]]] = deque()
        ahead: asyncio.Task[list[sync_pb2.Change]] | None = None
        try:
            while True:
                while len(inflight) < IN_FLIGHT:
                    batch = await (ahead if ahead is not None else self._prepare(after))
                    ahead = None
                    if not batch:
                        break
                    failpoints.hit("edge-before-push")
                    inflight.append((asyncio.create_task(self._send(batch, after)), batch))
                    after = batch[-1].seq
                    ahead = asyncio.create_task(self._prepare(after))
                if not inflight:
                    return
                task, batch = inflight.popleft()
                if await self._receive(task, batch):
                    # Central's position is not where ours was: drop what is in flight, go on from its position.
                    await _cancel([t for t, _ in inflight] + ([ahead] if ahead is not None else []))
                    inflight.clear()
                    ahead = None
                    after = self.acked
        finally:
            await _cancel([t for t, _ in inflight] + ([ahead] if ahead is not None else []))

    async def _prepare(self, after: int) -> list[sync_pb2.Change]:
        """The batch after `after`, encoded, with the "sent" marker made durable (empty: nothing to send)."""
        async with self._store.read() as tx:
            candidates = await tx.local_changes(after, self._settings.batch_size + 200, as_text=True)
        if not candidates:
            return []
        protos = _batch(candidates, self._settings.batch_size)
        # Durable first: this fsyncs the WAL, so every change we are about to send survives a power cut.
        if protos[-1].seq > self.sent:
            async with self._store.write(durable=True) as tx:
                await tx.set_replication_value(SENT_KEY, protos[-1].seq, self._clock())
            self.sent = max(protos[-1].seq, self.sent)
        return protos

    async def _send(self, protos: list[sync_pb2.Change], after: int) -> Any:
        assert self._channel is not None and self.origin_id is not None
        request = sync_pb2.PushChangesRequest(
            origin_id=str(self.origin_id),
            after_seq=after,
            changes=protos,
            schema_version=self._settings.schema_version,
        )
        return await sync_pb2_grpc.SyncServiceStub(self._channel).PushChanges(request, timeout=60)

    async def _receive(self, call: asyncio.Task[Any], protos: list[sync_pb2.Change]) -> bool:
        """Central's answer to one batch, saved; True when central's position is not where ours was."""
        try:
            response = await call
        except grpc.aio.AioRpcError as err:
            watermark = _gap_watermark(err)
            if watermark is None:
                raise
            # Central applied less (or more) than we thought: continue from its watermark.
            log.warning("replicator.resync_position", ours=self.acked, central=watermark)
            async with self._store.write() as tx:
                await self._save_ack(tx, watermark)
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
        self.connected = True
        return bool(response.acked_seq != protos[-1].seq)

    async def _pull_once(self) -> bool:
        """Apply one page of central's changes (not our own) with the cursor; True if there may be more."""
        assert self._channel is not None and self.origin_id is not None
        cursor = await self._pull.cursor()
        stub = sync_pb2_grpc.SyncServiceStub(self._channel)
        page = await stub.PullChanges(
            sync_pb2.PullChangesRequest(origin_id=str(self.origin_id), after_seq=cursor, limit=500), timeout=60
        )
        if page.resync_required:
            await self._resync(uuid.UUID(page.central_id))
            return True
        if page.next_cursor <= cursor:
            return False
        changes = [change_from_proto(c, i) for i, c in enumerate(page.changes)]
        failpoints.hit("edge-mid-pull")
        rejected = await self._pull.apply(uuid.UUID(page.central_id), changes, page.next_cursor)
        for r in rejected:
            log.error("replicator.pulled_change_rejected", seq=r.seq, entity=r.entity_type, reason=r.reason)
        self.pulled_cursor = page.next_cursor
        return bool(page.more)

    async def _resync(self, central_id: uuid.UUID) -> None:
        """Central no longer keeps the changes after our cursor: take its current state instead (never skip)."""
        assert self._channel is not None and self.origin_id is not None
        stub = sync_pb2_grpc.SyncServiceStub(self._channel)
        origin = str(self.origin_id)
        head = await stub.GetSnapshot(sync_pb2.GetSnapshotRequest(origin_id=origin), timeout=60)
        log.warning("replicator.full_resync", central_as_of=head.as_of_seq)
        resync = ResyncApplier(self._store, self._clock)
        kept: dict[str, set[uuid.UUID]] = {}
        for kind in RESYNC_ORDER:
            kept[kind] = set()
            token = ""
            while True:
                page = await stub.GetSnapshot(
                    sync_pb2.GetSnapshotRequest(origin_id=origin, entity_type=kind, page_size=1000, page_token=token),
                    timeout=60,
                )
                rows = [json.loads(r) for r in page.entities_json]
                kept[kind].update(uuid.UUID(r["id"]) for r in rows)
                await resync.apply_kind(central_id, kind, rows)
                token = page.next_page_token
                if not token:
                    break
        removed = await resync.finish(central_id, kept, head.as_of_seq)
        self.pulled_cursor = head.as_of_seq
        log.warning("replicator.full_resync_done", as_of=head.as_of_seq, removed=removed)

    async def _save_ack(self, tx: Transaction, seq: int) -> None:
        await tx.set_replication_value(ACKED_KEY, seq, self._clock())
        self.acked = seq

    async def status(self) -> sync_pb2.ReplicationStatus:
        async with self._store.read() as tx:
            backlog, newest, oldest = await tx.local_backlog(self.acked)
            last_local = await tx.last_local_seq()
        msg = sync_pb2.ReplicationStatus(
            central=self._settings.central,
            origin_id=str(self.origin_id or ""),
            connected=self.connected,
            last_local_seq=max(last_local, newest),
            acked_seq=self.acked,
            backlog=backlog,
            lag_seconds=(self._clock() - oldest).total_seconds() if backlog and oldest else 0.0,
            last_error=self.last_error,
            rejected=self.rejected,
        )
        if self.last_success is not None:
            msg.last_success_time.FromDatetime(self.last_success)
        return msg


def _batch(changes: list[Revision], limit: int) -> list[sync_pb2.Change]:
    """Up to `limit` changes and MAX_BATCH_BYTES, never ending inside a local transaction (unless one
    transaction alone exceeds the candidates fetched)."""
    out: list[sync_pb2.Change] = []
    size = 0
    for i, change in enumerate(changes):
        proto = change_to_proto(change)
        full = len(out) >= limit or (out and size + proto.ByteSize() > MAX_BATCH_BYTES)
        if full and change.tx_id != changes[i - 1].tx_id:
            break
        out.append(proto)
        size += proto.ByteSize()
    return out


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _gap_watermark(err: grpc.aio.AioRpcError) -> int | None:
    if err.code() != grpc.StatusCode.FAILED_PRECONDITION:
        return None
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)
    for detail in status.details if status else []:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info) and info.reason == "SEQUENCE_GAP":
            return int(info.metadata["watermark"])
    return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"
