"""The agent's Prometheus metrics (issue 14, item 2): one table of every metric (`METRICS`), its own registry, and
the HTTP endpoint serving it.

Distributions (RPC latency, group-commit sizes) are observed as they happen through hooks the composition root
hands to the interceptor and the store; everything else is read at each scrape, on the agent's event loop, from
the components themselves (the collector's sessions, the writer's queue, the replicator, the database size, the
health monitor). docs/metrics.md is rendered from this table: `python -m agent.metrics > docs/metrics.md`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent import health
from agent.collector.session import SessionCounts
from agent.replicator.status import ReplicatorStatus
from server.domain.errors import SmoothError

log = structlog.get_logger("smooth_edge.metrics")

SCRAPE_TIMEOUT_S = 10.0  # what a scrape waits for the agent's event loop to read the components


@dataclass(frozen=True, slots=True)
class MetricSpec:
    name: str  # as exposed (counters end in _total)
    kind: Literal["counter", "gauge", "histogram"]
    labels: tuple[str, ...]
    help: str


RPC_HANDLED = MetricSpec(
    "smooth_edge_rpc_handled_total",
    "counter",
    ("method", "code"),
    "gRPC calls finished, by full method name and status code",
)
RPC_DURATION = MetricSpec(
    "smooth_edge_rpc_duration_seconds",
    "histogram",
    ("method", "code"),
    "time from a call's arrival to its status (authentication included; a stream: its whole life)",
)
GROUP_SIZE = MetricSpec(
    "smooth_edge_group_commit_batch_size",
    "histogram",
    (),
    "units of work (API writes, collector batches, probes) committed together in one transaction",
)
WRITE_QUEUE = MetricSpec(
    "smooth_edge_write_queue_depth",
    "gauge",
    (),
    "units of work waiting for the writer (the group being written not included), and machines' usage writes "
    "waiting for the collector's next batch",
)
DATABASE_SIZE = MetricSpec(
    "smooth_edge_database_size_bytes",
    "gauge",
    (),
    "the database on disk: SQLite's file plus its write-ahead log, or pg_database_size on PostgreSQL",
)
CONNECTED = MetricSpec(
    "smooth_edge_collector_connected", "gauge", ("machine_id",), "1 while the machine's OPC UA session is up, else 0"
)
NOTIFICATIONS = MetricSpec(
    "smooth_edge_collector_notifications_total", "counter", ("machine_id",), "data changes the controller sent"
)
OPENED = MetricSpec(
    "smooth_edge_collector_usages_opened_total",
    "counter",
    ("machine_id",),
    "tool usages recorded as opened (a tool came in)",
)
CLOSED = MetricSpec(
    "smooth_edge_collector_usages_closed_total",
    "counter",
    ("machine_id",),
    "tool usages recorded as closed (a tool left)",
)
UNMATCHED = MetricSpec(
    "smooth_edge_collector_usages_unmatched_total",
    "counter",
    ("machine_id",),
    "stays of a T number that ended with no ToolPreset for it on the machine (kept as unmatched until one appears)",
)
RESTARTS = MetricSpec(
    "smooth_edge_task_restarts_total",
    "counter",
    ("component", "task"),
    "restarts of a supervised task after it died of an unexpected error (component collector: task is the machine)",
)
BACKLOG = MetricSpec(
    "smooth_edge_replication_backlog_changes", "gauge", (), "local changes central has not acknowledged yet"
)
LAG = MetricSpec(
    "smooth_edge_replication_lag_seconds",
    "gauge",
    (),
    "age of the oldest change central has not acknowledged (0: none)",
)
LAST_SUCCESS = MetricSpec(
    "smooth_edge_replication_last_success_timestamp_seconds",
    "gauge",
    (),
    "Unix time of central's last acknowledgement (absent until the first one)",
)
CENTRAL_CONNECTED = MetricSpec(
    "smooth_edge_replication_connected", "gauge", (), "1 while central answers, 0 after a failed round"
)
REJECTED = MetricSpec(
    "smooth_edge_replication_rejected_total", "counter", (), "local changes central rejected (see the replicator's log)"
)
HEALTH = MetricSpec(
    "smooth_edge_health_serving",
    "gauge",
    ("service",),
    "1 while the gRPC health service of that name is SERVING, else 0 (the names: docs/metrics.md)",
)

METRICS: tuple[MetricSpec, ...] = (
    RPC_HANDLED,
    RPC_DURATION,
    GROUP_SIZE,
    WRITE_QUEUE,
    DATABASE_SIZE,
    CONNECTED,
    NOTIFICATIONS,
    OPENED,
    CLOSED,
    UNMATCHED,
    RESTARTS,
    BACKLOG,
    LAG,
    LAST_SUCCESS,
    CENTRAL_CONNECTED,
    REJECTED,
    HEALTH,
)
REPLICATION_METRICS = (BACKLOG, LAG, LAST_SUCCESS, CENTRAL_CONNECTED, REJECTED)


@dataclass(frozen=True, slots=True)
class Sources:
    """What each scrape reads, on the agent's event loop."""

    database_size: Callable[[], Awaitable[int]]
    write_queue_depth: Callable[[], int]
    machines: Callable[[], Mapping[str, tuple[bool, SessionCounts]]]  # machine_id -> (connected, counts)
    restarts: Callable[[], Mapping[tuple[str, str], int]]
    health: Callable[[], Mapping[str, bool]]
    replication: Callable[[], Awaitable[ReplicatorStatus]] | None = None  # None: not replicating


