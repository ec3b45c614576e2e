"""One machine's OPC UA session: connect (with capped exponential backoff, the first connect included),
resolve the profile, read the current state and reconcile it, subscribe, feed the tracker, record usage.

Timing (README "Collector timing model"): every change counts at the controller's SourceTimestamp; after a second
without changes the session asks the controller's clock (a keep-alive, which also serves as the watchdog's probe),
and how far the machine was observed is saved at least once a second, so a kill -9 loses about that second. What
the tracker holds in memory is kept across a lost connection; the saved state is loaded once, when the session
starts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from agent.collector import fast_publish, profiles, tool_life
from agent.collector.tracker import CLOCK_SKEW, Tracker, TrackerState
from agent.config import MachineConfig
from server.domain import failpoints
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


class _ToStructlog(logging.Handler):
    """What asyncua still logs (its warnings and errors, e.g. "Publish iteration crashed" with a traceback) goes
    out as one structlog line like every other, not as plain text in the middle of the JSON log."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).log(
            record.levelno, "asyncua.log", message=record.getMessage(), exc_info=record.exc_info or False
        )


# The usual PublishResponse (data changes of scalar values) is decoded by our own reader, asyncua's objects
# alike (agent/collector/fast_publish.py): asyncua's generic decoder was 14 % of the agent's CPU at 200 machines.
fast_publish.install()

_asyncua_log = logging.getLogger("asyncua")
if not any(isinstance(h, _ToStructlog) for h in _asyncua_log.handlers):
    _asyncua_log.addHandler(_ToStructlog())
    _asyncua_log.propagate = False

# How often the session asks the controller's clock (keep-alive and watchdog probe) and saves how far it observed
# the machine. A kill -9 loses what was observed since the last save: about this plus one publishing interval.
HEARTBEAT_S = 1.0
QUEUE_SIZE = 10  # per monitored item: T1 -> T2 -> T1 within one publish cycle is not collapsed
TOOL_BROWSE_S = 5.0  # umati: how often Equipment/Tools is browsed for tools loaded while connected
# umati: how long a closing usage waits for its tool's ToolLife figures (a healthy controller answers in ms);
# after that it is recorded without them.
TOOL_LIFE_READ_S = 2.0

# What a session expects to go wrong, each meaning "drop the client, connect again after a backoff": the link or
# the controller (asyncua raises UaError, OSError - ConnectionError and TimeoutError among them - and EOFError on
# a cut stream), an address space that does not fit the profile (yet), and the database being unavailable for a
# moment or a write colliding with another (STYLE 15: caught by type; anything else is not an outage).
RETRYABLE: tuple[type[Exception], ...] = (OSError, EOFError, UaError, profiles.ProfileError, Unavailable, Aborted)
# Same-instant changes apply in this order, whatever order their notifications came in (issue 10, case 5): a
# finished part and the operating-time counter belong to the tool that leaves; a program named at the instant of
# a tool change to the tool that comes (the tracker moves it); a program start, a mode, a speed to the new tool.
_ORDER = {"parts": 0, "operation_counter": 0, "program": 1, "tool": 2, "last_usage": 2}


class SubscriptionLost(ConnectionError):
    """The controller reported our subscription's status as bad (asyncua's status change notification)."""

    def __init__(self, status: Any) -> None:
        code = getattr(status, "Status", status)
        self.status_name = str(getattr(code, "name", code))
        super().__init__(self.status_name)


