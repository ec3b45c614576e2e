"""The `smooth-edge` process: migrate, serve (health, reflection, a JSON log line per RPC), graceful SIGTERM,
refusal of a database not at head (the demo: test_demo.py)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc

CLI = [sys.executable, "-m", "agent.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_serving(port: int, proc: subprocess.Popen[str], timeout: float = 60.0) -> None:
    """Poll the process's health service until it says SERVING; fail if the process exits or `timeout` passes."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert proc.poll() is None, f"server exited early: {proc.stderr.read() if proc.stderr else ''}"
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status
            except grpc.RpcError:  # not listening yet
                status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            assert time.monotonic() < deadline, f"server did not become SERVING within {timeout} s (last: {status})"
            time.sleep(0.1)


def test_serve_refuses_unmigrated_database(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "serve", "--db", str(tmp_path / "new.db"), "--listen", "127.0.0.1:0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "smooth-edge migrate" in result.stderr and "--migrate" in result.stderr


def test_migrate_then_serve_health_reflection_logs_and_sigterm(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    migrated = subprocess.run([*CLI, "migrate", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert migrated.returncode == 0, migrated.stderr
    created_user = subprocess.run(
        [*CLI, "user", "create", "--db", str(db), "--email", "Boss@Shop.example", "--admin"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert created_user.returncode == 0, created_user.stderr
    assert "<boss@shop.example> role ADMIN" in created_user.stdout
    secret = created_user.stdout.strip().splitlines()[-1]
    assert secret.startswith("sek_")
    auth = [("authorization", f"Bearer {secret}")]
    port = _free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_serving(port, proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            items = tool_item_pb2_grpc.ToolItemServiceStub(channel)
            created = items.CreateToolItem(
                tool_item_pb2.CreateToolItemRequest(
                    tool_item=tool_item_pb2.ToolItem(name="cli", tool_type=tool_item_pb2.TOOL_TYPE_OTHER)
                ),
                metadata=auth,
            )
            with pytest.raises(grpc.RpcError) as err:
                items.GetToolItem(tool_item_pb2.GetToolItemRequest(id="bad"), metadata=auth)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            with pytest.raises(grpc.RpcError) as err:
                items.GetToolItem(tool_item_pb2.GetToolItemRequest(id=created.id))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            for service in ("smooth.core.v1.ToolItemService", "smooth.core.v1.ToolSetService"):
                status = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
                assert status.status == health_pb2.HealthCheckResponse.SERVING
            refl = reflection_pb2_grpc.ServerReflectionStub(channel)
            answers = list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            names = {s.name for s in answers[0].list_services_response.service}
            assert {
                "smooth.core.v1.ToolItemService",
                "smooth.core.v1.ToolUsageService",
                "grpc.health.v1.Health",
            } <= names
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    rpc_lines = [line for line in lines if line.get("event") == "rpc"]
    create = next(line for line in rpc_lines if line["method"].endswith("/CreateToolItem"))
    assert create["code"] == "OK" and create["duration_ms"] >= 0
    bad = next(line for line in rpc_lines if line["method"].endswith("/GetToolItem"))
    assert bad["code"] == "INVALID_ARGUMENT"
    events = [line["event"] for line in lines]
    assert events.index("agent.signal") < events.index("server.stopped") < events.index("agent.stopped")
    # The data survives the restart of the process.
    again = subprocess.Popen(
        [*CLI, "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_serving(port, again)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            got = tool_item_pb2_grpc.ToolItemServiceStub(channel).GetToolItem(
                tool_item_pb2.GetToolItemRequest(id=created.id), metadata=auth
            )
            assert got == created
    finally:
        again.send_signal(signal.SIGTERM)
        again.communicate(timeout=30)
    verified = subprocess.run([*CLI, "audit", "verify", "--db", str(db)], capture_output=True, text=True, timeout=60)
    assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified.stdout + verified.stderr
