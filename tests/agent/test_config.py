"""The collector configuration: a valid file parses into frozen objects; every mistake is reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_collector_config, parse_collector_config


def test_valid_file(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    (tmp_path / "k.pem").write_text("x")
    path = tmp_path / "agent.toml"
    path.write_text(
        '[[machines]]\nmachine_id = "MILL-01"\nendpoint = "opc.tcp://10.1.2.3:4840"\nprofile = "cnc"\n'
        'channel = "Channel2"\n[machines.security]\nmode = "SignAndEncrypt"\ncertificate = "c.pem"\n'
        'private_key = "k.pem"\nusername = "u"\npassword_env = "PW"\n'
        '[[machines]]\nmachine_id = "LATHE-7"\nendpoint = "opc.tcp://h:4840"\nprofile = "custom"\n'
        '[machines.nodes]\ntool = "nsu=urn:x;s=T"\n'
    )
    config = load_collector_config(path, environ={"PW": "secret"})
    first, second = config.machines
    assert (first.machine_id, first.channel, first.security.mode, first.security.password) == (
        "MILL-01",
        "Channel2",
        "SignAndEncrypt",
        "secret",
    )
    assert first.security.certificate == tmp_path / "c.pem"
    assert second.nodes == {"tool": "nsu=urn:x;s=T"} and second.publishing_interval_ms == 250
    assert "secret" not in repr(first)


def test_every_problem_is_reported() -> None:
    with pytest.raises(ConfigError) as err:
        parse_collector_config(
            {
                "machines": [
                    {"machine_id": "A", "endpoint": "http://x", "profile": "fanuc", "colour": "red"},
                    {"machine_id": "A", "endpoint": "opc.tcp://x", "profile": "custom", "watchdog_s": 0},
                    {"endpoint": "opc.tcp://x", "profile": "cnc", "security": {"mode": "Sign", "password_env": "NOPE"}},
                    {"machine_id": "S", "endpoint": "opc.tcp://y", "profile": "sinumerik", "spindle": "Spindle1"},
                ]
            },
            environ={},
        )
    text = str(err.value)
    for expected in (
        "unknown key 'colour'",
        "opc.tcp://",
        "profile must be one of",
        "used twice",
        "needs at least nodes.tool",
        "watchdog_s must be",
        "machine_id is required",
        "needs certificate and private_key",
        "NOPE, which is not set",
        "spindle must be a number >= 1 for the sinumerik profile",
    ):
        assert expected in text, expected
    assert len(err.value.problems) >= 10


def test_umati_machine_keys_are_checked_when_the_config_is_loaded() -> None:
    def machine(machine_id: str, profile: str, endpoint: str = "opc.tcp://a:4840", **extra: str) -> dict[str, str]:
        return {"machine_id": machine_id, "endpoint": endpoint, "profile": profile, **extra}

    with pytest.raises(ConfigError) as err:
        parse_collector_config(
            {
                "machines": [
                    machine("U1", "umati"),
                    machine("U2", "umati"),  # both would read the only machine of one server
                    machine("U3", "umati", machine="MT"),
                    machine("U4", "umati", machine="MT"),
                    machine("C1", "cnc", machine="MT"),
                ]
            }
        )
    assert err.value.problems == [
        "C1: machine names a umati machine; profile cnc does not use it",
        'U1, U2: all read the only machine (no machine key) at opc.tcp://a:4840; give each its own machine = "<browse name>"',
        "U3, U4: all read the machine 'MT' at opc.tcp://a:4840; give each its own machine = \"<browse name>\"",
    ]
    fine = parse_collector_config(
        {
            "machines": [
                machine("U1", "umati"),
                machine("U2", "umati", "opc.tcp://b:4840"),
                machine("U3", "umati", machine="X"),
            ]
        }
    )
    assert [m.machine for m in fine.machines] == ["", "", "X"]
    assert {m.reconnect_max_s for m in fine.machines} == {5.0}  # a restarted controller is seen within 5 s


def test_tracker_caps_program_names_and_keeps_stays_apart() -> None:
    from datetime import UTC, datetime

    from agent.collector.tracker import Tracker

    t = Tracker("M")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    t.program("P" * 500, at)
    first = t.tool(1, at)
    assert len(t.state.program) == 200 and first
    # A second stay of the same tool at the same (coarse) instant gets its own id.
    t.tool(0, at)
    second = t.tool(1, at)
    assert first[0].usage_id != second[0].usage_id  # type: ignore[union-attr]
