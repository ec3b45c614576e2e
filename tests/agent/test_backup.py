"""`smooth-edge backup` / `restore` (issue 14, item 4): a backup taken while the real agent process writes is a
consistent copy at the schema head (its audit chain intact, every entity with its change record); a restore is
refused while the agent runs, keeps the store it replaces, and the agent serves the restored store."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import grpc
import pytest
from conftest import free_port
from smooth.core.v1 import tool_item_pb2, tool_item_pb2_grpc

from agent.backup import BackupError, backup, check, restore
from server.store.migrate import head_revision

CLI = [sys.executable, "-m", "agent.cli"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120)


@contextmanager
def _agent(db: Path, log: Path) -> Iterator[grpc.Channel]:
    """The real agent serving `db`; yields a channel once it listens, stops it with SIGTERM."""
    port = free_port()
    with log.open("a") as err:
        proc = subprocess.Popen(
            [*CLI, "serve", "--db", str(db), "--listen", f"127.0.0.1:{port}"], stdout=err, stderr=err
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            yield channel
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]


class _Writer(threading.Thread):
    """Creates tool items one after another through the API until stopped; `written` counts the acknowledged."""

    def __init__(self, channel: grpc.Channel, key: str) -> None:
        super().__init__(daemon=True)
        self._stub = tool_item_pb2_grpc.ToolItemServiceStub(channel)
        self._auth = [("authorization", f"Bearer {key}")]
        self.written = 0
        self.stop = threading.Event()
        self._progress = threading.Condition()

    def run(self) -> None:
        while not self.stop.is_set():
            item = tool_item_pb2.ToolItem(name=f"item {self.written}", tool_type=tool_item_pb2.TOOL_TYPE_OTHER)
            self._stub.CreateToolItem(tool_item_pb2.CreateToolItemRequest(tool_item=item), metadata=self._auth)
            with self._progress:
                self.written += 1
                self._progress.notify_all()

    def wait_for(self, count: int) -> int:
        with self._progress:
            assert self._progress.wait_for(lambda: self.written >= count or not self.is_alive(), timeout=120)
            assert self.is_alive(), "the writer died"
            return self.written


def _items(db: Path) -> int:
    with closing(sqlite3.connect(db)) as conn:  # closed now: an open connection would make restore refuse
        return int(conn.execute("SELECT count(*) FROM tool_items").fetchone()[0])


def test_backup_while_the_agent_writes_then_restore(tmp_path: Path) -> None:
    db = tmp_path / "edge.db"
    assert _cli("migrate", "--db", str(db)).returncode == 0
    created = _cli("user", "create", "--db", str(db), "--email", "ops@shop.example", "--admin")
    key = created.stdout.strip().splitlines()[-1]
    backups = tmp_path / "backups"
    backups.mkdir()
    log = tmp_path / "agent.log"
    with _agent(db, log) as channel:
        writer = _Writer(channel, key)
        writer.start()
        before = writer.wait_for(20)
        taken = _cli("backup", "--db", str(db), str(backups))
        after = writer.wait_for(writer.written + 20)  # the agent went on writing after the copy
        writer.stop.set()
        writer.join(timeout=60)
        assert taken.returncode == 0, taken.stderr
        (copy,) = backups.glob("edge-*.db")
        assert taken.stdout.startswith(f"backed up to {copy} (")
        assert not list(backups.glob("*.partial")) and not list(backups.glob("*-wal"))
        # Running: a restore is refused and changes nothing.
        refused = _cli("restore", "--db", str(db), str(copy))
        assert refused.returncode == 2 and "is in use (is the agent running?)" in refused.stderr
        # A backup never overwrites.
        again = _cli("backup", "--db", str(db), str(copy))
        assert again.returncode == 2 and "a backup never overwrites" in again.stderr
    written = writer.written

    # The copy is the database as of one commit: at head, the audit chain intact, every item with its change.
    assert check(copy) == head_revision()
    verified = _cli("audit", "verify", "--db", str(copy))
    assert verified.returncode == 0 and "audit log intact" in verified.stdout, verified.stdout + verified.stderr
    in_copy = _items(copy)
    with closing(sqlite3.connect(copy)) as conn:
        without_change = conn.execute(
            "SELECT count(*) FROM tool_items t WHERE NOT EXISTS "
            "(SELECT 1 FROM changes c WHERE c.entity_id = t.id AND c.entity_type = 'tool_item')"
        ).fetchone()[0]
    assert before <= in_copy <= after and without_change == 0
    assert _items(db) == written

    restored = _cli("restore", "--db", str(db), str(copy))
    assert restored.returncode == 0, restored.stderr
    (kept,) = tmp_path.glob("edge.before-restore-*.db")
    assert f"the store as it was before is kept in {kept}" in restored.stdout
    assert _items(kept) == written and _items(db) == in_copy
    with _agent(db, log) as channel:  # the agent serves the restored store
        page = tool_item_pb2_grpc.ToolItemServiceStub(channel).ListToolItems(
            tool_item_pb2.ListToolItemsRequest(page_size=1000), metadata=[("authorization", f"Bearer {key}")]
        )
        assert len(page.tool_items) == in_copy


def test_refusals_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(BackupError, match="not a SQLite file: back up PostgreSQL"):
        backup("postgresql+asyncpg://u@h/db", tmp_path)
    with pytest.raises(BackupError, match="there is no database at"):
        backup(str(tmp_path / "missing.db"), tmp_path)
    plain = tmp_path / "plain.db"
    sqlite3.connect(plain).close()
    with pytest.raises(BackupError, match="not a smooth-edge database"):
        restore(plain, str(tmp_path / "edge.db"))
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    with pytest.raises(BackupError, match="cannot be read as a SQLite database"):
        restore(garbage, str(tmp_path / "edge.db"))
    assert not (tmp_path / "edge.db").exists()
