"""The change stream (issue 13): every change after a cursor exactly once, in commit order, read from the change
log — the same table that is the version history and the replication outbox — so a watcher costs the store
nothing while it keeps up, holds at most one page in memory, and resumes from its cursor after any disconnect
or restart of either side.

Commit order: writers take turns (one writer on SQLite, an advisory lock on PostgreSQL), so sequences become
visible in order and a reader never sees a later change before an earlier one.

A cursor names the store's change log (its `change_stream_id`, kept in replication_state) and a sequence in it.
A cursor from another store, older than what the log keeps, or ahead of it (the store was restored from an older
copy) is refused with OUT_OF_RANGE reason CURSOR_EXPIRED: the client rereads, then watches from now.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import json
import uuid
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from server.domain.entities import Revision
from server.domain.errors import FieldViolation, InvalidArgument, OutOfRange, ResourceExhausted, Unavailable
from server.domain.events import NEEDS_BEFORE, ToolEvent, instance_of, tool_events
from server.domain.identity import Principal
from server.domain.registry import KINDS
from server.usecases.entities import utc_now
from server.usecases.ports import Transaction, UnitOfWork

log = structlog.get_logger("smooth_edge.change_stream")

STREAM_ID_KEY = "change_stream_id"
PAGE = 500
# The newest changes, decoded once with their tool events, shared by every watcher that keeps up: ten watchers cost
# the store one read per commit, not ten, and no snapshot is looked up twice.
TAIL_KEPT = 4 * PAGE
PREVIOUS_KEPT = 20_000  # latest snapshots per instance / usage carried between reads (their events' "before")
DEFAULT_BOOKMARK_S = 10.0
MIN_BOOKMARK_S, MAX_BOOKMARK_S = 0.1, 300.0


@dataclass(frozen=True, slots=True)
class WatchFilter:
    entity_types: tuple[str, ...] = ()
    machine_id: str = ""
    tool_instance_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class StreamItem:
    """A change (with its tool events), or a bookmark (`change` None) at `sequence`."""

    sequence: int
    cursor: str
    change: Revision | None = None
    events: list[ToolEvent] = field(default_factory=list)


class ChangeStream:
    """Serves every watcher of one store. `notify` is called after each commit (Store.on_commit); a watcher also
    looks again every `poll_s`, for writers in other processes."""

    def __init__(
        self,
        store: UnitOfWork,
        clock: Callable[[], datetime] = utc_now,
        *,
        poll_s: float = 1.0,
        max_watchers: int = 256,
        page: int = PAGE,
        tail_kept: int = TAIL_KEPT,
    ) -> None:
        self._store = store
        self._page = page
        self._tail_kept = tail_kept
        self._clock = clock
        self._poll_s = poll_s
        self._max_watchers = max_watchers
        self._wakeups: set[asyncio.Event] = set()
        self._stopping: set[asyncio.Event] = set()  # watchers told to end (the server stops)
        self._stream_id: str | None = None
        self._tail = _Tail(tail_kept)
        self._refill = asyncio.Lock()

    def notify(self) -> None:
        for wakeup in self._wakeups:
            wakeup.set()

    def stop_watchers(self) -> None:
        """End every current watch (UNAVAILABLE, reason SHUTTING_DOWN): the server is stopping; clients resume
        from their cursor elsewhere or later. Watches started afterwards are served as usual."""
        self._stopping |= self._wakeups
        self.notify()

    @property
    def watchers(self) -> int:
        return len(self._wakeups)

    async def stream_id(self) -> str:
        """This store's change log identity (made on first use)."""
        if self._stream_id is None:
            async with self._store.read() as tx:
                found = await tx.replication_value(STREAM_ID_KEY)
            if not isinstance(found, str):
                async with self._store.write() as tx:
                    found = await tx.replication_value(STREAM_ID_KEY)
                    if not isinstance(found, str):
                        found = str(uuid.uuid4())
                        await tx.set_replication_value(STREAM_ID_KEY, found, self._clock())
            self._stream_id = found
        return self._stream_id

    def cursor(self, sequence: int) -> str:
        assert self._stream_id is not None
        raw = json.dumps({"s": self._stream_id, "q": sequence}, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    async def start(self, cursor: str) -> int:
        """The sequence to watch after: the cursor's, checked against the log, or the newest one (from now)."""
        stream_id = await self.stream_id()
        async with self._store.read() as tx:
            oldest, newest = await tx.change_bounds()
        if not cursor:
            return newest
        owner, sequence = _parse(cursor)
        what_to_do = "reread what you need, then watch from now (an empty cursor)"
        if owner != stream_id:
            raise _expired(f"the cursor belongs to another store's change log; {what_to_do}", sequence, oldest, newest)
        if sequence > newest:
            raise _expired(
                f"the cursor is ahead of this store's change log (newest {newest}): the store was restored from an "
                f"older copy; {what_to_do}",
                sequence,
                oldest,
                newest,
            )
        if oldest and sequence < oldest - 1:
            raise _expired(
                f"the store no longer keeps changes after {sequence} (the oldest kept is {oldest}); {what_to_do}",
                sequence,
                oldest,
                newest,
            )
        return sequence

    async def watch(
        self,
        flt: WatchFilter,
        after: int,
        principal: Principal | None,
        *,
        bookmark_s: float = DEFAULT_BOOKMARK_S,
    ) -> AsyncGenerator[list[StreamItem], None]:
        """Changes after `after` that pass the filter (and that the principal may read), then new ones as they
        commit, in batches of what is ready (up to a page); a bookmark (a batch of one item without a change)
        at once and whenever `bookmark_s` passed without anything sent."""
        if len(self._wakeups) >= self._max_watchers:
            raise ResourceExhausted(
                f"this server already serves {self._max_watchers} watchers; retry later or watch from central",
                reason="TOO_MANY_WATCHERS",
            )
        loop = asyncio.get_running_loop()
        wakeup = asyncio.Event()
        self._wakeups.add(wakeup)
        position = after
        try:
            # At once: the client holds a cursor before anything happens (a watch from now resumes from here).
            yield [StreamItem(position, self.cursor(position))]
            last_sent = loop.time()
            while True:
                if wakeup in self._stopping:
                    raise Unavailable(
                        "the server is stopping; reconnect with the last cursor received (nothing is lost)",
                        reason="SHUTTING_DOWN",
                    )
                wakeup.clear()  # before reading: a commit after the read wakes the wait below
                scanned, page, more = await self._after(position, flt.entity_types)
                on_machine = None
                if flt.machine_id and page:
                    async with self._store.read() as tx:
                        on_machine = {str(i) for i in await tx.instances_on_machine(flt.machine_id)}
                batch = [
                    StreamItem(e.change.sequence, self.cursor(e.change.sequence), e.change, e.events)
                    for e in page
                    if _matches(e.change, flt, on_machine) and _readable(e.change, principal)
                ]
                if batch:
                    yield batch
                    last_sent = loop.time()
                position = scanned
                if loop.time() - last_sent >= bookmark_s:
                    yield [StreamItem(position, self.cursor(position))]
                    last_sent = loop.time()
                if more:
                    continue  # more is waiting
                wait = min(self._poll_s, max(bookmark_s - (loop.time() - last_sent), 0.01))
                with contextlib.suppress(TimeoutError):  # a commit woke us, or it is time to look again
                    await asyncio.wait_for(wakeup.wait(), wait)
        finally:
            self._wakeups.discard(wakeup)
            self._stopping.discard(wakeup)

    async def _after(self, position: int, kinds: Sequence[str]) -> tuple[int, list[_Entry], bool]:
        """(the newest sequence looked at, the changes after `position` of the given kinds, whether more wait): from
        the shared tail when it holds them, else read (by one watcher for all when they are the newest)."""
        tail = self._tail
        if position < tail.start:  # a watcher catching up from further back reads its own pages
            async with self._store.read() as tx:
                scanned, changes = await tx.change_page(position, kinds, self._page)
                events = await _events(tx, changes, changes)
            return scanned, [_Entry(c, e) for c, e in zip(changes, events, strict=True)], scanned > position
        if position >= tail.end:
            async with self._refill:
                if position > self._tail.end + self._tail_kept:  # far ahead of a stale tail (nobody watched)
                    self._tail = _Tail(self._tail_kept, position, position)
                while position >= self._tail.end:
                    if not await self._extend():
                        break  # nothing newer is committed yet
            tail = self._tail
        return tail.after(position, kinds, self._page)

    async def _extend(self) -> bool:
        """Read the next page after the tail's end into the tail; whether there was anything."""
        tail = self._tail
        async with self._store.read() as tx:
            scanned, changes = await tx.change_page(tail.end, (), self._page)
            events = await _events(tx, changes, changes, tail.previous)
        tail.append(scanned, [_Entry(c, e) for c, e in zip(changes, events, strict=True)])
        return bool(changes)


@dataclass(frozen=True, slots=True)
class _Entry:
    change: Revision
    events: list[ToolEvent]


class _Tail:
    """The newest changes, contiguous: every change in (start, end], oldest first, with the latest snapshot of the
    instances and usages changed up to `end` (kept while there are not too many)."""

    def __init__(self, kept: int, start: int = 0, end: int = 0) -> None:
        self.kept = kept
        self.start, self.end = start, end
        self.entries: list[_Entry] = []
        self.sequences: list[int] = []
        self.previous: dict[uuid.UUID, dict[str, Any]] = {}

    def append(self, scanned: int, entries: list[_Entry]) -> None:
        self.entries.extend(entries)
        self.sequences.extend(e.change.sequence for e in entries)
        self.end = scanned
        if len(self.entries) > self.kept:
            drop = len(self.entries) - self.kept
            self.start = self.sequences[drop - 1]
            del self.entries[:drop], self.sequences[:drop]
        for entry in entries:
            change = entry.change
            if change.entity_type in NEEDS_BEFORE:
                self.previous[change.entity_id] = change.snapshot
        if len(self.previous) > PREVIOUS_KEPT:
            self.previous.clear()  # what is not carried is looked up

    def after(self, position: int, kinds: Sequence[str], page: int) -> tuple[int, list[_Entry], bool]:
        first = bisect.bisect_right(self.sequences, position)
        chosen = self.entries[first : first + page]
        more = first + page < len(self.entries)
        scanned = chosen[-1].change.sequence if more else max(self.end, position)
        if kinds:
            chosen = [e for e in chosen if e.change.entity_type in kinds]
        return scanned, chosen, more


def _parse(cursor: str) -> tuple[str, int]:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        owner, sequence = payload["s"], payload["q"]
        if not isinstance(owner, str) or not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
            raise ValueError("malformed")
        return owner, sequence
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidArgument.of(
            [FieldViolation("cursor", "not a cursor of this stream; pass a received cursor unchanged, or none")]
        ) from None


def _expired(message: str, sequence: int, oldest: int, newest: int) -> OutOfRange:
    return OutOfRange(
        message,
        reason="CURSOR_EXPIRED",
        metadata={"cursor_sequence": str(sequence), "oldest_sequence": str(oldest), "newest_sequence": str(newest)},
    )


def _matches(change: Revision, flt: WatchFilter, on_machine: set[str] | None) -> bool:
    snapshot = change.snapshot
    if flt.tool_instance_id is not None and instance_of(change.entity_type, snapshot) != str(flt.tool_instance_id):
        return False
    if flt.machine_id:
        if change.entity_type in ("tool_usage", "tool_preset"):
            return snapshot.get("machine_id") == flt.machine_id
        instance = instance_of(change.entity_type, snapshot)
        return bool(instance) and on_machine is not None and instance in on_machine
    return True


def _readable(change: Revision, principal: Principal | None) -> bool:
    """Users' changes only for admins; a private tool set only for its owner (and admins)."""
    if principal is None or principal.is_admin:
        return True
    if change.entity_type == "user":
        return False
    if change.entity_type == "tool_set":
        snapshot = change.snapshot
        return bool(snapshot.get("is_global")) or snapshot.get("owner_id") == str(principal.user_id)
    return True


async def _events(
    tx: Transaction,
    chosen: Sequence[Revision],
    page: Sequence[Revision],
    carried: dict[uuid.UUID, dict[str, Any]] | None = None,
) -> list[list[ToolEvent]]:
    """Each chosen change's tool events; a previous snapshot comes from the page, or from `carried` (the latest
    snapshots just before the page), when it is there."""
    carried = carried or {}
    previous: dict[uuid.UUID, dict[str, Any]] = {}
    before_of: dict[int, dict[str, Any] | None] = {}
    for change in page:
        if change.entity_type in NEEDS_BEFORE:
            key = change.entity_id
            before_of[change.sequence] = previous[key] if key in previous else carried.get(key)
            previous[key] = change.snapshot
    out = []
    for change in chosen:
        before = None
        if change.entity_type in NEEDS_BEFORE and change.operation.value == "UPDATE":
            before = before_of.get(change.sequence)
            if before is None:
                found = await tx.snapshot_before(change.entity_id, change.sequence)
                before = found if isinstance(found, dict) else None
        out.append(tool_events(change.entity_type, change.operation.value, before, change.snapshot))
    return out


def valid_kinds(names: Sequence[str]) -> tuple[str, ...]:
    """The entity kinds asked for, checked."""
    unknown = [n for n in names if n not in KINDS]
    if unknown:
        allowed = ", ".join(sorted(KINDS))
        raise InvalidArgument.of(
            [FieldViolation("entity_types", f"unknown entity type {n!r}; use one of {allowed}") for n in unknown]
        )
    return tuple(dict.fromkeys(names))
