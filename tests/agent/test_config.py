"""The configuration: a valid file parses into frozen objects; every mistake is reported at once with its path;
defaults -> file -> environment -> flags."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, Flag, load_config, parse_collector_config


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
    config = load_config(path, environ={"PW": "secret"})
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
        "machines[0].colour: unknown key",
        "machines[0].endpoint: must be an opc.tcp:// URL, not 'http://x'",
        "machines[0].profile: must be one of",
        "machines[1].machine_id: 'A' is used twice",
        "machines[1].nodes: the custom profile needs at least nodes.tool",
        "machines[1].watchdog_s: must be at least 1",
        "machines[2].machine_id: is required",
        "machines[2].security.mode: Sign needs certificate and private_key",
        "machines[2].security.password_env: names NOPE, which is not set",
        "machines[3].spindle: must be a number >= 1 for the sinumerik profile",
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
        "machines[4].machine: names a umati machine; profile cnc (C1) does not use it",
        'machines[0], machines[1].machine: U1, U2 all read the only machine (no machine key) at opc.tcp://a:4840; give each its own machine = "<browse name>"',
        "machines[2], machines[3].machine: U3, U4 all read the machine 'MT' at opc.tcp://a:4840; give each its own machine = \"<browse name>\"",
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


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "smooth-edge.toml"
    path.write_text(text)
    return path


def test_without_a_file_the_defaults_serve_an_edge_or_a_central() -> None:
    edge = load_config(None, environ={})
    assert (edge.database.url, edge.server.listen, edge.server.auth, edge.server.reflection) == (
        "smooth-edge.db",
        "127.0.0.1:50051",
        True,
        "open",
    )
    assert edge.server.tls.cert is None and edge.replication.central == "" and edge.machines == ()
    assert (edge.logging.level, edge.logging.format, edge.logging.file, edge.metrics.listen) == (
        "INFO",
        "json",
        None,
        "",
    )
    assert (edge.health.collector_down_after_s, edge.health.central_unreachable_after_s) == (60.0, 300.0)
    central = load_config(None, role="central", environ={"SMOOTH_EDGE_DATABASE__URL": "postgresql://u@h/db"})
    assert central.server.listen == "0.0.0.0:50052" and central.role == "central"


def test_every_section_is_read_and_paths_are_taken_from_the_file(tmp_path: Path) -> None:
    for name in ("server.pem", "server-key.pem", "ca.pem", "central-ca.pem"):
        (tmp_path / name).write_text("x")
    path = _write(
        tmp_path,
        '[database]\nurl = "edge.db"\nauto_migrate = true\n'
        '[server]\nlisten = "[::]:6000"\nauth = false\nreflection = "off"\n'
        '[server.tls]\ncert = "server.pem"\nkey = "server-key.pem"\nclient_ca = "ca.pem"\n'
        '[replication]\ncentral = "central.example:50052"\nkey_env = "MY_SYNC_KEY"\nca = "central-ca.pem"\n'
        "batch_size = 500\ninterval_s = 2\n"
        '[logging]\nlevel = "debug"\nformat = "console"\nfile = "edge.log"\n'
        '[metrics]\nlisten = "0.0.0.0:9464"\n'
        "[health]\ncollector_down_after_s = 30\ncentral_unreachable_after_s = 120.5\n",
    )
    config = load_config(path, environ={"MY_SYNC_KEY": "sek_secret"})
    assert config.database.url == str(tmp_path / "edge.db") and config.database.auto_migrate
    assert (config.server.listen, config.server.auth, config.server.reflection) == ("[::]:6000", False, "off")
    assert config.server.tls.cert == tmp_path / "server.pem" and config.server.tls.client_ca == tmp_path / "ca.pem"
    replication = config.replication
    assert (replication.central, replication.key, replication.ca) == (
        "central.example:50052",
        "sek_secret",
        tmp_path / "central-ca.pem",
    )
    assert (replication.batch_size, replication.interval_s) == (500, 2.0)
    assert (config.logging.level, config.logging.format, config.logging.file) == (
        "DEBUG",
        "console",
        tmp_path / "edge.log",
    )
    assert config.metrics.listen == "0.0.0.0:9464"
    assert (config.health.collector_down_after_s, config.health.central_unreachable_after_s) == (30.0, 120.5)
    assert "sek_secret" not in repr(config)
    # A URL is taken as it is, not as a path beside the file.
    url = load_config(_write(tmp_path, '[database]\nurl = "postgresql+asyncpg://u@h/db"\n'), environ={})
    assert url.database.url == "postgresql+asyncpg://u@h/db"


def test_every_problem_of_every_section_is_listed_with_its_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[database]\nurl = 5\nauto_migrate = "yes"\n'
        '[server]\nlisten = "0.0.0.0"\nlsiten = "x"\nreflection = "maybe"\n'
        f'[server.tls]\ncert = "{tmp_path}/missing.pem"\n'
        '[replication]\ncentral = "c:50052"\nkey_env = "NOPE_KEY"\nbatch_size = -1\ninterval_s = nan\n'
        '[logging]\nlevel = "LOUD"\n'
        '[metrics]\nlisten = "9464"\n'
        "[health]\ncollector_down_after_s = -5\ncentral_unreachable_after_s = inf\n"
        "[colour]\nx = 1\n"
        '[[machines]]\nmachine_id = "A"\nendpoint = "http://x"\nprofile = "cnc"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.problems == [
        "colour: unknown section; known: database, server, replication, logging, metrics, health, machines",
        "database.url: must be a string, not an integer",
        "database.auto_migrate: must be true or false, not 'yes'",
        "server.lsiten: unknown key; known: listen, auth, reflection, tls",
        "server.listen: must be HOST:PORT (e.g. 0.0.0.0:50051), not '0.0.0.0'",
        "server.reflection: must be one of open, authenticated, off, not 'maybe'",
        f"server.tls.cert: file not found: {tmp_path}/missing.pem",
        "replication.batch_size: must be at least 1, not -1",
        "replication.interval_s: must be a finite number, not nan",
        "logging.level: must be one of DEBUG, INFO, WARNING, ERROR, not 'LOUD'",
        "metrics.listen: must be HOST:PORT (e.g. 0.0.0.0:50051), not '9464'",
        "health.collector_down_after_s: must be greater than 0, not -5.0",
        "health.central_unreachable_after_s: must be a finite number, not inf",
        "machines[0].endpoint: must be an opc.tcp:// URL, not 'http://x'",
        "replication.key_env: NOPE_KEY is not set; replication needs central's API key with the sync scope there "
        "(or replication.key, or --sync-key)",
    ]
    assert str(path) in str(err.value) and "15 problem(s)" in str(err.value)


def test_tls_keys_go_together_and_a_section_must_be_a_table(tmp_path: Path) -> None:
    (tmp_path / "s.pem").write_text("x")
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, 'logging = "loud"\n[server.tls]\ncert = "s.pem"\n'), environ={})
    assert err.value.problems == [
        "logging: must be a table ([logging])",
        "server.tls.key: server.tls.cert and server.tls.key go together",
    ]
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={}, flags={"server.tls.client_ca": Flag(tmp_path / "s.pem", "--tls-client-ca")})
    assert err.value.problems == ["server.tls.client_ca: mutual TLS needs server.tls.cert and server.tls.key too"]


def test_unreadable_or_broken_files_are_one_problem(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "absent.toml", environ={})
    assert err.value.problems == ["cannot read the file: No such file or directory"]
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, "[server\nlisten = 1\n"), environ={})
    assert len(err.value.problems) == 1 and err.value.problems[0].startswith("not valid TOML: ")


def test_the_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = _write(tmp_path, '[server]\nlisten = "127.0.0.1:7001"\nreflection = "off"\n[database]\nurl = "file.db"\n')
    env = {
        "SMOOTH_EDGE_SERVER__LISTEN": "127.0.0.1:7002",
        "SMOOTH_EDGE_SERVER__AUTH": "no",
        "SMOOTH_EDGE_DATABASE__AUTO_MIGRATE": "TRUE",
        "SMOOTH_EDGE_REPLICATION__BATCH_SIZE": "10",
        "SMOOTH_EDGE_HEALTH__COLLECTOR_DOWN_AFTER_S": "2.5",
        "SMOOTH_EDGE_METRICS__LISTEN": "127.0.0.1:9464",
        "SMOOTH_EDGE_SYNC_KEY": "not a setting",  # no double underscore: a secret variable, not a setting
        "SMOOTH_EDGE_LOOP": "asyncio",
    }
    config = load_config(path, environ=env)
    assert (config.server.listen, config.server.auth, config.server.reflection) == ("127.0.0.1:7002", False, "off")
    assert config.database.auto_migrate and config.database.url == str(tmp_path / "file.db")
    assert (config.replication.batch_size, config.health.collector_down_after_s) == (10, 2.5)
    assert config.metrics.listen == "127.0.0.1:9464"
    flagged = load_config(
        path,
        environ=env,
        flags={"server.listen": Flag("127.0.0.1:7003", "--listen"), "database.url": Flag("flag.db", "--db")},
    )
    assert flagged.server.listen == "127.0.0.1:7003"
    assert flagged.database.url == "flag.db"  # from the command line: relative to the working directory


def test_a_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    env = {
        "SMOOTH_EDGE_SERVER__AUTH": "maybe",
        "SMOOTH_EDGE_REPLICATION__BATCH_SIZE": "many",
        "SMOOTH_EDGE_HEALTH__CENTRAL_UNREACHABLE_AFTER_S": "nan",
        "SMOOTH_EDGE_SERVER__TLS__CERT": str(tmp_path / "nope.pem"),
        "SMOOTH_EDGE_SERVER__LISTN": "127.0.0.1:1",
        "SMOOTH_EDGE_MACHINES__0__ENDPOINT": "opc.tcp://x",
    }
    with pytest.raises(ConfigError) as err:
        load_config(None, environ=env, flags={"server.listen": Flag("nowhere", "--listen")})
    assert err.value.problems == [
        "server.listen (from --listen): must be HOST:PORT (e.g. 0.0.0.0:50051), not 'nowhere'",
        "server.auth (from SMOOTH_EDGE_SERVER__AUTH): must be true or false, not 'maybe'",
        f"server.tls.cert (from SMOOTH_EDGE_SERVER__TLS__CERT): file not found: {tmp_path}/nope.pem",
        "replication.batch_size (from SMOOTH_EDGE_REPLICATION__BATCH_SIZE): must be an integer, not 'many'",
        "health.central_unreachable_after_s (from SMOOTH_EDGE_HEALTH__CENTRAL_UNREACHABLE_AFTER_S): "
        "must be a finite number, not nan",
        "SMOOTH_EDGE_MACHINES__0__ENDPOINT: machines are set in the file ([[machines]]), not in the environment",
        "SMOOTH_EDGE_SERVER__LISTN: no setting server.listn; known: SMOOTH_EDGE_SERVER__AUTH, "
        "SMOOTH_EDGE_SERVER__LISTEN, SMOOTH_EDGE_SERVER__REFLECTION, SMOOTH_EDGE_SERVER__TLS__CERT, "
        "SMOOTH_EDGE_SERVER__TLS__CLIENT_CA, SMOOTH_EDGE_SERVER__TLS__KEY",
    ]


def test_replication_key_from_its_variable_or_a_flag(tmp_path: Path) -> None:
    path = _write(tmp_path, '[replication]\ncentral = "central:50052"\n')
    assert load_config(path, environ={"SMOOTH_EDGE_SYNC_KEY": "sek_a"}).replication.key == "sek_a"
    flagged = load_config(path, environ={}, flags={"replication.key": Flag("sek_b", "--sync-key")})
    assert flagged.replication.key == "sek_b"
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert err.value.problems[0].startswith("replication.key_env: SMOOTH_EDGE_SYNC_KEY is not set")
    assert load_config(path, environ={}, require_secrets=False).replication.key == ""  # `migrate --config`


def test_central_refuses_edge_only_sections(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[replication]\ncentral = "other:50052"\n'
        '[[machines]]\nmachine_id = "M"\nendpoint = "opc.tcp://m:4840"\nprofile = "cnc"\n',
    )
    with pytest.raises(ConfigError) as err:
        load_config(path, role="central", environ={})
    assert err.value.problems == [
        "database.url: central needs its database (postgresql+asyncpg://user@host/db): set it in the file, in "
        "SMOOTH_EDGE_DATABASE__URL or with --db",
        "replication.central: central does not replicate to another central; remove it, or run this file with "
        "`smooth-edge serve`",
        "machines: collectors run on an edge (`smooth-edge serve`), not on central",
    ]
