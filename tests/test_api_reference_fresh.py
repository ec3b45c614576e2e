"""docs/api.md is exactly what `python protos/api_reference.py` renders from whatever is in protos/ now."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_is_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "api.md"
    subprocess.run([sys.executable, str(ROOT / "protos" / "api_reference.py"), "--out", str(fresh)], check=True)
    committed = ROOT / "docs" / "api.md"
    assert committed.exists(), "docs/api.md is missing: run `python protos/api_reference.py` and commit it"
    assert fresh.read_text() == committed.read_text(), (
        "docs/api.md is stale: run `python protos/api_reference.py` and commit the result"
    )


def test_every_service_and_method_is_documented() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    for proto in sorted((ROOT / "protos" / "smooth" / "core" / "v1").glob("*.proto")):
        for line in proto.read_text().splitlines():
            words = line.split()
            if words[:1] == ["service"]:
                assert f"### service {words[1]}" in text
            if words[:1] == ["rpc"]:
                assert f"| `{words[1].split('(')[0]}` |" in text
