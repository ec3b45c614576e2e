"""The composition root: opens the store, checks the schema, builds the use cases and serves gRPC, with metrics
and per-component health, every long-lived task run by one supervisor.

Components start in order and stop in reverse; the first SIGTERM/SIGINT stops gracefully, a second forces. A
component the agent cannot serve without that fails (the writer, the gRPC server) stops it the same way, and
`serve` then raises ComponentFailed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from agent.collector.collector import Collector
from agent.collector.session import SessionCounts
from agent.config import CollectorConfig
from agent.health import HealthMonitor, HealthSettings
from agent.metrics import AgentMetrics, MetricsEndpoint, Sources
from agent.replicator.central_client import CentralClient
from agent.replicator.grpc_central import GrpcCentralClient
from agent.replicator.replicator import Replicator, ReplicatorSettings
from agent.replicator.wire import status_to_proto
from agent.supervisor import Supervisor
from server.api.interceptors import ReflectionMode
from server.api.server import GrpcServer, TlsConfig
from server.domain.errors import Unavailable
from server.store import migrate
from server.store.engine import database_url
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import utc_now
from server.usecases.replication.edge import PullApplier, ResyncApplier

log = structlog.get_logger("smooth_edge.runtime")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    db_url: str
    listen: str
    auto_migrate: bool = False
    auth: bool = True
    reflection: ReflectionMode = "open"
    tls: TlsConfig | None = None
    collector: CollectorConfig = field(default_factory=CollectorConfig)
    central: bool = False  # accept replication from edges (`smooth-edge central`)
    replicate: ReplicatorSettings | None = None  # push this store's changes to central
    metrics_listen: str = ""  # HOST:PORT of the Prometheus endpoint; empty: off
    collector_down_after_s: float = 60.0  # a machine disconnected longer than this: its health NOT_SERVING
    central_unreachable_after_s: float = 300.0  # central unreachable longer than this: replication NOT_SERVING
    health_interval_s: float = 5.0  # how often the write probe runs and health is decided


MIN_FREE_BYTES = 1 << 20  # less free on the SQLite file's file system: the database is reported NOT_SERVING
PROBE_KEY = "health_write_probe"  # replication_state's key the health probe writes (this store's own bookkeeping)


async def prepare_store(store: Store, *, auto_migrate: bool) -> None:
    if auto_migrate:
        await migrate.upgrade(store.engine)
    await migrate.ensure_at_head(store.engine)


def edge_replicator(
    store: Store,
    central: CentralClient,
    settings: ReplicatorSettings,
    clock: Callable[[], datetime] = utc_now,
    supervisor: Supervisor | None = None,
) -> Replicator:
    """The replicator of `store`, with the edge's use cases applying what comes down from `central`."""
    return Replicator(
        store,
        central,
        settings,
        clock,
        pull=PullApplier(store, clock),
        resync=ResyncApplier(store, clock),
        supervisor=supervisor,
    )


@asynccontextmanager
async def replicating(
    store: Store,
    settings: ReplicatorSettings,
    clock: Callable[[], datetime] = utc_now,
    supervisor: Supervisor | None = None,
) -> AsyncIterator[Replicator]:
    """`store`'s replicator, talking to central over gRPC; on leaving it flushes, then the channel closes."""
    async with (
        GrpcCentralClient(settings.central, settings.key, settings.credentials) as central,
        edge_replicator(store, central, settings, clock, supervisor) as replicator,
    ):
        yield replicator


