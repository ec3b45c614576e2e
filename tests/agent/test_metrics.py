"""Issue 14, item 2: the Prometheus endpoint of a real `smooth-edge serve` collecting from a real simulated CNC
counts RPCs and usages; every metric it exposes is documented in docs/metrics.md, which is rendered from the
metric table and kept fresh here. Health: test_health.py."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from prometheus_client.parser import text_string_to_metric_families
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc
from test_collector import _CLI, eventually, store_with_presets

from agent.metrics import METRICS, render_doc
from agent.simulator.server import CncSimulator, SimMachine
from agent.simulator.timeline import Step

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> tuple[Samples, set[str]]:
    """The endpoint's samples by (name, labels), and its metric family names."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = {}
    families = set()
    for family in text_string_to_metric_families(text):
        families.add(family.name)
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples, families


def sample(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def test_docs_metrics_md_is_rendered_from_the_metric_table() -> None:
    assert (ROOT / "docs" / "metrics.md").read_text() == render_doc(), (
        "docs/metrics.md is stale: run `python -m agent.metrics > docs/metrics.md`"
    )


@dataclass
class Scraped:
    samples: Samples
    families: set[str]
    log: str


async def collect_one_usage(
    tmp_path: Path,
    machine_id: str,
    sim_machines: list[str],
    args: list[str],
    env: dict[str, str],
    *,
    port: int,
    metrics_port: int,
) -> Scraped:
    """Run `smooth-edge <args>` (with `env`) beside a simulator of `sim_machines` at the endpoint the caller wrote
    in the agent's configuration (tmp_path/endpoint); once `machine_id` is connected (the metrics say so), make one
    refused RPC and put T1 in its spindle, then scrape until the usage is counted."""
    endpoint = (tmp_path / "endpoint").read_text()
    log = tmp_path / "agent.log"
    async with CncSimulator([SimMachine(name, "cnc", []) for name in sim_machines], endpoint) as sim:
        with log.open("w") as log_file:
            agent = subprocess.Popen(
                [*_CLI, *args], env={**os.environ, **env}, stdout=subprocess.DEVNULL, stderr=log_file
            )
        try:

            async def connected() -> bool:
                assert agent.poll() is None, log.read_text()
                try:
                    samples = scrape(metrics_port)[0]
                except OSError:
                    return False
                return sample(samples, "smooth_edge_collector_connected", machine_id=machine_id) == 1

            await eventually(connected, timeout=120, what=f"{machine_id} connected, as the metrics say")
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel, pytest.raises(grpc.RpcError) as refused:
                tool_item_pb2_grpc.ToolItemServiceStub(channel).GetToolItem(
                    tool_item_pb2.GetToolItemRequest(id="00000000-0000-7000-8000-000000000000"), timeout=30
                )
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            await sim.apply(machine_id, Step(0, tool=1))

            async def usage_counted() -> Samples | None:
                samples = scrape(metrics_port)[0]
                opened = sample(samples, "smooth_edge_collector_usages_opened_total", machine_id=machine_id)
                return samples if opened else None

            samples = await eventually(usage_counted, what="the usage of T1 counted")
            families = scrape(metrics_port)[1]
        finally:
            agent.terminate()
            agent.wait(timeout=60)
    assert agent.returncode == 0, log.read_text()
    return Scraped(samples, families, log.read_text())


async def prepared(tmp_path: Path, machine_id: str) -> Path:
    """A migrated store with a preset for T1 on `machine_id`, and the simulator's endpoint in tmp_path/endpoint."""
    (tmp_path / "endpoint").write_text(f"opc.tcp://127.0.0.1:{free_port()}/metrics/")
    db = tmp_path / "agent.db"
    store, _, _ = await store_with_presets(db, machine_id, [1, 2])
    await store.__aexit__(None, None, None)
    return db


@pytest.mark.timeout(300)
async def test_a_real_agent_counts_rpcs_and_usages(tmp_path: Path) -> None:
    db = await prepared(tmp_path, "A1")
    config = tmp_path / "agent.toml"
    config.write_text(
        f'[[machines]]\nmachine_id = "A1"\nendpoint = "{(tmp_path / "endpoint").read_text()}"\nprofile = "cnc"\n'
        "publishing_interval_ms = 50\nreconnect_max_s = 1\n"
    )
    port, metrics_port = free_port(), free_port()
    args = ["serve", "--db", str(db), "--listen", f"127.0.0.1:{port}", "--config", str(config)]
    scraped = await collect_one_usage(
        tmp_path,
        "A1",
        ["A1"],
        [*args, "--metrics-listen", f"127.0.0.1:{metrics_port}"],
        {},
        port=port,
        metrics_port=metrics_port,
    )
    samples, families = scraped.samples, scraped.families
    method = "/smooth.core.v1.ToolItemService/GetToolItem"
    assert sample(samples, "smooth_edge_rpc_handled_total", method=method, code="UNAUTHENTICATED") == 1
    assert sample(samples, "smooth_edge_rpc_duration_seconds_count", method=method, code="UNAUTHENTICATED") == 1
    assert sample(samples, "smooth_edge_collector_usages_opened_total", machine_id="A1") == 1
    assert sample(samples, "smooth_edge_collector_usages_closed_total", machine_id="A1") == 0
    assert (sample(samples, "smooth_edge_collector_notifications_total", machine_id="A1") or 0) >= 1
    # The usage, the collector's states and the health probes went through the writer, grouped.
    assert (sample(samples, "smooth_edge_group_commit_batch_size_count") or 0) >= 2
    assert sample(samples, "smooth_edge_write_queue_depth") is not None
    assert (sample(samples, "smooth_edge_database_size_bytes") or 0) > 0
    assert sample(samples, "smooth_edge_health_serving", service="smooth.edge.collector.A1") == 1
    # Everything of ours that is exposed is in the table docs/metrics.md is rendered from.
    documented = {spec.name.removesuffix("_total") for spec in METRICS}
    ours = {name for name in families if name.startswith("smooth_edge_") and not name.endswith("_created")}
    assert ours - documented == set()
    assert {"smooth_edge_rpc_handled", "smooth_edge_collector_usages_opened", "process_resident_memory_bytes"} <= (
        families
    )


@pytest.mark.timeout(300)
async def test_the_agent_started_from_the_example_configuration_serves_metrics(tmp_path: Path) -> None:
    """deploy/smooth-edge.toml as shipped, its machines pointed at this test's simulator and the rest overridden
    the way an installation would: through SMOOTH_EDGE_<SECTION>__<KEY>."""
    db = await prepared(tmp_path, "MILL-01")
    example = (ROOT / "deploy" / "smooth-edge.toml").read_text()
    assert example.count("opc.tcp://127.0.0.1:4840/smooth-sim/") >= 2 and "[metrics]" in example
    config = tmp_path / "smooth-edge.toml"
    config.write_text(example.replace("opc.tcp://127.0.0.1:4840/smooth-sim/", (tmp_path / "endpoint").read_text()))
    port, metrics_port = free_port(), free_port()
    env = {
        "SMOOTH_EDGE_DATABASE__URL": str(db),
        "SMOOTH_EDGE_SERVER__LISTEN": f"127.0.0.1:{port}",
        "SMOOTH_EDGE_METRICS__LISTEN": f"127.0.0.1:{metrics_port}",
    }
    scraped = await collect_one_usage(
        tmp_path,
        "MILL-01",
        ["MILL-01", "MILL-02"],
        ["serve", "--config", str(config)],
        env,
        port=port,
        metrics_port=metrics_port,
    )
    assert sample(scraped.samples, "smooth_edge_collector_usages_opened_total", machine_id="MILL-01") == 1
    assert sample(scraped.samples, "smooth_edge_collector_connected", machine_id="MILL-02") is not None
    assert f'"metrics_port": {metrics_port}' in scraped.log


def test_a_metrics_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [
                *_CLI,
                "serve",
                "--migrate",
                "--db",
                str(tmp_path / "e.db"),
                "--listen",
                "127.0.0.1:0",
                "--metrics-listen",
                f"127.0.0.1:{port}",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert result.returncode == 2
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert plain == [
        f"smooth-edge: cannot serve metrics on 127.0.0.1:{port}: Address already in use; choose another "
        "[metrics] listen (or --metrics-listen), or free that port"
    ]