@dataclass(frozen=True, slots=True)
class _Reading:
    database_size: int | None  # None: the database could not be asked (the sample is left out)
    write_queue_depth: int
    machines: dict[str, tuple[bool, SessionCounts]]
    restarts: dict[tuple[str, str], int]
    health: dict[str, bool]
    replication: ReplicatorStatus | None


class AgentMetrics:
    """The registry and the hooks the composition root hands out. `sources` may be set after construction (the
    components exist only once the runtime has entered them); until then a scrape shows the observed metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._rpc_handled = Counter(_base(RPC_HANDLED), RPC_HANDLED.help, RPC_HANDLED.labels, registry=self.registry)
        self._rpc_duration = Histogram(
            RPC_DURATION.name,
            RPC_DURATION.help,
            RPC_DURATION.labels,
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
        )
        self._rpc_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self._group_size = Histogram(
            GROUP_SIZE.name, GROUP_SIZE.help, registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64)
        )
        ProcessCollector(registry=self.registry)
        self.sources: Sources | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the agent's, where the sources are read
        self.registry.register(_ScrapeTime(self))

    def detach(self) -> None:
        """The components are stopping: scrapes serve the observed metrics only from now on."""
        self.sources = None

    def observe_rpc(self, method: str, code: str, seconds: float) -> None:
        # The (counter, histogram) children of each (method, code), looked up once: `labels()` takes a lock and
        # checks its arguments on every call (issue 11). Bounded: the served methods times the status codes.
        children = self._rpc_children.get((method, code))
        if children is None:
            children = (self._rpc_handled.labels(method, code), self._rpc_duration.labels(method, code))
            self._rpc_children[(method, code)] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_group(self, size: int) -> None:
        self._group_size.observe(size)

    def read(self) -> _Reading | None:
        """From the endpoint's thread: the components' values, read on the agent's loop."""
        sources, loop = self.sources, self.loop
        if sources is None or loop is None or loop.is_closed():
            return None
        try:
            return asyncio.run_coroutine_threadsafe(_read(sources), loop).result(SCRAPE_TIMEOUT_S)
        except TimeoutError:
            log.warning("metrics.scrape_timeout", waited_s=SCRAPE_TIMEOUT_S, served="the observed metrics only")
            return None


async def _read(sources: Sources) -> _Reading:
    database_size: int | None = None
    replication: ReplicatorStatus | None = None
    try:  # both read the database: while it is unavailable their samples are left out, the rest is served
        database_size = await sources.database_size()
        replication = await sources.replication() if sources.replication is not None else None
    except SmoothError as exc:
        log.warning("metrics.database_unavailable", error=f"{exc.reason}: {exc.message}")
    return _Reading(
        database_size=database_size,
        write_queue_depth=sources.write_queue_depth(),
        machines=dict(sources.machines()),
        restarts=dict(sources.restarts()),
        health=dict(sources.health()),
        replication=replication,
    )


