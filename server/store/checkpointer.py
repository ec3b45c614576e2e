"""SQLite's WAL checkpoints, taken off the event loop (issue 11).

With SQLite's automatic checkpoint, the commit that takes the write-ahead log past 1,000 pages copies them into the
database file and fsyncs both, on the committing connection: inline on the event loop (server/store/inline.py), so
every call in flight waited for the disk (Create's p99). The store's own connections therefore run with
`wal_autocheckpoint=0`, and this thread checkpoints instead, on its own connection, every `interval_s` while
anything was committed since the last one. A PASSIVE checkpoint waits for no reader and no writer: it copies what
no open read still needs. Under steady writes the log is never all copied when the next writer begins, so it would
never restart from its beginning and would grow without end: past `RESTART_FRAMES` a RESTART checkpoint follows,
which holds new writers back (waiting at most `RESTART_WAIT_MS` for the current writer and the reads still on the
log) while it copies the few pages the PASSIVE one left, so the next writer starts the log afresh. Writers wait for
it without blocking the loop (Store._begin_immediate).

Durability is as documented for synchronous=NORMAL: a commit survives the process being killed; the log is fsynced
when a checkpoint copies it, so a power cut may undo what was committed since then (with writes going on, about
`interval_s`, 0.25 s, where the automatic checkpoint left up to 1,000 pages of commits unsynced).
A failing checkpoint is logged with its traceback and retried at the next interval; commits carry on meanwhile
(the log grows until one succeeds, and the health probe's write sees a full disk).
"""

from __future__ import annotations

import sqlite3
import threading

import structlog

log = structlog.get_logger("smooth_edge.store")

CHECKPOINT_INTERVAL_S = 0.25
RESTART_FRAMES = 1_000  # log pages (4 KiB) past which the log is restarted: SQLite's own automatic threshold
RESTART_WAIT_MS = 100  # how long a RESTART checkpoint waits for the writer and the reads still on the log


class Checkpointer:
    """A daemon thread running `PRAGMA wal_checkpoint(PASSIVE)` on `path` after commits (`committed()` tells it
    one happened; cheap enough to call after every commit)."""

    def __init__(self, path: str, *, interval_s: float | None = None) -> None:
        self._path = path
        self._interval_s = CHECKPOINT_INTERVAL_S if interval_s is None else interval_s
        self._dirty = False  # set by committed() on the loop's thread; read and cleared here (a bool: atomic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self.checkpoints = 0  # checkpoints taken (tests, diagnostics)
        self.restarts = 0  # of which restarted the log

    def start(self) -> None:
        self._thread.start()

    def committed(self) -> None:
        self._dirty = True

    def stop(self) -> None:
        """Stop the thread after a last checkpoint of what was committed (called when the store closes)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                stopping = self._stop.wait(self._interval_s)
                if self._dirty:
                    self._dirty = False
                    try:
                        if conn is None:
                            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
                            conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
                        self._checkpoint(conn)
                    except sqlite3.Error:
                        # Not fatal to the writes (they go on into the log); loud, and tried again next time.
                        log.exception("store.checkpoint_failed", path=self._path, retry_in_s=self._interval_s)
                        self._dirty = True
                        if conn is not None:
                            conn.close()
                            conn = None
                if stopping:
                    return
        finally:
            if conn is not None:
                conn.close()

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        if frames > RESTART_FRAMES:
            busy, _frames, _copied = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
            if busy:  # a read kept it from finishing: tried again at the next interval
                self._dirty = True
            else:
                self.restarts += 1