async def serve(
    options: ServeOptions,
    *,
    on_ready: Callable[[GrpcServer, UseCases], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the edge server until `stop` is set or the process gets SIGTERM/SIGINT; raises ComponentFailed (after
    stopping gracefully) when the writer or the gRPC server failed."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    supervisor = Supervisor(on_fatal=stop.set)
    metrics = AgentMetrics()
    async with AsyncExitStack() as stack:
        metrics_port = None
        if options.metrics_listen:  # first: a port in use stops the start before anything else is opened
            metrics_port = (await stack.enter_async_context(MetricsEndpoint(metrics, options.metrics_listen))).port
        store = await stack.enter_async_context(
            Store(options.db_url, spawn=supervisor.spawner("writer"), on_group=metrics.observe_group)
        )
        await prepare_store(store, auto_migrate=options.auto_migrate)
        use_cases = build(store, central=options.central, schema_version=migrate.head_revision())
        replicator: Replicator | None = None
        if options.replicate is not None:
            settings = replace(options.replicate, schema_version=migrate.head_revision())
            replicator = await stack.enter_async_context(replicating(store, settings, utc_now, supervisor))
            store.on_commit.append(replicator.notify)
        collector = Collector(options.collector, use_cases.recorder, utc_now, supervisor)
        grpc_server = GrpcServer(
            use_cases,
            options.listen,
            auth=options.auth,
            reflection_mode=options.reflection,
            tls=options.tls,
            machine_statuses=lambda: use_cases.recorder.statuses(collector.live_statuses()),
            replication_status=_status_source(replicator) if replicator is not None else None,
            observe_rpc=metrics.observe_rpc,
        )
        server = await stack.enter_async_context(grpc_server)
        serving = supervisor.watch("server", options.listen, server.wait(), forever=True)
        stack.push_async_callback(_cancel, serving)  # before the server stops: stopping it then is no failure
        # Collectors start after the API and stop before it; the replicator (entered before the API) flushes
        # after both have stopped taking writes, and the store closes last.
        await stack.enter_async_context(collector)
        monitor = await stack.enter_async_context(
            HealthMonitor(
                HealthSettings(
                    options.collector_down_after_s, options.central_unreachable_after_s, options.health_interval_s
                ),
                probe=lambda: _write_probe(store),
                machines=lambda: {m: s.connected for m, s in collector.live_statuses().items()},
                central_connected=(lambda: replicator.connected) if replicator is not None else None,
                publish=server.set_serving,
                supervisor=supervisor,
            )
        )
        metrics.sources = Sources(
            database_size=store.size_bytes,
            write_queue_depth=lambda: store.write_queue_depth + use_cases.recorder.depth,
            machines=lambda: _machine_readings(collector),
            restarts=lambda: supervisor.restarts,
            health=lambda: {service: v.serving for service, v in monitor.verdicts.items()},
            replication=replicator.status if replicator is not None else None,
        )
        stack.callback(metrics.detach)  # first on the way out: a scrape then reads no component being stopped
        _freeze_startup_objects()
        stack.callback(gc.unfreeze)  # on the way out: what stopping leaves is collected as usual again
        if supervisor.failure is None:  # (a component the agent needs may already have failed while starting)
            log.info(
                "agent.ready",
                db=_safe(options.db_url),
                listen=options.listen,
                port=server.port,
                metrics_port=metrics_port,
            )
            if on_ready is not None:
                await on_ready(server, use_cases)
        await stop.wait()
        log.info("agent.stopping")
    log.info("agent.stopped")
    supervisor.raise_failure()


def _freeze_startup_objects() -> None:
    """Leave what exists once the agent has started (modules, schemas, compiled statements: about 100k objects) out
    of the garbage collector's full passes, which pause the event loop: they took 36-126 ms each under load, every
    few seconds, and every call in flight waited (issue 11). Those objects live as long as the agent.
    Unfrozen when the agent stops (a process that serves again, a test, collects its garbage as usual)."""
    gc.collect()
    gc.freeze()


async def _write_probe(store: Store) -> None:
    """A real write through the writer, as every unit of work goes: the database is writable if it commits and
    (SQLite) its file system has room to grow. A small write can still commit on a full disk, into log pages a
    checkpoint freed, while every write that needs a new page is refused."""
    now = utc_now()
    async with store.write() as tx:
        await tx.set_replication_value(PROBE_KEY, now.isoformat(), now)
    free = store.free_bytes()
    if free is not None and free < MIN_FREE_BYTES:
        raise Unavailable(
            f"the file system of the database has {free} bytes free (less than {MIN_FREE_BYTES}): writes that "
            "grow the database are refused; free space there or grow it",
            reason="DISK_FULL",
        )


def _machine_readings(collector: Collector) -> dict[str, tuple[bool, SessionCounts]]:
    counts = collector.counts()
    return {
        machine_id: (status.connected, counts[machine_id]) for machine_id, status in collector.live_statuses().items()
    }


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


def _status_source(replicator: Replicator) -> Callable[[], Awaitable[Any]]:
    """The replicator's status as the ReplicationService serves it."""

    async def status() -> Any:
        return status_to_proto(await replicator.status())

    return status


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def _on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("agent.forced_exit", signal=sig.name)
            os._exit(130)
        log.info("agent.signal", signal=sig.name, note="stopping gracefully; send again to force")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _on_signal, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals here
            pass


def _safe(url: str) -> str:
    return make_url(database_url(url)).render_as_string(hide_password=True)
