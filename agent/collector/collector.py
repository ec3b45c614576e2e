"""The collector: one MachineSession per configured machine, each run by the agent's supervisor (a session that
dies of an unexpected error is restarted with backoff)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime

import structlog

from agent.collector.session import MachineSession, SessionCounts
from agent.config import CollectorConfig
from agent.supervisor import Supervisor
from server.domain.collector import MachineStatus
from server.usecases.usage_recording import UsageRecorder

log = structlog.get_logger("smooth_edge.collector")


class Collector:
    """`async with Collector(config, recorder, clock):` collects from every machine until the block ends."""

    def __init__(
        self,
        config: CollectorConfig,
        recorder: UsageRecorder,
        clock: Callable[[], datetime],
        supervisor: Supervisor | None = None,
    ) -> None:
        self._sessions = [MachineSession(m, recorder, clock) for m in config.machines]
        self._supervisor = supervisor or Supervisor()
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Collector:
        for session in self._sessions:
            self._tasks.append(self._supervisor.restarting("collector", session.config.machine_id, session.run))
        log.info("collector.started", machines=[s.config.machine_id for s in self._sessions])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop every session, then save every machine's last state; a final save that failed unexpectedly is raised
        here, after the other machines have saved theirs."""
        await _cancel_all(self._tasks)
        outcomes = await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        errors = [outcome for outcome in outcomes if isinstance(outcome, Exception)]  # (supervised: none expected)
        for session in self._sessions:
            try:
                await session.close()
            except Exception as exc:  # logged with its traceback by the session; the next machines still save
                errors.append(exc)
        log.info("collector.stopped", failed=len(errors))
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise ExceptionGroup("collector sessions failed", errors)

    def live_statuses(self) -> dict[str, MachineStatus]:
        return {s.config.machine_id: s.status for s in self._sessions}

    def counts(self) -> dict[str, SessionCounts]:
        return {s.config.machine_id: s.counts for s in self._sessions}


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the tasks and wait until every one has ended, cancelling again those still running a moment later:
    on Python 3.11 a cancellation that arrives as `asyncio.wait_for` finishes (a session connecting while the
    agent stops) can be lost, and the session would then run on, holding the agent's exit forever."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
