"""Disk full, as docs/operations.md tells it: the real agent on a small file system filled to the last byte refuses
writes with UNAVAILABLE / DATABASE_UNAVAILABLE and logs `store.database_error` ("database or disk is full"),
keeps running with its database health NOT_SERVING, and writes again as soon as there is room, without a
restart."""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc

CLI = [sys.executable, "-m", "agent.cli"]


@contextmanager
def _small_file_system(where: Path, size: str) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True, text=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): needs root with CAP_SYS_ADMIN")
    try:
        yield where
    finally:
        subprocess.run(["umount", "--lazy", str(where)], check=True)


def _fill(directory: Path) -> Path:
    """A file that takes every byte left."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as full:
            if full.errno != errno.ENOSPC:  # only "no space left" means the file system is now full
                raise
    return filler


def _health_becomes(port: int, *, serving: bool, timeout_s: float = 120) -> bool:
    """`smooth-edge health --service smooth.edge.database` until it says `serving` (the probe runs every 5 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        checked = subprocess.run(
            [*CLI, "health", "--target", f"127.0.0.1:{port}", "--service", "smooth.edge.database"],
            capture_output=True,
            timeout=120,
        )
        if (checked.returncode == 0) == serving:
            return True
        time.sleep(1)
    return False


def _reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return str(info.reason)
    return ""


def test_a_full_disk_refuses_writes_and_the_agent_recovers_alone(tmp_path: Path) -> None:
    with _small_file_system(tmp_path / "small", "4m") as small:
        db = small / "edge.db"
        assert subprocess.run([*CLI, "migrate", "--db", str(db)], capture_output=True, timeout=120).returncode == 0
        created = subprocess.run(
            [*CLI, "user", "create", "--db", str(db), "--email", "ops@shop.example", "--admin"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        key = created.stdout.strip().splitlines()[-1]
        auth = [("authorization", f"Bearer {key}")]
        port = free_port()
        log = tmp_path / "agent.log"
        with log.open("wb") as out:
            agent = subprocess.Popen(
                [*CLI, "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"], stdout=out, stderr=out
            )
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=60)
                items = tool_item_pb2_grpc.ToolItemServiceStub(channel)

                def create(name: str) -> tool_item_pb2.ToolItem:
                    item = tool_item_pb2.ToolItem(
                        name=name, tool_type=tool_item_pb2.TOOL_TYPE_OTHER, description="d" * 2000
                    )
                    return items.CreateToolItem(
                        tool_item_pb2.CreateToolItemRequest(tool_item=item), metadata=auth, timeout=60
                    )

                create("before")
                filler = _fill(small)
                with pytest.raises(grpc.RpcError) as refused:
                    for n in range(1000):  # pages the file already had may take a few more rows
                        create(f"while full {n}")
                assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                assert _reason(refused.value) == "DATABASE_UNAVAILABLE"
                assert agent.poll() is None, "the agent keeps running"
                # The write probe fails: the database's health (and the agent's) goes NOT_SERVING.
                assert _health_becomes(port, serving=False)

                filler.unlink()  # room again: the next write succeeds, no restart
                assert create("after").name == "after"
                assert _health_becomes(port, serving=True)
        finally:
            agent.send_signal(signal.SIGTERM)
            code = agent.wait(timeout=60)
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert code == 0, log.read_text()[-3000:]
        full = [e for e in events if e.get("event") == "store.database_error"]
        assert full and full[0]["error"] == "database or disk is full" and full[0]["kind"] == "OperationalError"
