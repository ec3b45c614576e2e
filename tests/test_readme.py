"""The README stays true: its field-limit table matches the entity declarations, and `.ci/run` runs the
README's test command verbatim."""

from __future__ import annotations

import re
from pathlib import Path

from server.domain.entities import TAG_MAX_LEN, TAGS_MAX_COUNT
from server.domain.registry import KINDS
from server.domain.schema import OUTPUT_ONLY, fields_of

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_limits_table_matches_the_entities() -> None:
    rows = set(re.findall(r"^\| (\w+) \| `(\w+)` \| ([^|]+) \| (yes)? ?\|$", README, re.M))
    table = {(label, name): (limit.strip(), bool(req)) for label, name, limit, req in rows}
    for kind in KINDS.values():
        for f in fields_of(kind.cls):
            if f.name in OUTPUT_ONLY:
                continue
            assert (kind.label, f.name) in table, f"README lacks a limit row for {kind.label}.{f.name}"
            limit, required = table[(kind.label, f.name)]
            assert required == f.required, f"{kind.label}.{f.name}: required differs"
            if f.kind == "text":
                assert limit == f"{f.max_len} characters", f"{kind.label}.{f.name}: {limit}"
            if f.kind == "tags":
                assert limit.startswith(f"{TAGS_MAX_COUNT} tags of 1-{TAG_MAX_LEN} characters")


def test_ci_runs_the_readme_test_command() -> None:
    commands = re.findall(r"```sh\n(python3 -m venv[^\n]+)\n```", README)
    assert len(commands) == 2, "the README gives exactly two set-up commands"
    assert "smooth-edge demo" in commands[0]
    assert commands[1] in (ROOT / ".ci" / "run").read_text()
