"""The agent's configuration: read once from a TOML file (and `SMOOTH_EDGE_*` / `password_env` variables) into
frozen objects, validated as a whole so every mistake is reported at start, not one per restart.

```toml
[[machines]]
machine_id = "MILL-01"              # as used in ToolPresets and ToolUsages
endpoint = "opc.tcp://10.0.0.21:4840"
profile = "cnc"                     # cnc | umati | sinumerik | custom
channel = "Channel1"                # cnc: channel browse name; sinumerik: channel number; default: the first
spindle = "Spindle1"                # cnc/umati: spindle browse name; sinumerik: spindle number; default: the first
machine = "MILL-01"                 # umati only: the machine's browse name under Objects/Machines; default: the
                                    # only one there (checked at connect; two machines of one server must name it)
publishing_interval_ms = 250
watchdog_s = 10                     # no change and no answer to the keep-alive for this long -> a new connection
reconnect_max_s = 5                 # backoff cap: a controller back from a restart is seen within this
operator = ""                       # recorded on every usage of this machine
[machines.security]                 # optional
mode = "SignAndEncrypt"             # None | Sign | SignAndEncrypt (policy Basic256Sha256)
certificate = "client-cert.pem"     # client certificate (its URI SAN must equal application_uri)
private_key = "client-key.pem"
application_uri = "urn:smooth-edge:client"
username = "tool-collector"
password_env = "MILL01_OPCUA_PASSWORD"   # or password = "..." (not recommended)
[machines.nodes]                    # custom profile: NodeIds per signal ("ns=2;s=..." or "nsu=<uri>;s=...")
tool = "nsu=urn:vendor;s=ToolNumber"
speed = "..."                       # rpm; or rotating = "..." (Boolean)
program = "..."
parts = "..."
```
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

PROFILES = ("cnc", "umati", "sinumerik", "custom")
RECONNECT_MAX_S = 5.0
SIGNALS = ("tool", "speed", "rotating", "program", "parts")
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    mode: SecurityMode = "None"
    certificate: Path | None = None
    private_key: Path | None = None
    application_uri: str = "urn:smooth-edge:collector"
    username: str = ""
    password: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class MachineConfig:
    machine_id: str
    endpoint: str
    profile: str
    channel: str = ""
    spindle: str = ""
    machine: str = ""
    namespace: str = ""  # sinumerik: the vendor namespace URI
    publishing_interval_ms: int = 250
    watchdog_s: float = 10.0
    # A shop-floor controller comes back from a restart or a power cycle within a minute or two, and every second
    # it is up but not watched is time that cannot be credited (README "Collector timing model"); a failed attempt
    # costs one TCP connect, so even 200 machines retrying every 5 s cost the agent and the network nothing.
    reconnect_max_s: float = RECONNECT_MAX_S
    operator: str = ""
    nodes: Mapping[str, str] = field(default_factory=dict)
    security: SecurityConfig = field(default_factory=SecurityConfig)


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    machines: tuple[MachineConfig, ...] = ()


_MACHINE_KEYS = {
    "machine_id",
    "endpoint",
    "profile",
    "channel",
    "spindle",
    "machine",
    "namespace",
    "publishing_interval_ms",
    "watchdog_s",
    "reconnect_max_s",
    "operator",
    "nodes",
    "security",
}
_SECURITY_KEYS = {"mode", "certificate", "private_key", "application_uri", "username", "password", "password_env"}


def load_collector_config(path: Path, environ: Mapping[str, str] | None = None) -> CollectorConfig:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc}"]) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from exc
    return parse_collector_config(data, source=str(path), base=path.parent, environ=environ)


def parse_collector_config(
    data: Mapping[str, Any], *, source: str = "config", base: Path = Path("."), environ: Mapping[str, str] | None = None
) -> CollectorConfig:
    env = os.environ if environ is None else environ
    problems: list[str] = []
    machines: list[MachineConfig] = []
    raw_machines = data.get("machines", [])
    if not isinstance(raw_machines, list):
        raise ConfigError(source, ["`machines` must be an array of tables ([[machines]])"])
    seen: set[str] = set()
    for i, raw in enumerate(raw_machines):
        where = f"machines[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        problems += [f"{where}: unknown key {k!r}" for k in sorted(set(raw) - _MACHINE_KEYS)]
        machine_id = str(raw.get("machine_id", "")).strip()
        where = f"machines[{i}] ({machine_id or 'no machine_id'})"
        if not machine_id or len(machine_id) > 100:
            problems.append(f"{where}: machine_id is required (1 to 100 characters)")
        elif machine_id in seen:
            problems.append(f"{where}: machine_id is used twice")
        seen.add(machine_id)
        endpoint = str(raw.get("endpoint", ""))
        if not endpoint.startswith("opc.tcp://"):
            problems.append(f"{where}: endpoint must be an opc.tcp:// URL")
        profile = str(raw.get("profile", ""))
        if profile not in PROFILES:
            problems.append(f"{where}: profile must be one of {', '.join(PROFILES)}")
        nodes = raw.get("nodes", {})
        if not isinstance(nodes, dict) or not all(isinstance(v, str) for v in nodes.values()):
            problems.append(f"{where}: nodes must map signal names to NodeId strings")
            nodes = {}
        problems += [
            f"{where}: nodes: unknown signal {k!r}; use {', '.join(SIGNALS)}" for k in set(nodes) - set(SIGNALS)
        ]
        if profile == "sinumerik":
            problems += [
                f"{where}: {key} must be a number >= 1 for the sinumerik profile (the u<channel>,<spindle> suffix)"
                for key in ("channel", "spindle")
                if str(raw.get(key, "")) and not (str(raw[key]).isdigit() and int(str(raw[key])) >= 1)
            ]
        if profile == "custom" and "tool" not in nodes:
            problems.append(f"{where}: the custom profile needs at least nodes.tool")
        numbers: dict[str, float] = {}
        for key, default, low in (
            ("publishing_interval_ms", 250, 10),
            ("watchdog_s", 10.0, 1),
            ("reconnect_max_s", RECONNECT_MAX_S, 1),
        ):
            value = raw.get(key, default)
            if not isinstance(value, int | float) or isinstance(value, bool) or value < low:
                problems.append(f"{where}: {key} must be a number >= {low}")
                value = default
            numbers[key] = value
        security, security_problems = _security(raw.get("security", {}), where, base, env)
        problems += security_problems
        machines.append(
            MachineConfig(
                machine_id=machine_id,
                endpoint=endpoint,
                profile=profile,
                channel=str(raw.get("channel", "")),
                spindle=str(raw.get("spindle", "")),
                machine=str(raw.get("machine", "")),
                namespace=str(raw.get("namespace", "")),
                publishing_interval_ms=int(numbers["publishing_interval_ms"]),
                watchdog_s=float(numbers["watchdog_s"]),
                reconnect_max_s=float(numbers["reconnect_max_s"]),
                operator=str(raw.get("operator", ""))[:200],
                nodes=dict(nodes),
                security=security,
            )
        )
    problems += _umati_machines(machines)
    if problems:
        raise ConfigError(source, problems)
    return CollectorConfig(tuple(machines))


def _umati_machines(machines: list[MachineConfig]) -> list[str]:
    """`machine` names the umati machine; without it the session takes the only machine the server has, so two
    umati machines on one endpoint must each name theirs (or they would both read the same one)."""
    problems = [
        f"{m.machine_id}: machine names a umati machine; profile {m.profile} does not use it"
        for m in machines
        if m.machine and m.profile != "umati"
    ]
    readers: dict[tuple[str, str], list[str]] = {}
    for m in machines:
        if m.profile == "umati":
            readers.setdefault((m.endpoint, m.machine), []).append(m.machine_id)
    for (endpoint, name), ids in readers.items():
        if len(ids) > 1:
            which = f"the machine {name!r}" if name else "the only machine (no machine key)"
            problems.append(
                f'{", ".join(ids)}: all read {which} at {endpoint}; give each its own machine = "<browse name>"'
            )
    return problems


def _security(raw: Any, where: str, base: Path, env: Mapping[str, str]) -> tuple[SecurityConfig, list[str]]:
    if not isinstance(raw, dict):
        return SecurityConfig(), [f"{where}: security must be a table"]
    problems = [f"{where}: security: unknown key {k!r}" for k in sorted(set(raw) - _SECURITY_KEYS)]
    mode = raw.get("mode", "None")
    if mode not in ("None", "Sign", "SignAndEncrypt"):
        problems.append(f"{where}: security.mode must be None, Sign or SignAndEncrypt")
        mode = "None"
    paths: dict[str, Path | None] = {}
    for key in ("certificate", "private_key"):
        value = raw.get(key)
        path = (base / value) if isinstance(value, str) and value else None
        if path is not None and not path.is_file():
            problems.append(f"{where}: security.{key} {path} does not exist")
        paths[key] = path
    if mode != "None" and (paths["certificate"] is None or paths["private_key"] is None):
        problems.append(f"{where}: security.mode {mode} needs certificate and private_key")
    password = str(raw.get("password", ""))
    if raw.get("password_env"):
        name = str(raw["password_env"])
        if name not in env:
            problems.append(f"{where}: security.password_env names {name}, which is not set")
        password = env.get(name, "")
    username = str(raw.get("username", ""))
    if password and not username:
        problems.append(f"{where}: a password needs a username")
    config = SecurityConfig(
        mode=mode,
        certificate=paths["certificate"],
        private_key=paths["private_key"],
        application_uri=str(raw.get("application_uri", "urn:smooth-edge:collector")),
        username=username,
        password=password,
    )
    return config, problems
