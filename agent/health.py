"""Health of the agent's components (issue 14, item 2), served per gRPC health service name and in the metrics.

Every `interval_s` the monitor writes a probe through the store's writer, looks at each machine's session and at
the replicator, and decides each service's state (`HealthJudge`, pure: it is given the time). The overall service
"" follows the database alone: the agent serves as long as it can write; a machine or central that is away is an
outage outside the agent, shown on its own service (an orchestrator restarting the agent would not bring it back).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from agent.supervisor import Supervisor
from server.domain.errors import SmoothError

log = structlog.get_logger("smooth_edge.health")

OVERALL = ""
DATABASE = "smooth.edge.database"
COLLECTOR = "smooth.edge.collector"
REPLICATION = "smooth.edge.replication"

# What each health service name says, for docs/metrics.md (rendered from here by agent/metrics.py).
SERVICES: tuple[tuple[str, str], ...] = (
    (
        OVERALL,
        f"the agent as a whole: follows `{DATABASE}` (it serves while it can write; a machine or central "
        "that is away is shown on its own service: restarting the agent would not bring it back)",
    ),
    (
        DATABASE,
        "NOT_SERVING while the write probe fails (the database cannot be written: disk full or read-only, "
        "locked by another process longer than the busy timeout, the writer stuck), takes longer than 10 s, "
        "or finds less than 1 MiB free on the SQLite file's file system",
    ),
    (
        COLLECTOR,
        "NOT_SERVING while any configured machine has been disconnected longer than "
        "[health] collector_down_after_s; SERVING when no machine is configured",
    ),
    (
        f"{COLLECTOR}.<machine_id>",
        "one machine: NOT_SERVING once it has been disconnected (or never connected since "
        "the agent started) longer than [health] collector_down_after_s",
    ),
    (
        REPLICATION,
        "only with a central configured: NOT_SERVING once central has been unreachable (no round "
        "answered) longer than [health] central_unreachable_after_s",
    ),
)


def machine_service(machine_id: str) -> str:
    return f"{COLLECTOR}.{machine_id}"


@dataclass(frozen=True, slots=True)
class HealthSettings:
    collector_down_after_s: float = 60.0
    central_unreachable_after_s: float = 300.0
    interval_s: float = 5.0  # how often the probe runs and states are decided
    probe_timeout_s: float = 10.0  # a write probe that takes longer counts as failed


@dataclass(frozen=True, slots=True)
class Observation:
    """What the monitor saw at one check."""

    database_error: str  # empty when the write probe succeeded
    machines: Mapping[str, bool]  # machine_id -> connected
    central_connected: bool | None  # None: not replicating


@dataclass(frozen=True, slots=True)
class Verdict:
    serving: bool
    reason: str = ""  # why not serving, or what is about to be


class HealthJudge:
    """Decides each service's state from what was observed and when; remembers since when each thing is down."""

    def __init__(self, settings: HealthSettings, started: float) -> None:
        self._settings = settings
        self._started = started
        self._down_since: dict[str, float] = {}
        self._seen_up: set[str] = set()

    def judge(self, seen: Observation, now: float) -> dict[str, Verdict]:
        error = seen.database_error
        database = Verdict(False, f"the write probe failed: {error}") if error else Verdict(True)
        verdicts = {OVERALL: database, DATABASE: database}
        limit = self._settings.collector_down_after_s
        machines = {
            machine_service(machine_id): self._judge_down(
                machine_service(machine_id), connected, now, limit, "disconnected"
            )
            for machine_id, connected in sorted(seen.machines.items())
        }
        down = [(name, v) for name, v in machines.items() if not v.serving]
        verdicts[COLLECTOR] = Verdict(not down, "; ".join(f"{name}: {v.reason}" for name, v in down))
        verdicts.update(machines)
        if seen.central_connected is not None:
            verdicts[REPLICATION] = self._judge_down(
                REPLICATION, seen.central_connected, now, self._settings.central_unreachable_after_s, "unreachable"
            )
        return verdicts

    def _judge_down(self, key: str, up: bool, now: float, limit: float, what: str) -> Verdict:
        if up:
            self._seen_up.add(key)
            self._down_since.pop(key, None)
            return Verdict(True)
        if key not in self._down_since:  # never up since the agent started: down since then
            self._down_since[key] = now if key in self._seen_up else self._started
        down_for = now - self._down_since[key]
        return Verdict(down_for <= limit, f"{what} for {down_for:.0f} s (more than {limit:g} s is NOT_SERVING)")


class HealthMonitor:
    """`async with HealthMonitor(...)`: checks at once, then every `interval_s` until the block ends, publishing
    each service's state through `publish(service, serving)` (the gRPC health servicer)."""

    def __init__(
        self,
        settings: HealthSettings,
        *,
        probe: Callable[[], Awaitable[None]],
        machines: Callable[[], Mapping[str, bool]],
        central_connected: Callable[[], bool] | None,
        publish: Callable[[str, bool], Awaitable[None]],
        supervisor: Supervisor,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._probe = probe
        self._machines = machines
        self._central_connected = central_connected
        self._publish = publish
        self._supervisor = supervisor
        self._clock = clock
        self._judge = HealthJudge(settings, clock())
        self._task: asyncio.Task[None] | None = None
        self.verdicts: dict[str, Verdict] = {}

    async def __aenter__(self) -> HealthMonitor:
        await self.check()
        self._task = self._supervisor.restarting("health", "monitor", self._run)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._settings.interval_s)
            await self.check()

    async def check(self) -> None:
        seen = Observation(
            await self._probe_error(),
            dict(self._machines()),
            self._central_connected() if self._central_connected is not None else None,
        )
        verdicts = self._judge.judge(seen, self._clock())
        for service, verdict in verdicts.items():
            before = self.verdicts.get(service)
            if before is None or before.serving != verdict.serving:
                await self._publish(service, verdict.serving)
                if before is not None or not verdict.serving:
                    event = "health.serving" if verdict.serving else "health.not_serving"
                    (log.info if verdict.serving else log.warning)(
                        event, service=service or '""', reason=verdict.reason
                    )
        self.verdicts = verdicts

    async def _probe_error(self) -> str:
        try:
            await asyncio.wait_for(self._probe(), timeout=self._settings.probe_timeout_s)
        except SmoothError as exc:
            return f"{exc.reason}: {exc.message}"
        except TimeoutError:
            return f"no write finished within {self._settings.probe_timeout_s:g} s"
        except Exception as exc:  # not a database outage we know: its traceback, and the database counts as down
            log.exception("health.probe_failed")
            return f"{type(exc).__name__}: {exc}"
        return ""
