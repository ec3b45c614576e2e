"""deploy/Dockerfile and deploy/compose.yaml (issue 14, item 4), checked without a Docker engine: the image runs
as a non-root user with the store on a volume and a health check that is a real command; the compose topology
(PostgreSQL, central, an edge replicating to it, the CNC simulator) starts in order, migrates first, hands the
edge its sync key by environment and mounts files that exist. Where Docker's compose plugin is installed,
`docker compose config` validates the file too."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import subprocess
import sys
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import Edge, start_edge

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
CONFIG_DIR = DEPLOY / "compose"  # mounted at /etc/smooth-edge in every smooth-edge service
MOUNTED_AT = "/etc/smooth-edge"


def _compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(data, dict)
    return data


def _all_steps() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of deploy/Dockerfile, continuation lines joined, comments left out."""
    steps = []
    for line in (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            steps.append((word.upper(), rest.strip()))
    return steps


def _dockerfile() -> list[tuple[str, str]]:
    """The final stage: what the image runs."""
    steps = _all_steps()
    last_from = max(i for i, (word, _) in enumerate(steps) if word == "FROM")
    return steps[last_from:]


def _exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def _one(steps: list[tuple[str, str]], word: str) -> str:
    found = [args for w, args in steps if w == word]
    assert len(found) == 1, f"{word}: {found}"
    return found[0]


def _argv(service: dict[str, Any], image_entrypoint: list[str], image_cmd: list[str]) -> list[str]:
    """What a service runs: its entrypoint (or the image's) and its command (or the image's, unless the entrypoint
    was replaced: compose then drops the image's command)."""
    entrypoint = service.get("entrypoint", image_entrypoint)
    command = service.get("command", [] if "entrypoint" in service else image_cmd)
    assert isinstance(entrypoint, list) and isinstance(command, list), service
    return [*entrypoint, *command]


# --- the image ------------------------------------------------------------------------------------------------


def test_the_image_runs_as_a_user_with_the_store_on_a_volume() -> None:
    steps = _dockerfile()
    user = _one(steps, "USER").split(":")[0]
    assert user not in ("", "0", "root"), "the image must not run as root"
    assert user == "10001" and "--uid 10001" in _one(steps, "RUN")
    assert "/var/lib/smooth-edge" in _exec_form(_one(steps, "VOLUME"))
    assert _one(steps, "WORKDIR") == "/var/lib/smooth-edge"
    assert {"50051", "9464"} <= set(_one(steps, "EXPOSE").split())
    assert _exec_form(_one(steps, "ENTRYPOINT")) == ["smooth-edge"]
    assert _exec_form(_one(steps, "CMD")) == ["serve", "--config", "/etc/smooth-edge/smooth-edge.toml"]
    # The build copies what the package is built from, and each of those exists.
    build_copies = [args.split()[0] for word, args in _all_steps() if word == "COPY" and "--from" not in args]
    assert build_copies and all((ROOT / source).exists() for source in build_copies), build_copies
    assert {"server", "agent", "migrations", "protos", "pyproject.toml"} <= set(build_copies)


def _healthcheck_argv() -> list[str]:
    args = _one(_dockerfile(), "HEALTHCHECK")
    assert " CMD " in f" {args} ", args
    return _exec_form(args.split("CMD", 1)[1].strip())


@pytest.fixture
async def edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in start_edge(str(tmp_path / "edge.db")):
        yield e


async def _run(argv: list[str], target: str, address: str) -> subprocess.CompletedProcess[str]:
    """A health check command as the image runs it (`smooth-edge` is this environment's), pointed at `address`."""
    assert argv[0] == "smooth-edge" and target in argv, argv
    command = [sys.executable, "-m", "agent.cli", *(address if a == target else a for a in argv[1:])]
    return await asyncio.to_thread(subprocess.run, command, capture_output=True, text=True, timeout=120)


async def test_the_health_checks_are_real_commands(edge: Edge) -> None:
    """The image's HEALTHCHECK and central's in the compose file ask gRPC health, and pass on a serving agent."""
    image = await _run(_healthcheck_argv(), "127.0.0.1:50051", edge.address)
    assert image.returncode == 0 and "SERVING" in image.stdout, image.stderr
    central = _compose()["services"]["central"]["healthcheck"]["test"]
    assert central[0] == "CMD"
    done = await _run(central[1:], "127.0.0.1:50052", edge.address)
    assert done.returncode == 0 and "SERVING" in done.stdout, done.stderr


# --- the compose file -------------------------------------------------------------------------------------------


def _condition(service: dict[str, Any], other: str) -> str:
    depends = service.get("depends_on", {})
    assert isinstance(depends, dict), "depends_on with conditions (long form)"
    return str(depends.get(other, {}).get("condition", ""))


def test_the_topology_starts_in_order_and_migrates_first() -> None:
    services = _compose()["services"]
    assert {"postgres", "central-init", "central", "seed", "simulator", "edge"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:")
    assert _condition(services["central-init"], "postgres") == "service_healthy"
    assert _condition(services["central"], "central-init") == "service_completed_successfully"
    assert _condition(services["seed"], "central") == "service_healthy"
    assert _condition(services["edge"], "central") == "service_healthy"
    assert _condition(services["edge"], "central-init") == "service_completed_successfully"
    assert _condition(services["edge"], "simulator") == "service_healthy"
    for name in ("postgres", "central", "simulator"):
        check = services[name]["healthcheck"]
        assert check["test"][0] == "CMD" and not check.get("disable"), name
    assert "healthcheck" not in services["edge"], "the edge keeps the image's gRPC health check"
    # Migrations run before anything serves: central's in central-init, the edge's before its serve.
    init = (CONFIG_DIR / "central-init.sh").read_text()
    assert init.index("smooth-edge migrate --config") < init.index("smooth-edge user create")
    start = (CONFIG_DIR / "edge-start.sh").read_text()
    assert start.index("smooth-edge migrate --config") < start.index('exec smooth-edge serve --config "$config"')


def test_every_smooth_edge_service_runs_the_image_with_files_that_exist() -> None:
    compose = _compose()
    steps = _dockerfile()
    entrypoint, cmd = _exec_form(_one(steps, "ENTRYPOINT")), _exec_form(_one(steps, "CMD"))
    for name, service in compose["services"].items():
        if name == "postgres":
            continue
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}, name
        assert (COMPOSE_FILE.parent / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        assert f"./compose:{MOUNTED_AT}:ro" in service.get("volumes", []) or name == "simulator", name
        argv = _argv(service, entrypoint, cmd)
        referenced = [a for a in argv if a.startswith(f"{MOUNTED_AT}/")]
        environment = service.get("environment", {})
        referenced += [v for v in environment.values() if isinstance(v, str) and v.startswith(f"{MOUNTED_AT}/")]
        for path in referenced:
            assert (CONFIG_DIR / path.removeprefix(f"{MOUNTED_AT}/")).is_file(), f"{name}: {path}"
        if argv[0] == "smooth-edge":
            assert argv[1] in ("serve", "central", "simulate-cnc"), argv
    commands = {name: _argv(s, entrypoint, cmd) for name, s in compose["services"].items() if name != "postgres"}
    assert commands["central"] == ["smooth-edge", "central", "--config", f"{MOUNTED_AT}/central.toml"]
    assert commands["edge"] == ["sh", f"{MOUNTED_AT}/edge-start.sh"]
    assert compose["services"]["edge"]["environment"]["SMOOTH_EDGE_CONFIG"] == f"{MOUNTED_AT}/edge.toml"


def test_volumes_keep_the_stores_and_the_keys() -> None:
    compose = _compose()
    declared = set(compose["volumes"])
    services = compose["services"]
    mounts = {name: {m.split(":")[1]: m.split(":")[0] for m in s.get("volumes", [])} for name, s in services.items()}
    assert mounts["edge"]["/var/lib/smooth-edge"] in declared  # the image's VOLUME, named so it outlives the container
    assert mounts["postgres"]["/var/lib/postgresql/data"] in declared
    assert mounts["central-init"]["/var/lib/smooth-edge"] == mounts["edge"]["/run/smooth-edge-keys"] == "keys"
    assert "keys:/run/smooth-edge-keys:ro" in services["edge"]["volumes"]
    assert services["central-init"]["environment"]["SMOOTH_EDGE_KEYS_DIR"] == "/var/lib/smooth-edge"
    assert services["edge"]["environment"]["SMOOTH_EDGE_KEYS_DIR"] == "/run/smooth-edge-keys"


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def test_the_configs_point_at_each_other() -> None:
    """The edge replicates to central's listener with the key from its environment, and collects from the
    simulator's endpoint; the ports published are the ones listened on."""
    services = _compose()["services"]
    edge = tomllib.loads((CONFIG_DIR / "edge.toml").read_text())
    central = tomllib.loads((CONFIG_DIR / "central.toml").read_text())
    assert edge["replication"]["central"] == f"central:{_host_port(central['server']['listen'])[1]}"
    assert edge["replication"]["key_env"] == "SMOOTH_EDGE_SYNC_KEY" and "key" not in edge["replication"]
    assert "SMOOTH_EDGE_SYNC_KEY" in services["edge"]["environment"]
    assert "SMOOTH_EDGE_SYNC_KEY" in (CONFIG_DIR / "edge-start.sh").read_text()
    assert edge["database"]["url"].startswith("/var/lib/smooth-edge/")  # on the edge-data volume
    assert central["database"]["url"].startswith("postgresql+asyncpg://smooth@postgres:5432/")
    assert services["postgres"]["environment"]["POSTGRES_USER"] == "smooth"
    assert services["central"]["environment"]["PGPASSWORD"] == services["postgres"]["environment"]["POSTGRES_PASSWORD"]
    sim = services["simulator"]["command"]
    sim_endpoint = sim[sim.index("--listen") + 1]
    assert sim_endpoint.startswith("opc.tcp://0.0.0.0:")
    machines = edge["machines"]
    assert [m["machine_id"] for m in machines] == [
        f"MILL-{i:02d}" for i in range(1, int(sim[sim.index("--machines") + 1]) + 1)
    ]
    for m in machines:
        assert m["endpoint"] == sim_endpoint.replace("0.0.0.0", "simulator")
    published = {name: [p.split(":")[1] for p in s.get("ports", [])] for name, s in services.items()}
    assert str(_host_port(edge["server"]["listen"])[1]) in published["edge"]
    assert str(_host_port(edge["metrics"]["listen"])[1]) in published["edge"]
    assert str(_host_port(central["server"]["listen"])[1]) in published["central"]


def _docker_compose() -> list[str]:
    for command in (["docker", "compose"], ["docker-compose"]):
        try:
            probe = subprocess.run([*command, "version"], capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            continue
        if probe.returncode == 0:
            return command
    pytest.skip(
        "Docker's compose plugin is not installed here (`docker compose version` fails): the file's structure is "
        "checked by the other tests of this module; `docker compose -f deploy/compose.yaml config` runs where it is"
    )


def test_docker_compose_config_validates() -> None:
    command = _docker_compose()
    result = subprocess.run(
        [*command, "-f", str(COMPOSE_FILE), "config", "--quiet"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_scripts_are_plain_sh() -> None:
    for script in CONFIG_DIR.glob("*.sh"):
        checked = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, timeout=60)
        assert checked.returncode == 0, f"{script.name}: {checked.stderr}"
        assert script.read_text().startswith("#!/bin/sh\n") and "set -eu" in script.read_text()
    assert shlex.split("sh /etc/smooth-edge/central-init.sh") == _compose()["services"]["central-init"]["entrypoint"]


@pytest.mark.parametrize("role", ["edge", "central"])
def test_the_compose_configs_pass_check_config(role: str) -> None:
    """Each configuration file of the topology is valid for its role, as compose gives it its environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMOOTH_EDGE_")}
    env["SMOOTH_EDGE_SYNC_KEY"] = "sek_placeholder_placeholder"  # the edge's comes from central-init or .env
    checked = subprocess.run(
        [sys.executable, "-m", "agent.cli", "check-config", str(CONFIG_DIR / f"{role}.toml"), "--role", role],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"{CONFIG_DIR / f'{role}.toml'}: OK"), checked.stdout
