"""What the benchmarks share: stopping child processes, free ports, the smooth-edge command, log tails."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path


def stop_process(name: str, proc: subprocess.Popen[bytes], grace_s: float, progress: Callable[[str], None]) -> None:
    """SIGTERM, then SIGKILL after `grace_s`; closing stdin first also tells children that watch it to exit."""
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()
    if proc.poll() is not None:
        return
    progress(f"stopping {name} (pid {proc.pid})")
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        progress(f"{name} ignored SIGTERM for {grace_s:g}s; killing it")
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


def log_tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def free_port() -> int:
    # The children do not report the port they bound at --log-level WARNING, so choose one here; the window
    # between close() and the child's bind is tiny on a bench machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def smooth_edge_command() -> list[str]:
    # The console script of the interpreter running the bench (the project venv) is the agent as deployed.
    script = Path(sys.executable).parent / "smooth-edge"
    if script.exists():
        return [str(script)]
    found = shutil.which("smooth-edge")
    return [found] if found else [sys.executable, "-m", "agent.cli"]


class Processes:
    """Child processes, stopped in reverse start order on exit: SIGTERM, then SIGKILL after a grace period."""

    def __init__(self, grace_s: float, progress: Callable[[str], None]) -> None:
        self._grace_s = grace_s
        self._progress = progress
        self._children: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        log: Path,
        *,
        stdin: int = subprocess.DEVNULL,
        stdout: int = subprocess.DEVNULL,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as log_file:  # the child keeps its own copy of the descriptor
            # A new session keeps the terminal's Ctrl-C away from the children: the bench stops them itself, in
            # order, instead of racing their own SIGINT handling.
            proc = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=stdout,
                stderr=log_file,
                env=env,
                start_new_session=True,
                cwd=Path.cwd(),
            )
        self._children.append((name, proc))
        return proc

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc_info: object) -> None:
        for name, proc in reversed(self._children):
            stop_process(name, proc, self._grace_s, self._progress)
        self._children.clear()

    def stop(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop one child now (the others keep running)."""
        for name, child in self._children:
            if child is proc:
                stop_process(name, child, self._grace_s, self._progress)
        self._children = [(name, child) for name, child in self._children if child is not proc]
