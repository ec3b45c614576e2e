"""`smooth-edge health` (the container image's HEALTHCHECK, issue 14 item 4) against a real server: exit 0 while
it serves, 1 with the reason when it does not, cannot be reached or has no such health service; over mutual TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from conftest import Edge, start_edge
from grpc_health.v1 import health_pb2

from agent.health_probe import ProbeTls, probe
from server.api.server import TlsConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_tls import Pki  # the certificates the TLS tests generate

CLI = [sys.executable, "-m", "agent.cli"]


async def _health(*args: str) -> subprocess.CompletedProcess[str]:
    """The real command, in its own process (the server runs on this test's event loop)."""
    return await asyncio.to_thread(subprocess.run, [*CLI, "health", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in start_edge(str(tmp_path / "edge.db")):
        yield e


async def test_serving_not_serving_unknown_and_unreachable(edge: Edge) -> None:
    serving = await _health("--target", edge.address)
    assert serving.returncode == 0, serving.stderr
    assert serving.stdout.strip() == f"{edge.address}: the agent is SERVING"

    service = "smooth.core.v1.ToolItemService"
    assert (await _health("--target", edge.address, "--service", service)).returncode == 0

    unknown = await _health("--target", edge.address, "--service", "smooth.edge.nothing")
    assert unknown.returncode == 1
    assert "service 'smooth.edge.nothing' is SERVICE_UNKNOWN" in unknown.stderr

    await edge.server.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    down = await _health("--target", edge.address)
    assert down.returncode == 1
    assert down.stderr.strip() == f"smooth-edge: {edge.address}: the agent is NOT_SERVING"
    await edge.server.health.set("", health_pb2.HealthCheckResponse.SERVING)

    port = edge.server.port
    await edge.server.__aexit__(None, None, None)  # stopped: nothing listens on its port any more
    gone = await _health("--target", f"127.0.0.1:{port}", "--timeout", "5")
    assert gone.returncode == 1
    assert "the agent is UNAVAILABLE" in gone.stderr or "the agent is DEADLINE_EXCEEDED" in gone.stderr


async def test_probe_over_mutual_tls(tmp_path: Path) -> None:
    pki = Pki()
    files = {name: tmp_path / f"{name}.pem" for name in ("ca", "cert", "key")}
    files["ca"].write_bytes(pki.ca)
    files["cert"].write_bytes(pki.client_cert)
    files["key"].write_bytes(pki.client_key)
    tls = TlsConfig(pki.server_cert, pki.server_key, pki.ca)
    async for e in start_edge(str(tmp_path / "mtls.db"), tls=tls):
        target = f"127.0.0.1:{e.server.port}"  # the certificate names localhost: --server-name says so
        with_cert = ProbeTls(files["ca"], files["cert"], files["key"], server_name="localhost")
        assert (await asyncio.to_thread(probe, target, tls=with_cert)).serving
        # Without a client certificate the handshake is refused: not serving, with the reason.
        refused = await asyncio.to_thread(probe, target, tls=ProbeTls(files["ca"], server_name="localhost"))
        assert not refused.serving and refused.status == "UNAVAILABLE"
        command = await _health(
            "--target", target, "--ca", str(files["ca"]), "--cert", str(files["cert"]), "--key", str(files["key"]),
            "--server-name", "localhost",
        )  # fmt: skip
        assert command.returncode == 0, command.stderr


def test_a_client_certificate_needs_its_key_and_a_ca() -> None:
    half = subprocess.run([*CLI, "health", "--cert", "c.pem"], capture_output=True, text=True, timeout=120)
    assert half.returncode == 2 and "--cert and --key go together" in half.stderr
    no_ca = subprocess.run(
        [*CLI, "health", "--cert", "c.pem", "--key", "k.pem"], capture_output=True, text=True, timeout=120
    )
    assert no_ca.returncode == 2 and "--cert needs --ca" in no_ca.stderr
