"""The `smooth-edge` process: migrate, serve (health, reflection, a JSON log line per RPC), graceful SIGTERM,
refusal of a database not at head (the demo: test_demo.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc

CLI = [sys.executable, "-m", "agent.cli"]


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


def _stopped(proc: subprocess.Popen[str]) -> str:
    """SIGTERM, and the stderr of a process that stopped cleanly."""
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 0, stderr
    return stderr


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
    port = free_port()
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
        stderr = _stopped(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
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


# --- the configuration file and start-up failures (issue 14, item 1) ---------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"] if user is not None else []
    return subprocess.run(
        [*prefix, *CLI, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**_clean_env(), **(env or {})},
    )


def _clean_env() -> dict[str, str]:
    """The test process's environment without settings a developer may have exported (SMOOTH_EDGE_X__Y)."""
    return {k: v for k, v in os.environ.items() if not (k.startswith("SMOOTH_EDGE_") and "__" in k)}


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    """A start-up failure: a non-zero exit and one line for people on stderr, never a traceback (JSON log lines
    written before the failure, if any, are the logs' business)."""
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("smooth-edge: ")
    return lines[0]


def _migrated(db: Path, revision: str | None = None) -> Path:
    migrated = _cli("migrate", "--db", str(db))
    assert migrated.returncode == 0, migrated.stderr
    if revision is not None:  # a database as another version of smooth-edge left it
        with sqlite3.connect(db) as conn:
            conn.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    return db


