"""deploy/smooth-edge.service (issue 14, item 4): it migrates with the configuration file before it serves from it,
keeps its hardening, and systemd accepts it (`systemd-analyze verify`, where systemd is installed)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "deploy" / "smooth-edge.service"
INSTALLED = "/opt/smooth-edge/bin/smooth-edge"
CONFIG = "/etc/smooth-edge/smooth-edge.toml"


def _directives(text: str) -> dict[str, list[str]]:
    """Key -> every value it is given (systemd allows a key more than once), comments and sections left out."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def test_the_unit_migrates_then_serves_from_the_config_file() -> None:
    unit = _directives(UNIT.read_text())
    assert unit["ExecStartPre"] == [f"{INSTALLED} migrate --config {CONFIG}"]
    assert unit["ExecStart"] == [f"{INSTALLED} serve --config {CONFIG}"]
    assert unit["StateDirectory"] == ["smooth-edge"]  # /var/lib/smooth-edge, where [database] url points
    assert unit["ConfigurationDirectory"] == ["smooth-edge"]  # /etc/smooth-edge
    assert unit["EnvironmentFile"] == ["-/etc/smooth-edge/smooth-edge.env"]  # the sync key, never in the TOML
    assert unit["Restart"] == ["on-failure"] and unit["KillSignal"] == ["SIGTERM"]
    hardening = {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
    }
    assert {key: unit.get(key, [""])[-1] for key in hardening} == hardening


def _verify(unit: Path) -> tuple[int, list[str]]:
    """`systemd-analyze verify` on `unit`: its exit code and what it said about that unit."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (no systemd on this machine): the unit is verified where it is")
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=120)
    said = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    return result.returncode, said


def _installed_copy(tmp_path: Path, text: str) -> Path:
    """The unit with its binary where this test's environment has it, so systemd can resolve the command."""
    binary = Path(sys.executable).parent / "smooth-edge"
    assert binary.is_file(), f"{binary}: install the project (pip install -e .) first"
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(binary)))
    return copy


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    code, said = _verify(_installed_copy(tmp_path, UNIT.read_text()))
    assert code == 0 and not said, "\n".join(said)


def test_systemd_analyze_verify_catches_a_typo(tmp_path: Path) -> None:
    """The check above has teeth: a misspelt hardening key is reported (systemd would ignore it silently)."""
    typo = UNIT.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
    code, said = _verify(_installed_copy(tmp_path, typo))
    assert any("NoNewPrivilege" in line for line in said), said
    missing = tmp_path / "missing"
    missing.mkdir()
    broken = missing / UNIT.name
    broken.write_text(UNIT.read_text())  # /opt/smooth-edge/bin/smooth-edge is not installed here
    code, said = _verify(broken)
    if not Path(INSTALLED).exists():
        assert code != 0 and any("not executable" in line for line in said), said
