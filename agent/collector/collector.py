"""The collector: one MachineSession per configured machine, run as tasks of the agent's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import datetime

import structlog

from agent.collector.session import MachineSession
from agent.config import CollectorConfig
from server.domain.collector import MachineStatus
from server.usecases.usage_recording import UsageRecorder

log = structlog.get_logger("smooth_edge.collector")


class Collector:
    """`async with Collector(config, recorder, clock):` collects from every machine until the block ends."""

    def __init__(self, config: CollectorConfig, recorder: UsageRecorder, clock: Callable[[], datetime]) -> None:
        self._sessions = [MachineSession(m, recorder, clock) for m in config.machines]
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Collector:
        for session in self._sessions:
            name = f"collector-{session.config.machine_id}"
            self._tasks.append(asyncio.create_task(session.run(), name=name))
        log.info("collector.started", machines=[s.config.machine_id for s in self._sessions])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for session in self._sessions:
            await session.close()
        log.info("collector.stopped")

    def live_statuses(self) -> dict[str, MachineStatus]:
        return {s.config.machine_id: s.status for s in self._sessions}