def test_check_config_lists_every_problem_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text(
        '[database]\nauto_migrate = "yes"\n[server]\nlisten = "0.0.0.0"\nreflection = "maybe"\n'
        '[server.tls]\ncert = "/x/server.pem"\nkey = "/x/server-key.pem"\n'
        "[health]\ncollector_down_after_s = -1\n[metric]\nlisten = 1\n"
        '[[machines]]\nmachine_id = "M1"\nendpoint = "opc.tcp://m1:4840"\nprofile = "cnc"\n'
        '[[machines]]\nmachine_id = "M1"\nendpoint = "opc.tcp://m2:4840"\nprofile = "cnc"\n'
        '[[machines]]\nmachine_id = "M3"\nendpoint = "tcp://m3"\nprofile = "cnc"\n'
    )
    result = _cli("check-config", str(path), env={"SMOOTH_EDGE_REPLICATION__BATCH_SIZE": "lots"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: {problem}"
        for problem in (
            "metric: unknown section; known: database, server, replication, logging, metrics, health, machines",
            "database.auto_migrate: must be true or false, not 'yes'",
            "server.listen: must be HOST:PORT (e.g. 0.0.0.0:50051), not '0.0.0.0'",
            "server.reflection: must be one of open, authenticated, off, not 'maybe'",
            "server.tls.cert: file not found: /x/server.pem",
            "server.tls.key: file not found: /x/server-key.pem",
            "replication.batch_size (from SMOOTH_EDGE_REPLICATION__BATCH_SIZE): must be an integer, not 'lots'",
            "health.collector_down_after_s: must be greater than 0, not -1.0",
            "machines[1].machine_id: 'M1' is used twice",
            "machines[2].endpoint: must be an opc.tcp:// URL, not 'tcp://m3'",
        )
    ]
    # serve says the same on stderr, and starts nothing
    served = _cli("serve", "--config", str(path), env={"SMOOTH_EDGE_REPLICATION__BATCH_SIZE": "lots"})
    assert served.returncode == 2 and "Traceback" not in served.stderr
    assert served.stderr.splitlines() == [f"smooth-edge: {line}" for line in result.stdout.splitlines()]


def test_the_example_configuration_passes_check_config() -> None:
    result = _cli("check-config", "deploy/smooth-edge.toml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "deploy/smooth-edge.toml: OK",
        "  role: edge (smooth-edge serve)",
        "  database: SQLite file /var/lib/smooth-edge/edge.db",
        "  listen: 0.0.0.0:50051, TLS off, auth on, reflection open",
        "  machines: 2 (MILL-01, MILL-02)",
        "  replication: off",
        "  metrics: off",
        "  logging: INFO json to stderr",
    ]


def test_serve_and_migrate_take_everything_from_the_file(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "etc" / "smooth-edge.toml"
    config.parent.mkdir()
    config.write_text(
        '[database]\nurl = "../data/edge.db"\n'  # beside the file, wherever the process runs
        f'[server]\nlisten = "127.0.0.1:{free_port()}"\nreflection = "off"\n'
        '[logging]\nfile = "../edge.log"\nlevel = "INFO"\n'
    )
    (tmp_path / "data").mkdir()
    migrated = _cli("migrate", "--config", str(config))
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "data" / "edge.db").exists()
    proc = subprocess.Popen(
        [*CLI, "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        # the environment overrides the file's port
        env={**_clean_env(), "SMOOTH_EDGE_SERVER__LISTEN": f"127.0.0.1:{port}"},
    )
    try:
        _wait_serving(port, proc)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as err:  # the file turned reflection off
                refl = reflection_pb2_grpc.ServerReflectionStub(channel)
                list(refl.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
            with pytest.raises(grpc.RpcError) as err:  # auth is on by default
                tool_item_pb2_grpc.ToolItemServiceStub(channel).ListToolItems(tool_item_pb2.ListToolItemsRequest())
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        stderr = _stopped(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stderr == ""  # the logs went to the file the configuration names
    events = [json.loads(line)["event"] for line in (tmp_path / "edge.log").read_text().splitlines()]
    assert "agent.ready" in events and "rpc" in events and events[-1] == "agent.stopped"


def test_a_database_directory_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "smooth-edge.toml"
    config.write_text(f'[database]\nurl = "{tmp_path}/missing/edge.db"\n[server]\nlisten = "127.0.0.1:0"\n')
    assert _one_line(_cli("serve", "--config", str(config))) == (
        f"smooth-edge: the database directory {tmp_path}/missing does not exist; create it or point database.url "
        "elsewhere"
    )
    assert _one_line(_cli("migrate", "--db", f"{tmp_path}/missing/edge.db")) == (
        f"smooth-edge: the database directory {tmp_path}/missing does not exist; create it or point --db elsewhere"
    )


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv to run the agent as another user")
def test_an_unwritable_database_directory_is_one_line() -> None:
    # as root every directory is writable: run the agent as nobody in a directory that root owns
    directory = Path(tempfile.mkdtemp(prefix="smooth-unwritable-"))
    try:
        directory.chmod(0o755)
        nobody = 65534
        probe = _cli("--help", user=nobody)
        if probe.returncode != 0:
            pytest.skip(f"nobody cannot run this checkout's Python: {probe.stderr.strip()[-200:]}")
        line = _one_line(_cli("serve", "--db", str(directory / "edge.db"), user=nobody))
        assert line == (
            f"smooth-edge: the database directory {directory} is not writable by this user (SQLite writes its "
            "journal there); fix its permissions or point --db elsewhere"
        )
    finally:
        shutil.rmtree(directory)


def test_an_address_in_use_is_one_line(tmp_path: Path) -> None:
    db = _migrated(tmp_path / "edge.db")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "smooth-edge.toml"
        config.write_text(f'[database]\nurl = "{db}"\n[server]\nlisten = "127.0.0.1:{port}"\n')
        assert _one_line(_cli("serve", "--config", str(config))) == (
            f"smooth-edge: cannot listen on 127.0.0.1:{port}: the address is in use (another smooth-edge?); "
            "choose another server.listen (--listen)"
        )


def test_a_database_older_or_newer_than_the_code_is_one_line_that_says_what_to_do(tmp_path: Path) -> None:
    from server.store.migrate import head_revision

    head = head_revision()
    older = _migrated(tmp_path / "older.db", revision="0009")
    config = tmp_path / "smooth-edge.toml"
    config.write_text(f'[database]\nurl = "{older}"\n[server]\nlisten = "127.0.0.1:0"\n')
    assert _one_line(_cli("serve", "--config", str(config))) == (
        f"smooth-edge: the database is at revision 0009, but this version of smooth-edge needs revision {head}: "
        f"run `smooth-edge migrate --config {config}` first, or start with --migrate (database.auto_migrate = true)"
    )
    newer = _migrated(tmp_path / "newer.db", revision="9999_from_the_future")
    expected = (
        "smooth-edge: the database was written by a newer smooth-edge (schema revision 9999_from_the_future; this "
        f"version knows up to {head}): upgrade smooth-edge, or restore a backup taken before the upgrade"
    )
    for command in (
        ["serve", "--listen", "127.0.0.1:0"],
        ["serve", "--migrate", "--listen", "127.0.0.1:0"],
        ["migrate"],
    ):
        assert _one_line(_cli(*command, "--db", str(newer))) == expected
