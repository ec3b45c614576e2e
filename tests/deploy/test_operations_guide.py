"""docs/operations.md stays true: every log event it tells operators to look for is one the code logs, every
command it gives exists, and deploy/upgrade.sh takes the upgrade's steps in the documented order."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = (ROOT / "docs" / "operations.md").read_text()
UPGRADE = ROOT / "deploy" / "upgrade.sh"
EVENT_PREFIXES = ("agent", "collector", "replicator", "store", "migrate", "health", "metrics", "asyncua", "rpc")


def _sources() -> str:
    return "\n".join(p.read_text() for d in ("agent", "server") for p in sorted((ROOT / d).rglob("*.py")))


def test_every_log_event_named_in_the_guide_is_logged() -> None:
    named = set(re.findall(rf"`((?:{'|'.join(EVENT_PREFIXES)})\.[a-z_]+(?:\.[a-z_]+)?)`", GUIDE))
    assert {
        "collector.disconnected",
        "collector.timestamp_ahead",
        "store.database_error",
        "replicator.retrying",
    } <= named
    code = _sources()
    # Events named from parts: "collector.usage_" + ("closed" | "opened") (agent/collector/session.py), and the
    # supervisor's f"{component}.crashed" / f"{component}.restarted" for the components it is given by name.
    code += '\n"collector.usage_closed" "collector.usage_opened"'
    if 'f"{component}.crashed"' in code and 'f"{component}.restarted"' in code:
        components = re.findall(r'(?:restarting|spawner|watch)\("([a-z]+)"', code)
        code += "".join(f' "{c}.crashed" "{c}.restarted"' for c in components)
    missing = sorted(event for event in named if f'"{event}"' not in code)
    assert not missing, f"docs/operations.md names log events the code never logs: {missing}"


def test_every_smooth_edge_command_in_the_guide_exists() -> None:
    code = "\n".join(re.findall(r"```sh\n(.*?)```", GUIDE, re.S) + re.findall(r"`([^`\n]+)`", GUIDE))
    # (`docker run ... smooth-edge migrate`: the image's name, then the command; `/CN=smooth-edge collector`)
    commands = set(re.findall(r"(?=\bsmooth-edge ([a-z][a-z-]+))", code)) - {"smooth-edge", "collector"}
    assert {"serve", "central", "migrate", "backup", "restore", "health", "check-config"} <= commands
    helped = subprocess.run([sys.executable, "-m", "agent.cli", "--help"], capture_output=True, text=True, timeout=120)
    listed = {name for group in re.findall(r"\{([a-z,-]+)\}", helped.stdout) for name in group.split(",")}
    assert "serve" in listed, helped.stdout
    assert commands <= listed, f"not commands of smooth-edge: {sorted(commands - listed)}"


def test_upgrade_script_backs_up_stops_installs_checks_starts_in_that_order() -> None:
    checked = subprocess.run(["sh", "-n", str(UPGRADE)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stderr
    text = UPGRADE.read_text()
    steps = [
        '"$cli" backup --db "$db" "$backups"',
        'systemctl stop "$unit"',
        '"$venv/bin/pip" install --quiet --upgrade "$new"',
        '"$cli" check-config "$config" --role edge',
        'systemctl start "$unit"',
        '"$cli" health --target "$target"',
    ]
    positions = [text.index(step) for step in steps]
    assert positions == sorted(positions)
    assert text.startswith("#!/bin/sh\n") and "set -eu" in text and "trap roll_back_hint EXIT" in text
    # The backup's path is read from what `smooth-edge backup` prints (agent/backup.py: run_command).
    assert "backed up to " in (ROOT / "agent" / "backup.py").read_text()


def test_the_metrics_and_health_services_named_are_the_agents() -> None:
    """Names the guide tells operators to alert on are in docs/metrics.md, which is generated from the code."""
    reference = (ROOT / "docs" / "metrics.md").read_text()
    metrics = set(re.findall(r"`(smooth_edge_[a-z_]+)", GUIDE))
    services = set(re.findall(r"`(smooth\.edge\.[a-z.]+)(?:<machine_id>)?`", GUIDE))
    assert {"smooth_edge_replication_lag_seconds", "smooth_edge_database_size_bytes"} <= metrics
    assert {"smooth.edge.database", "smooth.edge.replication", "smooth.edge.collector."} <= services
    assert not sorted(m for m in metrics if f"`{m}`" not in reference)
    assert not sorted(s for s in services if f'`"{s}' not in reference)


def test_every_relative_link_resolves() -> None:
    for page in (ROOT / "docs" / "operations.md", ROOT / "deploy" / "README.md"):
        links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text())
        assert links, page
        missing = [link for link in links if not (page.parent / link).exists()]
        assert not missing, f"{page.relative_to(ROOT)} links to files that do not exist: {missing}"
