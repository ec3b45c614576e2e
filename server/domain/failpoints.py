"""Crash points for the kill -9 tests: at a named point the process kills itself with SIGKILL.

Armed once at the edge of the program (`smooth-edge` reads SMOOTH_EDGE_FAILPOINTS, comma-separated names);
never armed in normal operation. Each point fires at most once per process.
"""

from __future__ import annotations

import os
import signal

_armed: set[str] = set()


def arm(names: str) -> None:
    _armed.update(n.strip() for n in names.split(",") if n.strip())


def hit(name: str) -> None:
    if name in _armed:
        _armed.discard(name)
        os.kill(os.getpid(), signal.SIGKILL)
