"""Issue 14, item 3: no silently dead component in a live process. A component the agent cannot serve without
(the writer, the gRPC server) that fails stops the agent: a real `smooth-edge serve` exits non-zero with one clear
line on stderr and the traceback in its log. The restartable ones (a machine's session, the replicator) are in
test_collector.py and test_replicator.py; the writer's own side in tests/store/test_group_commit.py."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import grpc
import pytest
import structlog
from conftest import free_port
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc

from agent.runtime import ServeOptions, serve
from agent.supervisor import ComponentFailed
from server.api.server import GrpcServer
from server.usecases.app import UseCases

CLI = [sys.executable, "-m", "agent.cli"]


def test_a_writer_that_dies_stops_the_agent_with_one_clear_line_and_its_traceback(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--migrate", "--db", str(tmp_path / "edge.db"), "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, "SMOOTH_EDGE_FAILPOINTS": "group-commit=raise"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # The first write hits the fault: the health probe at start, or the audit entry of this refused call.
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            items = tool_item_pb2_grpc.ToolItemServiceStub(channel)
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                with contextlib.suppress(grpc.RpcError):
                    items.GetToolItem(tool_item_pb2.GetToolItemRequest(id=str(uuid.uuid4())), timeout=5)
                time.sleep(0.1)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    result = subprocess.CompletedProcess(proc.args, proc.returncode, "", stderr)
    assert result.returncode == 1, result.stderr
    plain = [line for line in result.stderr.splitlines() if not line.startswith("{")]
    assert plain == [
        "smooth-edge: the agent stopped because its writer (group-commit) failed with InjectedFault: fault injected "
        "at group-commit (SMOOTH_EDGE_FAILPOINTS); the log has the details (event writer.crashed): fix the cause, "
        "then start the agent again"
    ]
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    (crashed,) = [line for line in lines if line["event"] == "writer.crashed"]
    assert crashed["level"] == "critical" and crashed["action"] == "stopping the agent"
    assert crashed["exception"].startswith("Traceback") and "InjectedFault" in crashed["exception"]
    events = [line["event"] for line in lines]
    # Stopped the graceful way: the server drained and the store closed before the exit.
    assert events.index("writer.crashed") < events.index("server.stopped") < events.index("agent.stopped")
    # Never said to be ready once its writer had failed (the health probe at start may be the first write).
    assert "agent.ready" not in events or events.index("agent.ready") < events.index("writer.crashed")


async def test_a_grpc_server_that_stops_on_its_own_stops_the_agent(tmp_path: Path) -> None:
    async def break_the_server(server: GrpcServer, _: UseCases) -> None:
        # What a crashed transport looks like from the agent: its server ends without the agent asking.
        assert server._server is not None
        await server._server.stop(None)

    options = ServeOptions(str(tmp_path / "edge.db"), "127.0.0.1:0", auto_migrate=True)
    with structlog.testing.capture_logs() as logs, pytest.raises(ComponentFailed) as failed:
        await serve(options, on_ready=break_the_server)  # returns (raising) once stopped: it does not hang
    assert failed.value.component == "server" and "stopped on its own" in str(failed.value)
    crashed: list[dict[str, Any]] = [e for e in logs if e["event"] == "server.crashed"]
    assert len(crashed) == 1 and crashed[0]["log_level"] == "critical"
