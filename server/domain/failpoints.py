"""Fault injection for the crash and supervision tests: at a named point the process kills itself with SIGKILL
(`name`), or the code there raises InjectedFault (`name=raise`: an unexpected error, as a bug would raise).

Armed once at the edge of the program (`smooth-edge` reads SMOOTH_EDGE_FAILPOINTS, comma-separated), or by a test;
never armed in normal operation. Each point fires at most once per process.
"""

from __future__ import annotations

import os
import signal

_armed: dict[str, str] = {}  # point -> "kill" or "raise"


class InjectedFault(RuntimeError):
    """Raised at an armed `name=raise` point."""


def arm(names: str) -> None:
    for entry in names.split(","):
        name, _, action = entry.strip().partition("=")
        if name:
            _armed[name] = action or "kill"


def disarm(name: str) -> None:
    """(Tests: a point their run did not reach must not fire in the next test.)"""
    _armed.pop(name, None)


def hit(name: str) -> None:
    action = _armed.pop(name, None)
    if action == "raise":
        raise InjectedFault(f"fault injected at {name} (SMOOTH_EDGE_FAILPOINTS)")
    if action is not None:
        os.kill(os.getpid(), signal.SIGKILL)
