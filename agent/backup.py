"""Backup and restore of the edge's SQLite store with SQLite's online backup API (issue 14, item 4).

A backup is taken while the agent runs and writes: one read transaction copies every page, so the copy is the
database as of one commit. It is checked (integrity, schema revision) before it gets its final name. A restore
writes a checked backup into the store through the same API, only while no process has the store open.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import make_url

# As the agent's own connections: a backup waits this long for a checkpoint or recovery in progress.
BUSY_TIMEOUT_S = 10.0


class BackupError(Exception):
    """A backup or restore that cannot be done; the message says what to do instead."""


@dataclass(frozen=True, slots=True)
class BackupInfo:
    path: Path
    revision: str  # the schema revision (alembic) of the copy
    size_bytes: int
    kept: Path | None = None  # restore: where the store as it was before is kept


def sqlite_file(db: str) -> Path:
    """The SQLite file behind `--db` (a path or a sqlite URL); a PostgreSQL store is backed up with its own tools."""
    if "://" not in db:
        return Path(db).expanduser().resolve()
    url = make_url(db)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        raise BackupError(
            f"{url.render_as_string(hide_password=True)} is not a SQLite file: back up PostgreSQL (central) with "
            "pg_dump or its continuous archiving, not with smooth-edge backup"
        )
    return Path(url.database)


def backup_target(target: Path, source: Path, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Path:
    """A directory gets a time-stamped file named after the store (`edge-20261201T113000Z.db`)."""
    if target.is_dir():
        return target / f"{source.stem}-{now():%Y%m%dT%H%M%SZ}.db"
    return target


def backup(db: str, target: Path) -> BackupInfo:
    """Copy the store at `db` to `target` (a new file, or a directory) while the agent may be writing to it."""
    source = sqlite_file(db)
    if not source.is_file():
        raise BackupError(f"there is no database at {source}: check --db (the agent's store file)")
    final = backup_target(target, source)
    src = sqlite3.connect(source, isolation_level=None, timeout=BUSY_TIMEOUT_S)
    try:
        return _copy_to_new_file(src, final)
    finally:
        src.close()


def restore(backup_file: Path, db: str, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> BackupInfo:
    """Write `backup_file` into the store at `db`, keeping the store as it was beside it first. Refused while
    any process (the agent) has the store open."""
    if not backup_file.is_file():
        raise BackupError(f"there is no backup at {backup_file}")
    revision = check(backup_file)
    target = sqlite_file(db)
    had_data = target.is_file() and target.stat().st_size > 0
    dst = sqlite3.connect(target, isolation_level=None, timeout=0)
    try:
        # An exclusive lock, held until this connection closes, is refused while another connection has the
        # file open in WAL mode (even idle): restoring under a running agent would leave it serving what it
        # cached from the old file and replicating from the wrong position.
        dst.execute("PRAGMA locking_mode=EXCLUSIVE")
        try:
            dst.execute("BEGIN EXCLUSIVE")
            dst.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            raise BackupError(
                f"{target} is in use (is the agent running?): stop it (systemctl stop smooth-edge), then restore"
            ) from exc
        kept = None
        if had_data:
            kept = _copy_to_new_file(dst, target.with_name(f"{target.stem}.before-restore-{now():%Y%m%dT%H%M%SZ}.db"))
        src = sqlite3.connect(backup_file, isolation_level=None)
        try:
            src.backup(dst, pages=-1)
        finally:
            src.close()
    finally:
        dst.close()
    return BackupInfo(target, revision, target.stat().st_size, kept.path if kept is not None else None)


def _copy_to_new_file(src: sqlite3.Connection, final: Path) -> BackupInfo:
    """Copy the database of `src` to `final`, a file that must not exist yet: written beside it, checked, fsynced,
    then renamed, so `final` is only ever a complete, sound copy."""
    if final.exists():
        raise BackupError(f"{final} exists: give a new file name or a directory, a backup never overwrites")
    if not final.parent.is_dir():
        raise BackupError(f"the directory {final.parent} does not exist: create it first")
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)
    try:
        dst = sqlite3.connect(partial, isolation_level=None)
        try:
            # pages=-1: every page in one step, inside one read transaction. Writers go on (WAL), and the copy is
            # the database as of one commit; copying in several steps would restart at every commit in between.
            src.backup(dst, pages=-1)
            # One self-contained file (no -wal beside it); the agent turns WAL on again when it opens a restore.
            dst.execute("PRAGMA journal_mode=DELETE")
        finally:
            dst.close()
        revision = check(partial)
        _fsync(partial)
        os.replace(partial, final)
        _fsync(final.parent)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return BackupInfo(final, revision, final.stat().st_size)


def check(path: Path) -> str:
    """The schema revision of a sound smooth-edge database at `path`; BackupError when it is not one."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        problems = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        row = (
            conn.execute("SELECT version_num FROM alembic_version").fetchone() if "alembic_version" in tables else None
        )
    except sqlite3.DatabaseError as exc:  # not a database at all, or damaged beyond reading its schema
        raise BackupError(f"{path} cannot be read as a SQLite database ({exc}): use another backup") from exc
    finally:
        conn.close()
    if problems != ["ok"]:
        raise BackupError(f"{path} is damaged ({'; '.join(problems[:3])}): use another backup")
    if row is None:
        raise BackupError(f"{path} is not a smooth-edge database (no schema revision in it)")
    return str(row[0])


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], default_db: str) -> None:
    """`smooth-edge backup` and `smooth-edge restore`."""
    take = sub.add_parser("backup", help="copy the edge's SQLite store while the agent runs (online backup)")
    take.add_argument("--db", default=default_db, help="the store's SQLite file (default %(default)s)")
    take.add_argument("target", type=Path, help="a new file, or a directory to put a time-stamped copy in")
    put = sub.add_parser("restore", help="put a backup in place of the store (the agent stopped)")
    put.add_argument("--db", default=default_db, help="the store's SQLite file (default %(default)s)")
    put.add_argument("backup", type=Path, help="a file written by smooth-edge backup")


def run_command(args: argparse.Namespace) -> int:
    try:
        if args.command == "backup":
            info = backup(args.db, args.target)
            print(f"backed up to {info.path} ({info.size_bytes} bytes, schema revision {info.revision})")
        else:
            info = restore(args.backup, args.db)
            print(f"restored {args.backup} into {info.path} (schema revision {info.revision})")
            if info.kept is not None:
                print(f"the store as it was before is kept in {info.kept}")
            print("start the agent; if the backup is older than this version, run smooth-edge migrate first")
    except BackupError as err:
        print(f"smooth-edge: {err}", file=sys.stderr)
        return 2
    return 0
