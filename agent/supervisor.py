"""The supervisor of the agent's long-lived tasks (issue 14, item 3): none may die silently in a live process.

A task that can recover (a machine's session, the replicator) is restarted with capped exponential backoff when it
dies of an unexpected error; one the agent cannot serve without (the writer, the gRPC server) stops the agent: the
first such failure sets `failure` and calls `on_fatal` (the runtime stops gracefully, then raises it). Either way
the failure is logged once with its traceback, as `<component>.crashed`; a restart says `<component>.restarted`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("smooth_edge.supervisor")

Spawn = Callable[[Coroutine[Any, Any, None], str], asyncio.Task[None]]


class ComponentFailed(Exception):
    """A component the agent cannot serve without failed: the agent stopped (the CLI exits non-zero)."""

    def __init__(self, component: str, task: str, error: BaseException | None) -> None:
        self.component = component
        self.task = task
        self.error = error
        what = f"failed with {_describe(error)}" if error is not None else "stopped on its own"
        super().__init__(
            f"the agent stopped because its {component} ({task}) {what}; the log has the details "
            f"(event {component}.crashed): fix the cause, then start the agent again"
        )


@dataclass(frozen=True, slots=True)
class Backoff:
    """How a restartable task is restarted: after `first_s`, doubling to `max_s`; a run that lasted `reset_after_s`
    starts the backoff over."""

    first_s: float = 1.0
    max_s: float = 30.0
    reset_after_s: float = 60.0


class Supervisor:
    """Runs and watches the agent's long-lived tasks. Constructing it does nothing; tasks start on the running
    loop when asked for."""

    def __init__(self, *, on_fatal: Callable[[], None] | None = None, backoff: Backoff | None = None) -> None:
        self._on_fatal = on_fatal
        self._backoff = backoff or Backoff()
        self.failure: ComponentFailed | None = None
        self.restarts: dict[tuple[str, str], int] = {}  # (component, task) -> restarts so far (read by the metrics)

    def restarting(
        self, component: str, task: str, run: Callable[[], Awaitable[None]], backoff: Backoff | None = None
    ) -> asyncio.Task[None]:
        """Run `run()` until cancelled; when it raises (or returns: a long-lived task must not), log it with its
        traceback and run it again after a backoff. Cancel the returned task to stop it."""
        return asyncio.get_running_loop().create_task(
            self._keep_running(component, task, run, backoff or self._backoff), name=f"{component}:{task}"
        )

    def watch(
        self, component: str, task: str, work: Coroutine[Any, Any, None], *, forever: bool = False
    ) -> asyncio.Task[None]:
        """Run `work` as a task the agent cannot do without: if it raises (or, with `forever`, ends while not
        cancelled), the agent stops. Cancel the returned task to stop watching."""
        running = asyncio.get_running_loop().create_task(work, name=f"{component}:{task}")
        running.add_done_callback(lambda done: self._ended(component, task, done, forever))
        return running

    def spawner(self, component: str) -> Spawn:
        """`watch` as a task factory, for code below the agent that starts its own tasks (the store's writer)."""
        return lambda work, task: self.watch(component, task, work)

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise self.failure

    async def _keep_running(
        self, component: str, task: str, run: Callable[[], Awaitable[None]], backoff: Backoff
    ) -> None:
        loop = asyncio.get_running_loop()
        delay = backoff.first_s
        while True:
            started = loop.time()
            error: Exception | None = None
            try:
                await run()
            except Exception as exc:  # CancelledError (stopping) and KeyboardInterrupt/SystemExit pass through
                error = exc
            if loop.time() - started >= backoff.reset_after_s:
                delay = backoff.first_s
            restarts = self.restarts[(component, task)] = self.restarts.get((component, task), 0) + 1
            log.error(
                f"{component}.crashed",
                task=task,
                error=_describe(error) if error is not None else "ended while it should run until stopped",
                action="restarting",
                restart_in_s=delay,
                restarts=restarts,
                exc_info=error or False,
            )
            await asyncio.sleep(delay)
            delay = min(delay * 2, backoff.max_s)
            log.warning(f"{component}.restarted", task=task, restarts=restarts)

    def _ended(self, component: str, task: str, done: asyncio.Task[None], forever: bool) -> None:
        if done.cancelled():
            return
        error = done.exception()
        if error is None and not forever:
            return
        log.critical(
            f"{component}.crashed",
            task=task,
            error=_describe(error) if error is not None else "stopped on its own",
            action="stopping the agent",
            exc_info=error or False,
        )
        if self.failure is None:
            self.failure = ComponentFailed(component, task, error)
            if self._on_fatal is not None:
                self._on_fatal()


def _describe(exc: BaseException | None) -> str:
    return f"{type(exc).__name__}: {exc}"
