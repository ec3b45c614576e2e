"""Layers import downward only, and transport/storage libraries stay in the layer that owns them
(../shared/STYLE.md guidelines 2 and 3). Only the composition roots, listed in ALLOWED, wire across layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> prefixes it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "server/domain": (
        "server.validation",
        "server.store",
        "server.usecases",
        "server.api",
        "agent",
        "sqlalchemy",
        "grpc",
        "google.protobuf",
        "smooth",
        "asyncua",
        "prometheus_client",
    ),
    "server/validation": ("server.store", "server.usecases", "server.api", "agent", "sqlalchemy", "grpc", "smooth"),
    "server/store": (
        "server.usecases",
        "server.api",
        "agent",
        "grpc",
        "google.protobuf",
        "smooth",
        "asyncua",
        "prometheus_client",
    ),
    "server/usecases": (
        "server.store",
        "server.api",
        "agent",
        "sqlalchemy",
        "grpc",
        "google.protobuf",
        "smooth",
        "asyncua",
        "prometheus_client",
    ),
    # Metrics reach the API through a hook (interceptors.RpcObserver): prometheus_client stays in agent/metrics.py.
    "server/api": ("server.store", "agent", "sqlalchemy", "asyncua", "prometheus_client"),
    # The contract's codec (proto <-> domain), shared by central's API and the edge's client: nothing else.
    "server/wire.py": ("server.validation", "server.store", "server.usecases", "server.api", "agent", "sqlalchemy"),
    # The agent calls use cases; the replicator reaches its store and central through its own ports
    # (agent/replicator/ports.py, central_client.py).
    "agent": ("server.store", "server.api", "prometheus_client"),
}

# module -> prefixes it may import although its package must not: the composition roots, which wire the layers
ALLOWED: dict[str, tuple[str, ...]] = {
    "agent/runtime.py": ("server.store", "server.api"),  # opens the store, serves the API, wires the replicator
    "agent/cli.py": ("server.store", "server.api"),  # `migrate` and `user` open the store; TLS settings for serve
    "agent/demo.py": ("server.api",),  # serves the API in process beside the simulator and collector
    "agent/metrics.py": ("prometheus_client",),  # the one module that knows Prometheus
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports(package: str) -> None:
    bad = []
    root = ROOT / package
    for path in [root] if root.is_file() else sorted(root.rglob("*.py")):
        allowed = ALLOWED.get(path.relative_to(ROOT).as_posix(), ())
        for name in _imports(path):
            if _matches(name, FORBIDDEN[package]) and not _matches(name, allowed):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("module", sorted(ALLOWED))
def test_every_exception_is_still_needed(module: str) -> None:
    """An exception nobody uses any more is removed, so the list stays the truth."""
    names = _imports(ROOT / module)
    unused = [p for p in ALLOWED[module] if not any(_matches(n, (p,)) for n in names)]
    assert not unused, f"{module} no longer imports {unused}: remove them from ALLOWED"
