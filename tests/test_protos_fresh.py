"""The committed generated code is exactly what `python protos/generate.py` produces from protos/."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "protos" / "gen" / "python" / "smooth" / "core" / "v1"


def test_generated_code_is_fresh(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "protos" / "generate.py"), "--out", str(tmp_path)], check=True)
    fresh = tmp_path / "smooth" / "core" / "v1"
    fresh_files = {p.name: p.read_bytes() for p in fresh.iterdir() if p.is_file()}
    committed_files = {p.name: p.read_bytes() for p in COMMITTED.iterdir() if p.is_file()}
    assert sorted(fresh_files) == sorted(committed_files), "files differ: run `python protos/generate.py`"
    stale = [name for name in fresh_files if fresh_files[name] != committed_files[name]]
    assert not stale, f"stale generated code {stale}: run `python protos/generate.py` and commit the result"
