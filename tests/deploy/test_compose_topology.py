"""deploy/compose.yaml run without Docker (issue 14, item 4): each service's own command line, environment,
configuration file and health check, taken from the compose file, run as a real process here — central on a fresh
PostgreSQL database, the simulator, the edge — with the host names, ports and volumes mapped to local ones. A tool
change on the simulated mill becomes a usage on the edge that reaches central."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc
import pytest
import yaml
from conftest import free_port, fresh_pg_database
from google.protobuf import json_format
from smooth.core.v1 import tool_usage_pb2, tool_usage_pb2_grpc

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
IMAGE_ENTRYPOINT = ["smooth-edge"]  # deploy/Dockerfile (tests/deploy/test_compose.py checks it is so)
IMAGE_HEALTHCHECK = ["smooth-edge", "health", "--target", "127.0.0.1:50051", "--timeout", "5"]

pytestmark = pytest.mark.postgres


class Topology:
    """The compose project on this machine: what each service sees at a path or address, mapped to here."""

    def __init__(self, tmp: Path, central_db: str) -> None:
        self.tmp = tmp
        self.central_db = central_db
        self.etc = tmp / "etc"  # ./compose, mounted at /etc/smooth-edge
        shutil.copytree(ROOT / "deploy" / "compose", self.etc)
        self.ports = {name: free_port() for name in ("central", "edge", "simulator", "central-metrics", "edge-metrics")}
        # Addresses as the containers know them -> here. Listeners on 0.0.0.0 stay on every interface where a
        # client reaches them by another name (the simulator: the OPC UA endpoint URL it serves names 0.0.0.0).
        self.addresses = {
            "central:50052": f"127.0.0.1:{self.ports['central']}",
            "0.0.0.0:50052": f"127.0.0.1:{self.ports['central']}",
            "127.0.0.1:50052": f"127.0.0.1:{self.ports['central']}",
            "0.0.0.0:50051": f"127.0.0.1:{self.ports['edge']}",
            "127.0.0.1:50051": f"127.0.0.1:{self.ports['edge']}",
            "simulator:4840": f"127.0.0.1:{self.ports['simulator']}",
            "0.0.0.0:4840": f"0.0.0.0:{self.ports['simulator']}",
            "'127.0.0.1', 4840": f"'127.0.0.1', {self.ports['simulator']}",
        }
        edge_data = self.volume("edge", "/var/lib/smooth-edge")
        for role, data in (("edge", edge_data), ("central", None)):
            name = f"{role}.toml"
            text = (self.etc / name).read_text().replace("0.0.0.0:9464", f"127.0.0.1:{self.ports[role + '-metrics']}")
            if data is not None:
                text = text.replace("/var/lib/smooth-edge", str(data))
            (self.etc / name).write_text(self.map_text(text))
        self.logs: dict[str, Path] = {}

    def map_text(self, text: str) -> str:
        for there, here in self.addresses.items():
            text = text.replace(there, here)
        return text

    def volume(self, service: str, mount_point: str) -> Path:
        """The local directory behind `mount_point` of `service` (a named volume or the ./compose bind mount)."""
        for mount in SERVICES[service].get("volumes", []):
            source, target = mount.split(":")[:2]
            if target == mount_point:
                path = self.etc if source == "./compose" else self.tmp / "volumes" / source
                path.mkdir(parents=True, exist_ok=True)
                return path
        raise AssertionError(f"{service} mounts nothing at {mount_point}")

    def map_value(self, service: str, value: str) -> str:
        for mount in SERVICES[service].get("volumes", []):
            target = mount.split(":")[1]
            if value == target or value.startswith(target + "/"):
                return str(self.volume(service, target)) + value[len(target) :]
        return self.map_text(value)

    def argv(self, service: str) -> list[str]:
        spec = SERVICES[service]
        entrypoint = spec.get("entrypoint", IMAGE_ENTRYPOINT)
        command = spec.get("command", [])
        return [self.map_value(service, a) for a in [*entrypoint, *command]]

    def env(self, service: str) -> dict[str, str]:
        """This test's environment with the service's own on top; the programs the image has on its PATH are this
        environment's. PGPASSWORD stays unset (the local server trusts), the database URL points at the fresh
        database (the environment layer of the configuration, as an operator overrides a file)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTH_EDGE_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for key, value in SERVICES[service].get("environment", {}).items():
            env[key] = self.map_value(service, str(value)) if not str(value).startswith("${") else ""
        env.pop("PGPASSWORD", None)
        if service in ("central-init", "central"):
            env["SMOOTH_EDGE_DATABASE__URL"] = self.central_db
        return env

    def run(self, service: str) -> subprocess.CompletedProcess[str]:
        """A one-shot service, to completion."""
        done = subprocess.run(
            self.argv(service), env=self.env(service), capture_output=True, text=True, timeout=300, cwd=self.tmp
        )
        assert done.returncode == 0, f"{service}: {done.stdout}\n{done.stderr}"
        return done

    @contextmanager
    def start(self, service: str) -> Iterator[subprocess.Popen[bytes]]:
        """A long-running service; stopped with SIGTERM (as `docker compose stop`) when the block ends."""
        log = self.tmp / f"{service}.log"
        self.logs[service] = log
        with log.open("wb") as out:
            proc = subprocess.Popen(self.argv(service), env=self.env(service), stdout=out, stderr=out, cwd=self.tmp)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                raise
            if service != "simulator":  # the simulator has nothing to save: SIGTERM's default is fine
                assert code == 0, f"{service} exited {code}:\n{log.read_text()[-3000:]}"

    async def healthy(self, service: str, proc: subprocess.Popen[bytes], timeout_s: float = 180) -> None:
        """Run the service's health check (the image's unless compose sets one) until it passes."""
        test = SERVICES[service].get("healthcheck", {}).get("test", ["CMD", *IMAGE_HEALTHCHECK])
        assert test[0] == "CMD", test
        argv = [self.map_value(service, a) for a in test[1:]]
        env = self.env(service)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            assert proc.poll() is None, f"{service} exited:\n{self.logs[service].read_text()[-3000:]}"
            check = await asyncio.to_thread(subprocess.run, argv, env=env, capture_output=True, timeout=120)
            if check.returncode == 0:
                return
            assert loop.time() < deadline, f"{service} not healthy: {check.stderr!r}"
            await asyncio.sleep(0.5)