# What to check, by OPC UA status name, for the machine's last_error (README "Collector timing model").
_STATUS_HINTS = {
    "BadServerNotConnected": "the connection to the controller was lost; check that its OPC UA server runs and "
    "that the network reaches the endpoint",
    "BadConnectionClosed": "the controller closed the connection; check that its OPC UA server runs",
    "BadSecureChannelClosed": "the controller closed the secure channel; check its OPC UA server and its log",
    "BadShutdown": "the controller's OPC UA server shut down (a restart?); it is connected again when it is back",
    "BadSessionClosed": "the controller closed our session (restarted, or timed it out); it is opened again",
    "BadSessionIdInvalid": "the controller no longer knows our session (restarted?); it is opened again",
    "BadSubscriptionIdInvalid": "the controller no longer knows our subscription (restarted?); it is made again",
    "BadTimeout": "the controller did not answer in time; check its load and the network",
    "BadTooManySessions": "the controller takes no more sessions; check how many clients connect to it",
    "BadTooManySubscriptions": "the controller takes no more subscriptions; check how many clients connect to it",
}
# What disconnecting from a controller that is already gone raises.
DISCONNECT_ERRORS: tuple[type[Exception], ...] = (OSError, EOFError, UaError)


@dataclass(slots=True)
class SessionCounts:
    """What a session has seen since the agent started (the metrics read them at each scrape)."""

    notifications: int = 0  # data changes the controller sent
    usages_opened: int = 0  # recorded
    usages_closed: int = 0  # recorded
    usages_unmatched: int = 0  # stays ended with no ToolPreset for their T number (kept in collector_unmatched)


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
        self._queue.put_nowait(SubscriptionLost(status))


