"""docs/configuration.md is exactly what `python -m agent.config.reference` renders from the configuration model,
and the annotated example deploy/smooth-edge.toml shows every section and key of it."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from agent.config.load import setting_paths
from agent.config.machines import SECURITY_ALIASES, MachineConfig, SecurityConfig

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "smooth-edge.toml"


def test_configuration_reference_is_fresh(tmp_path: Path) -> None:
    fresh = tmp_path / "configuration.md"
    subprocess.run([sys.executable, "-m", "agent.config.reference", "--out", str(fresh)], check=True, cwd=ROOT)
    committed = ROOT / "docs" / "configuration.md"
    assert committed.exists(), "docs/configuration.md is missing: run `python -m agent.config.reference` and commit it"
    assert fresh.read_text() == committed.read_text(), (
        "docs/configuration.md is stale: run `python -m agent.config.reference` and commit the result"
    )


def test_the_reference_documents_every_key() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    for path, f, _ in setting_paths():
        section = path.rsplit(".", 1)[0]
        assert f"## [{section}]" in text and f"| `{f.name}` |" in text, path
    for f in [*dataclasses.fields(MachineConfig), *dataclasses.fields(SecurityConfig)]:
        assert f"| `{f.name}` |" in text or f.name == "security", f.name


def test_the_example_shows_every_section_and_key() -> None:
    text = EXAMPLE.read_text()
    # every key, set or commented out: `key = ...` or `# key = ...` under its section's header
    headers = [(m.start(), m.group(1)) for m in re.finditer(r"^#? ?\[\[?([\w.]+)\]\]?", text, re.M)]

    def keys_of(section: str) -> set[str]:
        keys: set[str] = set()
        for i, (start, name) in enumerate(headers):
            if name == section:
                end = headers[i + 1][0] if i + 1 < len(headers) else len(text)
                keys |= set(re.findall(r"^#? ?(\w+) = ", text[start:end], re.M))
        return keys

    for path, _, _ in setting_paths():
        section, key = path.rsplit(".", 1)
        assert key in keys_of(section), f"deploy/smooth-edge.toml lacks {path}"
    machine_keys = {f.name for f in dataclasses.fields(MachineConfig)} - {"security", "nodes"}
    assert machine_keys <= keys_of("machines")
    security_keys = {f.name for f in dataclasses.fields(SecurityConfig)} | set(SECURITY_ALIASES)
    assert security_keys - {"password"} <= keys_of("machines.security")
    assert "tool" in keys_of("machines.nodes")
    tomllib.loads(text)  # and it parses (check-config runs on it in tests/agent/test_cli.py)