def _scrape(port: int) -> dict[str, float]:
    """Every sample of a Prometheus text page: `name{labels}` -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as page:
        text = page.read().decode()
    samples = (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(value) for name, value in samples}


def _collected_usages(target: str, key: str) -> list[dict[str, Any]]:
    """Central's usages that the collector recorded (the seed's own carry source MANUAL)."""
    with grpc.insecure_channel(target) as channel:
        page = tool_usage_pb2_grpc.ToolUsageServiceStub(channel).ListToolUsages(
            tool_usage_pb2.ListToolUsagesRequest(page_size=1000),
            metadata=[("authorization", f"Bearer {key}")],
            timeout=30,
        )
    usages = [json_format.MessageToDict(u, preserving_proto_field_name=True) for u in page.tool_usages]
    return [u for u in usages if u.get("usage_metrics", {}).get("source") == "COLLECTOR"]


@pytest.mark.timeout(900)
async def test_the_compose_topology_replicates_a_collected_usage(tmp_path: Path, pg_url: str) -> None:
    async with fresh_pg_database(pg_url) as central_db:
        topology = Topology(tmp_path, central_db)
        keys = topology.volume("central-init", "/var/lib/smooth-edge")
        # central-init twice: migrations and keys on the first run, and a second start changes nothing.
        first = topology.run("central-init")
        assert "sync.key" in first.stdout and (keys / "admin.key").read_text().startswith("sek_")
        sync_key = (keys / "sync.key").read_text()
        assert "exists, kept" in topology.run("central-init").stdout
        assert (keys / "sync.key").read_text() == sync_key
        with ExitStack() as stack:
            central = stack.enter_context(topology.start("central"))
            await topology.healthy("central", central)
            seeded = await asyncio.to_thread(topology.run, "seed")
            assert "seeded" in seeded.stdout, seeded.stdout
            simulator = stack.enter_context(topology.start("simulator"))
            await topology.healthy("simulator", simulator)
            edge = stack.enter_context(topology.start("edge"))
            await topology.healthy("edge", edge)

            target = topology.addresses["central:50052"]
            admin_key = (keys / "admin.key").read_text().strip()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 300
            while not (found := await asyncio.to_thread(_collected_usages, target, admin_key)):
                assert edge.poll() is None, topology.logs["edge"].read_text()[-3000:]
                assert loop.time() < deadline, (
                    "no collected usage reached central:\n" + (topology.logs["edge"].read_text()[-3000:])
                )
                await asyncio.sleep(1)
            assert found[0]["machine_id"] in ("MILL-01", "MILL-02")
            # The edge's Prometheus endpoint, as configured in edge.toml, counts it and sees central.
            metrics = await asyncio.to_thread(_scrape, topology.ports["edge-metrics"])
            opened = [v for k, v in metrics.items() if k.startswith("smooth_edge_collector_usages_opened_total{")]
            assert sum(opened) >= 1, metrics
            assert metrics["smooth_edge_replication_connected"] == 1
        edge_log = topology.logs["edge"].read_text()
        assert '"event": "replicator.started"' in edge_log and '"event": "collector.connected"' in edge_log
        assert '"event": "migrate.done"' in edge_log  # edge-start.sh migrated before serving