class MachineSession:
    def __init__(self, config: MachineConfig, recorder: UsageRecorder, clock: Callable[[], datetime]) -> None:
        self.config = config
        self._recorder = recorder
        self._clock = clock
        self._tracker = Tracker(config.machine_id)
        self._last_usage: dict[int, tuple[int, datetime]] = {}  # tool index -> (T number, LastUsage)
        self.status = MachineStatus(config.machine_id, endpoint=config.endpoint, profile=config.profile)
        self.counts = SessionCounts()
        self._committed = TrackerState()
        self._loaded = False  # the saved state is read once: after that, the memory is the newer truth
        self._saved_at = 0.0
        # The controller's clock as last asked (CurrentTime) and our monotonic clock then: is a stamp ahead of it?
        self._controller_now: tuple[datetime, float] | None = None
        self._status_drives_rotation = False  # cnc: the spindle's ActStatus, not its speed, says it turns
        # umati: the ToolLife entries of each tool (by its index in Signals.last_usage), browsed at its first close
        # on a connection.
        self._life_entries: dict[int, list[tool_life.Entry]] = {}

    # --- lifecycle ---------------------------------------------------------------------------------------

    async def run(self) -> None:
        """Collect until cancelled. A RETRYABLE failure leads to a fresh connection after a backoff; anything else
        is shown in the status and raised, not counted as a failed connection (a bug is not an outage): the
        collector's supervisor logs it with its traceback and runs the session again after its own backoff."""
        backoff = 0.5
        while True:
            started = time.monotonic()
            try:
                await self._session()
            except RETRYABLE as exc:
                message = _describe(exc)
                await self._save_observed()  # before the status says disconnected: what was seen is saved by then
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
                self.status = replace(
                    self.status,
                    connected=False,
                    last_error=f"collection stopped by an unexpected error (see the agent's log), restarting: "
                    f"{_describe(exc)}",
                )
                raise
            if time.monotonic() - started > 60:
                backoff = 0.5  # it ran for a while: start the backoff over
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.config.reconnect_max_s)

    async def _save_observed(self) -> None:
        """After a lost connection: save what was observed up to the loss, so an agent restart during the outage
        keeps it. The database may be what failed: then it is tried again at the next commit."""
        if not self._loaded or self._tracker.state == self._committed:
            return
        try:
            await self._record([])
        except (Unavailable, Aborted) as exc:
            log.warning("collector.save_failed", machine_id=self.config.machine_id, error=str(exc))

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
        failpoints.hit("collector-session")
        if not self._loaded:
            # Once: across a lost connection the memory holds more than the last save (issue 10, case 2).
            saved = await self._recorder.load_state(cfg.machine_id)
            self._tracker.state = TrackerState.from_json(saved) if saved else TrackerState()
            self._committed = self._tracker.state
            self._loaded = True
        client = Client(cfg.endpoint, timeout=max(2.0, cfg.watchdog_s / 2))
        client.session_timeout = 60_000
        await self._secure(client)
        try:
            await asyncio.wait_for(client.connect(), timeout=cfg.watchdog_s)
            signals = await profiles.resolve(client, cfg)
            self._life_entries = {}
            queue: asyncio.Queue[_Change | Exception] = asyncio.Queue()
            names = {node.nodeid: name for name, node in signals.nodes.items()}
            names.update({node.nodeid: f"last_usage:{i}:{t}" for i, (t, node) in enumerate(signals.last_usage)})
            subscription = await client.create_subscription(
                cfg.publishing_interval_ms, _Handler(queue, names, self._clock)
            )
            # The tracker runs on the controller's clock (its SourceTimestamps), never on ours.
            subscribed_at = await self._reconcile(client, signals)
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
                for tool in await profiles.umati_tools(signals.tools_folder, signals.tool_objects):
                    signals.tool_objects.add(tool.object_id)
                    names[tool.last_usage.nodeid] = f"last_usage:{len(signals.last_usage)}:{tool.number}"
                    signals.last_usage.append((tool.number, tool.last_usage))
                    signals.tool_life.append(tool.tool_life)
                    await subscription.subscribe_data_change([tool.last_usage], queuesize=QUEUE_SIZE)
                    log.info("collector.tool_added", machine_id=cfg.machine_id, tool_number=tool.number)

            await self._consume(client, signals, queue, follow_new_tools)
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

    async def _reconcile(self, client: Client, signals: profiles.Signals) -> datetime:
        """The current values are state, not transitions: close what ended unseen, open what is in now. Each value
        comes with the controller's time of its last change; the controller's clock is read after them."""
        found = {name: await node.read_data_value() for name, node in signals.nodes.items()}
        values = {name: dv.Value.Value if dv.Value is not None else None for name, dv in found.items()}
        self._last_usage = {i: (t, await n.read_value()) for i, (t, n) in enumerate(signals.last_usage)}
        at = await self._server_time(client)
        self._controller_now = (at, time.monotonic())
        if "tool" in values:
            tool, tool_at = profiles.whole_number("tool", values["tool"]), _stamp(found["tool"])
        else:  # umati: LastUsage is the time the tool became the active one
            tool, tool_at = self._active_umati_tool(), self._active_umati_since()
        speed = abs(profiles.to_number(values["speed"])) if "speed" in values else None
        if "spindle_status" in values:
            rotating, rotation = profiles.spindle_turning(values["spindle_status"]), "spindle_status"
        elif "rotating" in values:
            rotating, rotation = bool(values["rotating"]), "rotating"
        else:
            rotating, rotation = (speed or 0) > 0, "speed"
        self._status_drives_rotation = "spindle_status" in values
        first_time = self._tracker.state.last_seen is None
        profile = self.config.profile
        events = self._tracker.reconnected(
            tool,
            rotating,
            speed,
            at,
            tool_at=tool_at,
            rotating_at=_stamp(found[rotation]) if rotation in found else None,
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
        await self._record(await self._with_controller_life(client, signals, events))
        return at

    def _active_umati_tool(self) -> int:
        """umati has no active-tool variable: the active tool is the one used last (DOMAIN.md §1.2)."""
        known = self._umati_usages()
        return max(known)[1] if known else 0

    def _active_umati_since(self) -> datetime | None:
        known = self._umati_usages()
        return max(known)[0] if known else None

    def _umati_usages(self) -> list[tuple[datetime, int]]:
        return [(_utc(ts), t) for t, ts in self._last_usage.values() if isinstance(ts, datetime) and ts.year > 2000]

    async def _consume(
        self,
        client: Client,
        signals: profiles.Signals,
        queue: asyncio.Queue[_Change | Exception],
        follow_new_tools: Callable[[], Awaitable[None]],
    ) -> None:
        browsed = time.monotonic()
        keep_alive = time.monotonic() + HEARTBEAT_S
        observed = self._tracker.state.last_seen  # as of the last keep-alive
        while True:
            if time.monotonic() - browsed >= TOOL_BROWSE_S:
                await asyncio.wait_for(follow_new_tools(), timeout=self.config.watchdog_s)
                browsed = time.monotonic()
            wait = keep_alive - time.monotonic()
            if wait <= 0:
                # Without changes for HEARTBEAT_S the machine is asked its time: silence on a dead link shows as a read
                # that times out (the watchdog), and how far the machine was observed is saved. New changes say as
                # much (their stamps; each batch saves at most every HEARTBEAT_S), so a busy machine is not asked.
                # (The first notifications after subscribing repeat old values: they do not count.)
                if self._tracker.state.last_seen == observed:
                    await self._keep_alive(client)
                observed = self._tracker.state.last_seen
                keep_alive = time.monotonic() + HEARTBEAT_S
                continue
            try:
                first = await asyncio.wait_for(queue.get(), timeout=wait)
            except TimeoutError:
                continue
            # One publish response arrives grouped by monitored item, not by time: take everything queued and
            # apply it in timestamp order, same-instant changes in _ORDER (not in arrival order).
            items = [first]
            while not queue.empty():
                items.append(queue.get_nowait())
            self.counts.notifications += sum(1 for i in items if isinstance(i, _Change))
            failure = next((i for i in items if isinstance(i, Exception)), None)
            changes = [replace(i, at=await self._not_ahead(client, i.at)) for i in items if isinstance(i, _Change)]
            batch = sorted(changes, key=lambda c: (c.at, _ORDER.get(c.signal.split(":", 1)[0], 3)))
            events: list[UsageEvent] = []
            for change in batch:
                events += self._apply(change)
            if batch:
                self.status = replace(self.status, last_data_at=batch[-1].at)
            if events:
                await self._record(await self._with_controller_life(client, signals, events))
            else:
                await self._heartbeat()
            if failure is not None:
                raise failure

    async def _keep_alive(self, client: Client) -> None:
        now = await asyncio.wait_for(self._server_time(client), timeout=self.config.watchdog_s)
        self._controller_now = (now, time.monotonic())
        # Observed up to `now` less one publishing interval: a change stamped just before `now` may still be in the
        # next publish response, and the keep-alive must not claim it as unchanged (issue 10, case 1).
        self._tracker.seen(now - timedelta(milliseconds=self.config.publishing_interval_ms))
        if self._tracker.state != self._committed:
            # Saved at every keep-alive, not "if a second has passed": a timer may fire a hair early, and that
            # check would then skip a save and double the window a kill -9 loses.
            await self._record([])

    async def _not_ahead(self, client: Client, at: datetime) -> datetime:
        """A stamp later than the controller's own clock by more than CLOCK_SKEW is not believed: it counts at the
        controller's time now and is marked on the usage. The clock is asked again before deciding (it may have
        been set forward since it was last asked)."""
        if self._controller_now is not None:
            then, mono = self._controller_now
            if at <= then + timedelta(seconds=time.monotonic() - mono) + CLOCK_SKEW:
                return at
        now = await asyncio.wait_for(self._server_time(client), timeout=self.config.watchdog_s)
        self._controller_now = (now, time.monotonic())
        if at <= now + CLOCK_SKEW:
            return at
        log.warning(
            "collector.timestamp_ahead",
            machine_id=self.config.machine_id,
            stamp=at.isoformat(),
            controller_now=now.isoformat(),
            consequence="counted at the controller's time now, marked x-clamped on the usage",
        )
        self._tracker.clamped()
        return now

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

    async def _with_controller_life(
        self, client: Client, signals: profiles.Signals, events: list[UsageEvent]
    ) -> list[UsageEvent]:
        """umati: a closing usage carries its tool's ToolLife figures as the controller reports them now, beside
        ours (issue 12, item 5; keys in agent/collector/tool_life.py). A read that fails or takes longer than
        TOOL_LIFE_READ_S is logged and the usage is recorded without them."""
        if not any(signals.tool_life):
            return events
        out: list[UsageEvent] = []
        for event in events:
            index = self._umati_index(event.tool_number) if isinstance(event, UsageClosed) else None
            node = signals.tool_life[index] if index is not None and index < len(signals.tool_life) else None
            if isinstance(event, UsageClosed) and index is not None and node is not None:
                try:
                    figures = await asyncio.wait_for(self._read_life(client, index, node), TOOL_LIFE_READ_S)
                except DISCONNECT_ERRORS as exc:  # the link, a timeout, a node gone: the usage goes on without them
                    log.warning(
                        "collector.tool_life_read_failed",
                        machine_id=self.config.machine_id,
                        tool_number=event.tool_number,
                        usage_id=str(event.usage_id),
                        error=_describe(exc),
                    )
                    figures = {}
                except asyncio.CancelledError:
                    # As in _record: transitions not committed are forgotten; the reconnect reconciles them.
                    self._tracker.state = self._committed
                    raise
                if figures:
                    event = replace(event, metrics={**event.metrics, **figures})
            out.append(event)
        return out

    async def _read_life(self, client: Client, index: int, node: Node) -> dict[str, Any]:
        if index not in self._life_entries:
            self._life_entries[index] = await tool_life.entries(node)
        return await tool_life.read(client, self._life_entries[index])

    def _umati_index(self, number: int) -> int | None:
        """The tool object a closing usage of T `number` was: of those with that T number (sister tools), the one
        used last."""
        candidates = [(i, ts) for i, (t, ts) in self._last_usage.items() if t == number]
        if not candidates:
            return None
        dated = [(_utc(ts), i) for i, ts in candidates if isinstance(ts, datetime)]
        return max(dated)[1] if dated else candidates[0][0]

    async def _heartbeat(self) -> None:
        if time.monotonic() - self._saved_at >= HEARTBEAT_S:
            await self._record([])

    async def _server_time(self, client: Client) -> datetime:
        value = await client.get_node(ua.ObjectIds.Server_ServerStatus_CurrentTime).read_value()  # type: ignore[attr-defined]
        if not isinstance(value, datetime):
            return self._clock()  # a controller that gives no clock: ours, the only time there is
        return _utc(value)

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
                if isinstance(event, UsageClosed):
                    if event.usage_id in recorded:
                        self.counts.usages_closed += 1
                    else:
                        self.counts.usages_unmatched += 1
                elif event.usage_id in recorded:
                    self.counts.usages_opened += 1
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
        except (Unavailable, Aborted, asyncio.CancelledError):
            if events and self._committed is not state:
                # Not committed: forget these transitions; the reconnect reconciles with the machine's real state.
                # (A save of observed time alone that failed forgets nothing: the memory stays the newer truth.)
                self._tracker.state = self._committed
            raise
        except BaseException:
            if self._committed is not state:
                self._tracker.state = self._committed  # a bug: nothing more is saved from this memory
            raise


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _stamp(dv: ua.DataValue) -> datetime | None:
    """The controller's time of a value's last change: its SourceTimestamp (else the server's), None if neither."""
    at = dv.SourceTimestamp or dv.ServerTimestamp
    return _utc(at) if isinstance(at, datetime) else None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, SubscriptionLost):
        hint = _STATUS_HINTS.get(exc.status_name, "the controller ended our subscription; see the agent's log")
        return f"{exc.status_name}: {hint}"
    if isinstance(exc, UaStatusCodeError):
        name = type(exc).__name__
        if "Identity" in name or "UserAccess" in name or "Security" in name:
            return (
                f"{name}: the server refused our credentials or security settings "
                "(check username/password, certificate and security mode)"
            )
        if name in _STATUS_HINTS:
            return f"{name}: {_STATUS_HINTS[name]}"
        return f"{name}: {exc}"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return "no answer in time (server down, unreachable or overloaded)"
    if isinstance(exc, OSError):
        return f"cannot reach the server: {exc.strerror or exc}"
    if isinstance(exc, profiles.ProfileError):
        return f"address space does not fit the profile: {exc}"
    return f"{type(exc).__name__}: {exc}"
