"""Group commit: concurrent units of work share one database transaction and one commit, each inside its own
savepoint, so one unit's failure undoes only that unit (DESIGN decision 2; issue 11).

A writer joins the queue; the first one starts a leader task that opens a transaction, hands it to the queued
writers one at a time (each body runs in its writer's own task, inside a savepoint the leader opened; the first of
a group needs none), takes in those that queue meanwhile, lets the loop turn a few times for more once the queue
is empty, and commits once for all whose bodies succeeded. A writer returns from its `async with` only after that
commit: what is acknowledged is committed. A failing body gets its own exception; a failing commit fails every unit
of the group.
The leader is started through `spawn` (the agent's supervisor: a leader that dies of an unexpected error stops the
agent, issue 14 item 3); whatever it was handed or had queued then fails with that error, never waits forever.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, Generic, TypeVar

from server.domain import failpoints

T = TypeVar("T")
Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]

GROUP_MAX = 64  # units of work in one transaction at most (bounds its size and the wait of the last one)
# Loop turns the leader lets pass for more units before it commits a group: an RPC's handler runs inline from
# its request to its write, so without this a group rarely grew past one unit under 50 calls in flight (issue 11).
LINGER_TURNS = 4


class _BodyFailed(Exception):
    """A unit's body raised: its savepoint is rolled back (the unit's task re-raises the original)."""


class _Turn(Generic[T]):
    """One writer's place in the queue."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.granted: asyncio.Future[T] = loop.create_future()  # the shared transaction, inside a savepoint
        self.finished: asyncio.Future[BaseException | None] = loop.create_future()  # the body's outcome
        self.committed: asyncio.Future[None] = loop.create_future()
        for future in (self.granted, self.committed):  # an outcome nobody waits for any more is not an error
            future.add_done_callback(_retrieve)


def _settle(turns: list[_Turn[Any]]) -> None:
    """The group's outcome is known: units whose bodies failed may now raise their own errors."""
    for turn in turns:
        if not turn.committed.done():
            turn.committed.set_result(None)


def _create_task(work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    return asyncio.get_running_loop().create_task(work, name=name)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class GroupCommit(Generic[T]):
    """Runs units of work through `open_transaction` (an exclusive write transaction yielding `T`, which has an
    async `savepoint()` context manager), grouped."""

    def __init__(
        self,
        open_transaction: Callable[[], AbstractAsyncContextManager[T]],
        savepoint: Callable[[T], AbstractAsyncContextManager[None]],
        after_commit: Callable[[], None],
        *,
        spawn: Spawn | None = None,
        on_group: Callable[[int], None] | None = None,
    ) -> None:
        self._open = open_transaction
        self._savepoint = savepoint
        self._after_commit = after_commit
        self._spawn = spawn or _create_task
        self._on_group = on_group  # told each group's size (the metrics' batch sizes)
        self._queue: deque[_Turn[T]] = deque()
        self._batch: list[_Turn[T]] = []  # the group the leader is working on
        self._leader: asyncio.Task[None] | None = None

    @property
    def depth(self) -> int:
        """Units of work waiting for the writer (the group being written not included)."""
        return len(self._queue)

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[T]:
        loop = asyncio.get_running_loop()
        turn: _Turn[T] = _Turn(loop)
        self._queue.append(turn)
        if self._leader is None or self._leader.done():
            self._leader = self._spawn(self._lead(), "group-commit")
        try:
            tx = await turn.granted
        except asyncio.CancelledError:
            if turn.granted.done() and not turn.granted.cancelled() and turn.granted.exception() is None:
                turn.finished.set_result(asyncio.CancelledError())  # granted as we were cancelled: release it
            else:
                turn.granted.cancel()  # the leader skips it
            raise
        try:
            yield tx
        except BaseException as exc:
            turn.finished.set_result(exc)
            if not isinstance(exc, asyncio.CancelledError):
                # Refused only once the group's outcome is settled: an ABORTED that names a version another unit
                # of the group wrote must not reach the caller before a read can see that version.
                await asyncio.shield(turn.committed)
            raise
        turn.finished.set_result(None)
        await asyncio.shield(turn.committed)

    async def _lead(self) -> None:
        try:
            await self._lead_groups()
        except BaseException as exc:
            # Not the database's error (those are handled per group below): a bug, or the loop closing. Nobody
            # handed a transaction or queued behind it may wait for a leader that is gone.
            for turn in [*self._batch, *self._queue]:
                for future in (turn.granted, turn.committed):
                    if not future.done():
                        future.set_exception(exc if isinstance(exc, Exception) else asyncio.CancelledError())
            self._queue.clear()
            raise
        finally:
            self._batch = []

    def _next_waiting(self) -> _Turn[T] | None:
        """The next queued unit still waiting (one cancelled while it waited is skipped), or None."""
        while self._queue:
            turn = self._queue.popleft()
            if not turn.granted.done():
                return turn
        return None

    async def _lead_groups(self) -> None:
        while True:
            while self._queue and self._queue[0].granted.done():  # cancelled while it waited
                self._queue.popleft()
            if not self._queue:
                return
            failpoints.hit("group-commit")
            # Units share this transaction while they keep coming: each queued unit is handed it in turn, and once
            # the queue is empty the leader lets the loop turn a few times (requests being read reach the queue)
            # before it commits. The first unit needs no savepoint: if it fails, the whole transaction is rolled
            # back (nothing else is in it yet) and the next one starts afresh.
            group: list[_Turn[T]] = []
            self._batch = group
            done: list[_Turn[T]] = []
            failed: list[_Turn[T]] = []
            try:
                async with self._open() as tx:
                    idle = 0
                    while len(group) < GROUP_MAX:
                        current = self._next_waiting()
                        if current is None:
                            if not done or idle >= LINGER_TURNS:
                                break
                            idle += 1
                            await asyncio.sleep(0)
                            continue
                        idle = 0
                        group.append(current)
                        first = not done and not failed
                        try:
                            async with nullcontext() if first else self._savepoint(tx):
                                current.granted.set_result(tx)
                                outcome = await current.finished
                                if outcome is not None:
                                    raise _BodyFailed
                        except _BodyFailed:
                            failed.append(current)
                            if first:
                                raise  # rolls the transaction back
                        else:
                            done.append(current)
                    if self._on_group is not None:
                        self._on_group(len(group))
            except _BodyFailed:
                if self._on_group is not None:
                    self._on_group(len(group))
                _settle(failed)
                continue  # the unit's writer raises its own error; nothing was committed
            except BaseException as exc:
                # The transaction could not be opened or committed, or the leader was cancelled: every unit of
                # this group fails with it, and so do the ones queued behind it (no retry loop here: the callers
                # see the database's error, as they would without grouping).
                for turn in done:
                    if not turn.committed.done():
                        turn.committed.set_exception(exc)
                _settle(failed)
                for turn in [*group, *self._queue]:
                    if not turn.granted.done():
                        turn.granted.set_exception(exc)
                self._queue.clear()
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                return
            for turn in done:
                turn.committed.set_result(None)
            _settle(failed)
            if done:
                self._after_commit()
