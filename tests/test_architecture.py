"""Layers import downward only, and transport/storage libraries stay in the layer that owns them
(../shared/STYLE.md guidelines 2 and 3)."""

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
    ),
    "server/validation": ("server.store", "server.usecases", "server.api", "agent", "sqlalchemy", "grpc", "smooth"),
    "server/store": ("server.usecases", "server.api", "agent", "grpc", "google.protobuf", "smooth", "asyncua"),
    "server/usecases": ("server.api", "agent", "sqlalchemy", "grpc", "google.protobuf", "smooth", "asyncua"),
    "server/api": ("agent", "sqlalchemy", "asyncua"),
}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if any(name == p or name.startswith(p + ".") for p in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "\n".join(bad)