class _ScrapeTime(Collector):
    def __init__(self, metrics: AgentMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # what it yields depends on the components; nothing to check against the registry's names

    def collect(self) -> Iterator[Metric]:
        reading = self._metrics.read()
        if reading is None:
            return
        yield _family(WRITE_QUEUE, [((), reading.write_queue_depth)])
        yield _family(DATABASE_SIZE, [((), reading.database_size)] if reading.database_size is not None else [])
        machines = sorted(reading.machines.items())
        yield _family(CONNECTED, [((m,), int(up)) for m, (up, _) in machines])
        yield _family(NOTIFICATIONS, [((m,), c.notifications) for m, (_, c) in machines])
        yield _family(OPENED, [((m,), c.usages_opened) for m, (_, c) in machines])
        yield _family(CLOSED, [((m,), c.usages_closed) for m, (_, c) in machines])
        yield _family(UNMATCHED, [((m,), c.usages_unmatched) for m, (_, c) in machines])
        yield _family(RESTARTS, sorted(reading.restarts.items()))
        yield _family(HEALTH, [((service,), int(up)) for service, up in sorted(reading.health.items())])
        status = reading.replication
        if status is not None:
            yield _family(BACKLOG, [((), status.backlog)])
            yield _family(LAG, [((), status.lag_seconds)])
            last = [((), status.last_success.timestamp())] if status.last_success is not None else []
            yield _family(LAST_SUCCESS, last)
            yield _family(CENTRAL_CONNECTED, [((), int(status.connected))])
            yield _family(REJECTED, [((), status.rejected)])


def _base(spec: MetricSpec) -> str:
    return spec.name.removesuffix("_total")


def _family(spec: MetricSpec, samples: Sequence[tuple[tuple[str, ...], float]]) -> Metric:
    family: CounterMetricFamily | GaugeMetricFamily
    if spec.kind == "counter":
        family = CounterMetricFamily(_base(spec), spec.help, labels=spec.labels)
    else:
        family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
    for labels, value in samples:
        family.add_metric(list(labels), value)
    return family


class MetricsEndpoint:
    """`async with MetricsEndpoint(metrics, "HOST:PORT")`: serves /metrics (Prometheus text) until the block ends.
    Port 0 takes a free port (`port` tells which)."""

    def __init__(self, metrics: AgentMetrics, listen: str) -> None:
        self._metrics = metrics
        self._listen = listen
        self._server: object | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    async def __aenter__(self) -> MetricsEndpoint:
        host, port = _split(self._listen)
        try:
            server, thread = start_http_server(port, host, registry=self._metrics.registry)
        except OSError as exc:
            raise OSError(
                f"cannot serve metrics on {self._listen}: {exc.strerror or exc}; choose another [metrics] listen "
                "(or --metrics-listen), or free that port"
            ) from exc
        self._metrics.loop = asyncio.get_running_loop()
        self._server, self._thread = server, thread
        self.port = int(server.server_address[1])
        log.info("metrics.started", listen=self._listen, port=self.port, path="/metrics")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        server = self._server
        if server is None:
            return
        self._server = None
        await asyncio.to_thread(_shutdown, server)
        log.info("metrics.stopped")


def _shutdown(server: object) -> None:
    server.shutdown()  # type: ignore[attr-defined]
    server.server_close()  # type: ignore[attr-defined]


def _split(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise OSError(f"cannot serve metrics on {listen!r}: give HOST:PORT, e.g. 127.0.0.1:9464")
    return host.strip("[]") or "0.0.0.0", int(port)


def render_doc() -> str:
    """docs/metrics.md, from METRICS and the health service names (tests/agent/test_metrics.py keeps it fresh)."""
    lines = [
        "# Metrics and health",
        "",
        "<!-- Generated by `python -m agent.metrics > docs/metrics.md` from agent/metrics.py and agent/health.py;",
        "     tests/agent/test_metrics.py fails while this file is stale. -->",
        "",
        "The agent (`smooth-edge serve`) and central (`smooth-edge central`) serve Prometheus metrics on",
        "`[metrics] listen` (or `--metrics-listen HOST:PORT`) at `/metrics`; off when empty. The registry is the",
        "agent's own: the metrics below, plus prometheus-client's standard `process_*` metrics (CPU, resident",
        "memory, open files, start time).",
        "",
        "## Metrics",
        "",
        "| name | type | labels | what it counts |",
        "|---|---|---|---|",
    ]
    for spec in METRICS:
        labels = ", ".join(f"`{label}`" for label in spec.labels) or "—"
        lines.append(f"| `{spec.name}` | {spec.kind} | {labels} | {spec.help} |")
    lines += [
        "",
        "Histograms expose `_bucket`, `_sum` and `_count` (and `_created`) series as usual. The collector's metrics "
        "carry one series per configured machine; the replication metrics exist only on an edge with a central.",
        "",
        "## Health",
        "",
        "gRPC health (`grpc.health.v1.Health/Check` and `Watch`, open without a key) answers per service name. "
        "Besides every API service of the contract (SERVING while the agent serves), the agent's components:",
        "",
        "| service | what its state says |",
        "|---|---|",
    ]
    for name, meaning in health.SERVICES:
        lines.append(f'| `"{name}"` | {meaning} |')
    lines += [
        "",
        "The states are decided every 5 s (a write probe through the writer, then the sessions and the replicator)",
        "and the same states are in the metrics as `smooth_edge_health_serving{service=...}`. Changes are logged as",
        "`health.not_serving` and `health.serving` with the reason. On shutdown every service turns NOT_SERVING.",
        "",
        "## Looking at them",
        "",
        "```sh",
        "smooth-edge serve --db edge.db --config smooth-edge.toml --metrics-listen 127.0.0.1:9464",
        "curl -s http://127.0.0.1:9464/metrics | grep -E 'smooth_edge_(collector|health)'",
        "grpc_health_probe -addr 127.0.0.1:50051 -service smooth.edge.database   # or any gRPC health client",
        "```",
        "",
        "A supervised task that died and was restarted shows in `smooth_edge_task_restarts_total` and in the log",
        "(`<component>.crashed` with its traceback, then `<component>.restarted`); the writer or the gRPC server",
        "failing stops the agent with exit status 1 (docs/architecture.md, Lifecycle).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(render_doc(), end="")
