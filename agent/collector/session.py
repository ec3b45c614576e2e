"""One machine's OPC UA session: connect (with capped exponential backoff, the first connect included),
resolve the profile, read the current state and reconcile it, subscribe, feed the tracker, record usage.

A new `Client` is made for every attempt: a same-instance reconnect can hang on a blackholed link, so the
watchdog (no data and no answer to a read for `watchdog_s`) simply drops the client and starts again. Only the
failures in RETRYABLE lead to a reconnect; anything else is a bug that stops this machine's session, loudly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from agent.collector import profiles
from agent.collector.tracker import Tracker, TrackerState
from agent.config import MachineConfig
from server.domain.collector import MachineStatus, UsageClosed, UsageEvent
from server.domain.entities import Versioned
from server.domain.errors import Aborted, Unavailable
from server.usecases.usage_recording import UsageRecorder

log = structlog.get_logger("smooth_edge.collector")
# asyncua logs a traceback every second while a server is down: our own log says it once, clearly.
for noisy in (
    "asyncua.client.ua_client",
    "asyncua.client.client",
    "asyncua.common.subscription",
    "asyncua.client.ua_client.UaClient",
    "asyncua.uaprotocol",
):
    logging.getLogger(noisy).setLevel(logging.CRITICAL)

HEARTBEAT_S = 5.0  # how often the tracker's "last seen" is saved while nothing changes
QUEUE_SIZE = 10  # per monitored item: T1 -> T2 -> T1 within one publish cycle is not collapsed
TOOL_BROWSE_S = 5.0  # umati: how often Equipment/Tools is browsed for tools loaded while connected

# What a session expects to go wrong, each meaning "drop the client, connect again after a backoff": the link or
# the controller (asyncua raises UaError, OSError - ConnectionError and TimeoutError among them - and EOFError on
# a cut stream), an address space that does not fit the profile (yet), and the database being unavailable for a
# moment or a write colliding with another (STYLE 15: caught by type; anything else is not an outage).
RETRYABLE: tuple[type[Exception], ...] = (OSError, EOFError, UaError, profiles.ProfileError, Unavailable, Aborted)
# What disconnecting from a controller that is already gone raises.
DISCONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, UaError)


@dataclass(frozen=True, slots=True)
class _Change:
    signal: str
    value: Any
    at: datetime


class _Handler:
    """asyncua subscription callbacks -> a queue the session drains in order."""

    def __init__(
        self, queue: asyncio.Queue[_Change | Exception], names: dict[Any, str], clock: Callable[[], datetime]
    ) -> None:
        self._queue = queue
        self._names = names
        self._clock = clock

    def datachange_notification(self, node: Node, value: Any, data: Any) -> None:
        dv = data.monitored_item.Value
        at = dv.SourceTimestamp or dv.ServerTimestamp or self._clock()
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        self._queue.put_nowait(_Change(self._names.get(node.nodeid, "?"), value, at))

    def status_change_notification(self, status: Any) -> None:
        self._queue.put_nowait(ConnectionError(f"subscription status changed: {status}"))


class MachineSession:
    def __init__(self, config: MachineConfig, recorder: UsageRecorder, clock: Callable[[], datetime]) -> None:
        self.config = config
        self._recorder = recorder
        self._clock = clock
        self._tracker = Tracker(config.machine_id)
        self._last_usage: dict[int, tuple[int, datetime]] = {}  # tool index -> (T number, LastUsage)
        self.status = MachineStatus(config.machine_id, endpoint=config.endpoint, profile=config.profile)
        self._committed = TrackerState()
        self._saved_at = 0.0
        self._status_drives_rotation = False  # cnc: the spindle's ActStatus, not its speed, says it turns

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Collect until cancelled. A RETRYABLE failure leads to a fresh connection after a backoff; anything else
        is logged with its traceback, shown in the status and raised: it ends this machine's session (retrying a
        bug would make it look like an outage)."""
        backoff = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except RETRYABLE as exc:
                message = _describe(exc)
                self.status = replace(
                    self.status,
                    connected=False,
                    last_error=message,
                    failed_attempts=self.status.failed_attempts + 1,
                )
                log.warning(
                    "collector.disconnected", machine_id=self.config.machine_id, error=message, retry_in_s=backoff
                )
            except Exception as exc:
                log.exception("collector.session_failed", machine_id=self.config.machine_id, error=_describe(exc))
                self.status = replace(
                    self.status,
                    connected=False,
                    last_error=f"collection stopped by an unexpected error (see the agent's log): {_describe(exc)}",
                )
                raise
            if time.monotonic() - started > 60:
                backoff = 0.5  # it ran for a while: start the backoff over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_s)

    async def close(self) -> None:
        """Save what the tracker saw since its last commit (the agent is stopping).

        A database that cannot take the write (Unavailable, Aborted) is logged with what was not saved; anything
        else is logged with its traceback and raised.
        """
        state, committed = self._tracker.state, self._committed
        if state == committed:
            return  # nothing new; and a tracker that never loaded its saved state must not overwrite it
        not_saved = {
            "machine_id": self.config.machine_id,
            "observed_until": _iso(state.last_seen),
            "saved_until": _iso(committed.last_seen),
            "open_tool_number": state.tool,
            "open_usage_id": str(state.usage_id) if state.usage_id else None,
        }
        try:
            await self._record([])
        except (Unavailable, Aborted) as exc:
            log.error(
                "collector.final_save_failed",
                error=str(exc),
                consequence="the next start counts the time after saved_until as not observed (an outage)",
                **not_saved,
            )
        except Exception:
            log.exception("collector.final_save_failed", **not_saved)
            raise

    # --- one connection ----------------------------------------------------------------------------------

    async def _session(self) -> None:
        cfg = self.config
        # The committed state is the truth: whatever a failed session held in memory is dropped.
        saved = await self._recorder.load_state(cfg.machine_id)
        self._tracker.state = TrackerState.from_json(saved) if saved else TrackerState()
        self._committed = self._tracker.state
        client = Client(cfg.endpoint, timeout=max(2.0, cfg.watchdog_s / 2))
        client.session_timeout = 60_000
        await self._secure(client)
        try:
            await asyncio.wait_for(client.connect(), timeout=cfg.watchdog_s)
            signals = await profiles.resolve(client, cfg)
            queue: asyncio.Queue[_Change | Exception] = asyncio.Queue()
            names = {node.nodeid: name for name, node in signals.nodes.items()}
            names.update({node.nodeid: f"last_usage:{i}:{t}" for i, (t, node) in enumerate(signals.last_usage)})
            subscription = await client.create_subscription(
                cfg.publishing_interval_ms, _Handler(queue, names, self._clock)
            )
            # The tracker runs on the controller's clock (its SourceTimestamps), never on ours.
            subscribed_at = await self._server_time(client)
            await self._reconcile(signals, subscribed_at)
            monitored = list(signals.nodes.values()) + [node for _, node in signals.last_usage]
            await subscription.subscribe_data_change(monitored, queuesize=QUEUE_SIZE)
            self.status = replace(
                self.status, connected=True, last_error="", last_data_at=subscribed_at, failed_attempts=0
            )
            log.info("collector.connected", machine_id=cfg.machine_id, endpoint=cfg.endpoint, profile=cfg.profile)

            async def follow_new_tools() -> None:
                """umati: subscribe to the LastUsage of tools loaded into the magazine since the last browse."""
                if signals.tools_folder is None:
                    return
                for tool, number, node in await profiles.umati_tools(signals.tools_folder, signals.tool_objects):
                    signals.tool_objects.add(tool)
                    names[node.nodeid] = f"last_usage:{len(signals.last_usage)}:{number}"
                    signals.last_usage.append((number, node))
                    await subscription.subscribe_data_change([node], queuesize=QUEUE_SIZE)
                    log.info("collector.tool_added", machine_id=cfg.machine_id, tool_number=number)

            await self._consume(client, queue, follow_new_tools)
        finally:
            await self._disconnect(client)

    async def _disconnect(self, client: Client) -> None:
        """Best effort, and never in the way of the session's own outcome (this runs in its `finally`)."""
        try:
            await asyncio.wait_for(client.disconnect(), timeout=2)
        except DISCONNECT_ERRORS as exc:  # the controller or the link is usually gone already
            log.debug("collector.disconnect_failed", machine_id=self.config.machine_id, error=_describe(exc))
        except Exception:
            # Raising here would replace the error that ended the session; the traceback is reported instead.
            log.exception("collector.disconnect_failed", machine_id=self.config.machine_id)

    async def _secure(self, client: Client) -> None:
        sec = self.config.security
        if sec.mode != "None":
            assert sec.certificate is not None and sec.private_key is not None
            client.application_uri = sec.application_uri
            await client.set_security_string(f"Basic256Sha256,{sec.mode},{sec.certificate},{sec.private_key}")
        if sec.username:
            client.set_user(sec.username)
            client.set_password(sec.password)

    async def _reconcile(self, signals: profiles.Signals, at: datetime) -> None:
        """The current values are state, not transitions: close what ended unseen, open what is in now."""
        values = {name: await node.read_value() for name, node in signals.nodes.items()}
        self._last_usage = {i: (t, await n.read_value()) for i, (t, n) in enumerate(signals.last_usage)}
        tool = profiles.whole_number("tool", values["tool"]) if "tool" in values else self._active_umati_tool()
        speed = abs(profiles.to_number(values["speed"])) if "speed" in values else None
        if "spindle_status" in values:
            rotating = profiles.spindle_turning(values["spindle_status"])
        else:
            rotating = bool(values["rotating"]) if "rotating" in values else (speed or 0) > 0
        self._status_drives_rotation = "spindle_status" in values
        first_time = self._tracker.state.last_seen is None
        profile = self.config.profile
        events = self._tracker.reconnected(
            tool,
            rotating,
            speed,
            at,
            program=str(values["program"] or "") if "program" in values else None,
            parts=profiles.whole_number("parts", values["parts"]) if "parts" in values else None,
            program_running=profiles.program_running(values["program_status"]) if "program_status" in values else None,
            mode=profiles.operation_mode(profile, values["operation_mode"]) if "operation_mode" in values else None,
            operation_s=profiles.to_number(values["operation_counter"]) / 1000
            if "operation_counter" in values
            else None,
        )
        if first_time:
            log.info("collector.first_contact", machine_id=self.config.machine_id, tool=tool)
        await self._record(events)

    def _active_umati_tool(self) -> int:
        """umati has no active-tool variable: the active tool is the one used last (DOMAIN.md §1.2)."""
        known = [(ts, t) for t, ts in self._last_usage.values() if isinstance(ts, datetime) and ts.year > 2000]
        return max(known)[1] if known else 0

    async def _consume(
        self,
        client: Client,
        queue: asyncio.Queue[_Change | Exception],
        follow_new_tools: Callable[[], Awaitable[None]],
    ) -> None:
        watchdog = self.config.watchdog_s
        browsed = time.monotonic()
        while True:
            if time.monotonic() - browsed >= TOOL_BROWSE_S:
                await asyncio.wait_for(follow_new_tools(), timeout=watchdog)
                browsed = time.monotonic()
            try:
                first = await asyncio.wait_for(queue.get(), timeout=min(watchdog, HEARTBEAT_S))
            except TimeoutError:
                # Quiet is normal for an idle machine; silence on a dead link is not: ask the server.
                self._tracker.seen(await asyncio.wait_for(self._server_time(client), timeout=watchdog))
                await self._heartbeat()
                continue
            # One publish response arrives grouped by monitored item, not by time: take everything queued and
            # apply it in timestamp order (a stable sort keeps same-time changes in arrival order).
            items = [first]
            while not queue.empty():
                items.append(queue.get_nowait())
            failure = next((i for i in items if isinstance(i, Exception)), None)
            batch = sorted((i for i in items if isinstance(i, _Change)), key=lambda c: c.at)
            events: list[UsageEvent] = []
            for change in batch:
                events += self._apply(change)
            if batch:
                self.status = replace(self.status, last_data_at=batch[-1].at)
            if events:
                await self._record(events)
            else:
                await self._heartbeat()
            if failure is not None:
                raise failure

    def _apply(self, change: _Change) -> list[UsageEvent]:
        t = self._tracker
        if change.signal == "tool":
            return t.tool(profiles.whole_number("tool", change.value), change.at)
        if change.signal == "speed":
            speed = abs(profiles.to_number(change.value))  # some controllers sign the speed by direction
            # With the spindle's own status at hand, it says whether the spindle turns; the speed gives the max.
            t.spindle(t.state.rotating if self._status_drives_rotation else speed > 0, speed, change.at)
        elif change.signal == "spindle_status":
            t.spindle(profiles.spindle_turning(change.value), None, change.at)
        elif change.signal == "rotating":
            t.spindle(bool(change.value), None, change.at)
        elif change.signal == "program_status":
            t.program_status(profiles.program_running(change.value), change.at)
        elif change.signal == "operation_mode":
            t.operation_mode(profiles.operation_mode(self.config.profile, change.value), change.at)
        elif change.signal == "operation_counter":
            t.operation_counter(profiles.to_number(change.value) / 1000, change.at)  # ms -> s
        elif change.signal == "program":
            t.program(str(change.value or ""), change.at)
        elif change.signal == "parts":
            t.parts(profiles.whole_number("parts", change.value), change.at)
        elif change.signal.startswith("last_usage:"):
            _, index, number = change.signal.split(":")
            if isinstance(change.value, datetime):
                self._last_usage[int(index)] = (int(number), change.value)
                return t.tool(self._active_umati_tool(), change.at)
        return []

    async def _heartbeat(self) -> None:
        if time.monotonic() - self._saved_at >= HEARTBEAT_S:
            await self._record([])

    async def _server_time(self, client: Client) -> datetime:
        value = await client.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime).read_value()  # type: ignore[attr-defined]
        if not isinstance(value, datetime):
            return self._clock()
        return value if value.tzinfo else value.replace(tzinfo=UTC)

    async def _record(self, events: list[UsageEvent]) -> None:
        state = self._tracker.state

        def committed(written: list[Versioned]) -> None:
            self._committed = state
            self._saved_at = time.monotonic()
            self.status = replace(
                self.status, open_tool_number=state.tool, open_usage_id=state.usage_id, open_since=state.tool_since
            )
            recorded = {w.id for w in written}
            for event in events:
                log.info(
                    "collector.usage_" + ("closed" if isinstance(event, UsageClosed) else "opened"),
                    machine_id=self.config.machine_id,
                    tool_number=event.tool_number,
                    usage_id=str(event.usage_id),
                    recorded=event.usage_id in recorded,
                )

        try:
            await self._recorder.apply(
                self.config.machine_id, events, state.to_json(), operator=self.config.operator, on_commit=committed
            )
        except BaseException:
            if self._committed is not state:
                # Not committed: forget these transitions; the reconnect reconciles with the machine's real state.
                self._tracker.state = self._committed
            raise


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UaStatusCodeError):
        name = type(exc).__name__
        if "Identity" in name or "UserAccess" in name or "Security" in name:
            return (
                f"{name}: the server refused our credentials or security settings "
                "(check username/password, certificate and security mode)"
            )
        return f"{name}: {exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time (server down, unreachable or overloaded)"
    if isinstance(exc, OSError):
        return f"cannot reach the server: {exc.strerror or exc}"
    if isinstance(exc, profiles.ProfileError):
        return f"address space does not fit the profile: {exc}"
    return f"{type(exc).__name__}: {exc}"
