"""The `[[machines]]` of the configuration: the CNC controllers the collector reads over OPC UA. Every problem is
reported with its path (`machines[2].endpoint: ...`).

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

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from agent.config.fields import ConfigError, at_least, section, setting

PROFILES = ("cnc", "umati", "sinumerik", "custom")
RECONNECT_MAX_S = 5.0
SIGNALS = ("tool", "speed", "rotating", "program", "parts")
SecurityMode = Literal["None", "Sign", "SignAndEncrypt"]


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    mode: SecurityMode = setting("None", "OPC UA message security (policy Basic256Sha256).")
    certificate: Path | None = setting(
        None, "Client certificate, PEM or DER (its URI SAN must equal `application_uri`).", file=True
    )
    private_key: Path | None = setting(None, "The client certificate's private key.", file=True)
    application_uri: str = setting("urn:smooth-edge:collector", "The client's application URI.")
    username: str = setting("", "User name for a user-name identity; empty: anonymous.")
    password: str = setting(
        "", "The user's password; not recommended in a file: `password_env` names a variable holding it.", secret=True
    )


# Keys of [machines.security] that are not fields of SecurityConfig (documented in the reference too).
SECURITY_ALIASES = {"password_env": "The environment variable holding `password` (read at start)."}


@dataclass(frozen=True, slots=True)
class MachineConfig:
    machine_id: str = setting(dataclasses.MISSING, "As used in ToolPresets and ToolUsages (1 to 100 characters).")
    endpoint: str = setting(dataclasses.MISSING, "The controller's OPC UA server: `opc.tcp://host:port[/path]`.")
    profile: str = setting(dataclasses.MISSING, f"The controller's address space: one of {', '.join(PROFILES)}.")
    channel: str = setting("", "cnc: channel browse name; sinumerik: channel number; default: the first.")
    spindle: str = setting("", "cnc/umati: spindle browse name; sinumerik: spindle number; default: the first.")
    machine: str = setting(
        "",
        "umati only: the machine's browse name under Objects/Machines; default: the only one there (two machines "
        "of one server must each name theirs).",
    )
    namespace: str = setting("", "sinumerik: the vendor namespace URI; default: Siemens' own.")
    publishing_interval_ms: int = setting(250, "OPC UA subscription publishing interval.", check=at_least(10))
    watchdog_s: float = setting(
        10.0, "No change and no answer to the keep-alive for this long: a new connection.", check=at_least(1)
    )
    # A shop-floor controller comes back from a restart or a power cycle within a minute or two, and every second
    # it is up but not watched is time that cannot be credited (README "Collector timing model"); a failed attempt
    # costs one TCP connect, so even 200 machines retrying every 5 s cost the agent and the network nothing.
    reconnect_max_s: float = setting(
        RECONNECT_MAX_S,
        "Reconnect backoff cap: a controller back from a restart is seen within this.",
        check=at_least(1),
    )
    operator: str = setting("", "Recorded on every usage of this machine (at most 200 characters).")
    nodes: Mapping[str, str] = field(
        default_factory=dict,
        metadata={
            "doc": "custom profile: NodeIds per signal (`ns=2;s=...` or `nsu=<uri>;s=...`): "
            f"{', '.join(SIGNALS)}; at least `tool`. `speed` in rpm, or `rotating` (Boolean)."
        },
    )
    security: SecurityConfig = section(SecurityConfig, "Optional: OPC UA security and user identity.")


@dataclass(frozen=True, slots=True)
class CollectorConfig:
    machines: tuple[MachineConfig, ...] = ()


_MACHINE_KEYS = {f.name for f in dataclasses.fields(MachineConfig)}
_SECURITY_KEYS = {f.name for f in dataclasses.fields(SecurityConfig)} | set(SECURITY_ALIASES)
_NUMBERS = ("publishing_interval_ms", "watchdog_s", "reconnect_max_s")


def parse_collector_config(
    data: Mapping[str, Any], *, source: str = "config", base: Path = Path("."), environ: Mapping[str, str] | None = None
) -> CollectorConfig:
    """The `machines` of a parsed TOML document; ConfigError lists every problem."""
    machines, problems = parse_machines(data.get("machines", []), base, os.environ if environ is None else environ)
    if problems:
        raise ConfigError(source, problems)
    return CollectorConfig(machines)


def parse_machines(
    raw_machines: Any, base: Path, env: Mapping[str, str]
) -> tuple[tuple[MachineConfig, ...], list[str]]:
    if not isinstance(raw_machines, list):
        return (), ["machines: must be an array of tables ([[machines]])"]
    problems: list[str] = []
    machines: list[MachineConfig] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_machines):
        where = f"machines[{i}]"
        if not isinstance(raw, dict):
            problems.append(f"{where}: must be a table")
            continue
        problems += [
            f"{where}.{k}: unknown key; known: {', '.join(sorted(_MACHINE_KEYS))}"
            for k in sorted(set(raw) - _MACHINE_KEYS)
        ]
        machine_id = str(raw.get("machine_id", "")).strip()
        if not machine_id or len(machine_id) > 100:
            problems.append(f"{where}.machine_id: is required (1 to 100 characters)")
        elif machine_id in seen:
            problems.append(f"{where}.machine_id: {machine_id!r} is used twice")
        seen.add(machine_id)
        endpoint = str(raw.get("endpoint", ""))
        if not endpoint.startswith("opc.tcp://"):
            problems.append(f"{where}.endpoint: must be an opc.tcp:// URL, not {endpoint!r}")
        profile = str(raw.get("profile", ""))
        if profile not in PROFILES:
            problems.append(f"{where}.profile: must be one of {', '.join(PROFILES)}, not {profile!r}")
        nodes = raw.get("nodes", {})
        if not isinstance(nodes, dict) or not all(isinstance(v, str) for v in nodes.values()):
            problems.append(f"{where}.nodes: must map signal names to NodeId strings")
            nodes = {}
        problems += [
            f"{where}.nodes.{k}: unknown signal; use {', '.join(SIGNALS)}" for k in sorted(set(nodes) - set(SIGNALS))
        ]
        if profile == "sinumerik":
            problems += [
                f"{where}.{key}: must be a number >= 1 for the sinumerik profile (the u<channel>,<spindle> suffix)"
                for key in ("channel", "spindle")
                if str(raw.get(key, "")) and not (str(raw[key]).isdigit() and int(str(raw[key])) >= 1)
            ]
        if profile == "custom" and "tool" not in nodes:
            problems.append(f"{where}.nodes: the custom profile needs at least nodes.tool")
        numbers: dict[str, float] = {}
        for f in dataclasses.fields(MachineConfig):
            if f.name not in _NUMBERS:
                continue
            value = raw.get(f.name, f.default)
            problem = (
                "must be a number"
                if not isinstance(value, int | float) or isinstance(value, bool)
                else f.metadata["check"](value)
            )
            if problem:
                problems.append(f"{where}.{f.name}: {problem}")
                value = f.default
            numbers[f.name] = value
        security, security_problems = _security(raw.get("security", {}), f"{where}.security", base, env)
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
    return tuple(machines), problems + _umati_machines(machines)


def _umati_machines(machines: list[MachineConfig]) -> list[str]:
    """`machine` names the umati machine; without it the session takes the only machine the server has, so two
    umati machines on one endpoint must each name theirs (or they would both read the same one)."""
    problems = [
        f"machines[{i}].machine: names a umati machine; profile {m.profile} ({m.machine_id}) does not use it"
        for i, m in enumerate(machines)
        if m.machine and m.profile != "umati"
    ]
    readers: dict[tuple[str, str], list[int]] = {}
    for i, m in enumerate(machines):
        if m.profile == "umati":
            readers.setdefault((m.endpoint, m.machine), []).append(i)
    for (endpoint, name), indexes in readers.items():
        if len(indexes) > 1:
            which = f"the machine {name!r}" if name else "the only machine (no machine key)"
            paths = ", ".join(f"machines[{i}]" for i in indexes)
            ids = ", ".join(machines[i].machine_id for i in indexes)
            problems.append(
                f'{paths}.machine: {ids} all read {which} at {endpoint}; give each its own machine = "<browse name>"'
            )
    return problems


def _security(raw: Any, where: str, base: Path, env: Mapping[str, str]) -> tuple[SecurityConfig, list[str]]:
    if not isinstance(raw, dict):
        return SecurityConfig(), [f"{where}: must be a table"]
    problems = [f"{where}.{k}: unknown key" for k in sorted(set(raw) - _SECURITY_KEYS)]
    mode = raw.get("mode", "None")
    if mode not in ("None", "Sign", "SignAndEncrypt"):
        problems.append(f"{where}.mode: must be None, Sign or SignAndEncrypt, not {mode!r}")
        mode = "None"
    paths: dict[str, Path | None] = {}
    for key in ("certificate", "private_key"):
        value = raw.get(key)
        path = (base / value) if isinstance(value, str) and value else None
        if path is not None and not path.is_file():
            problems.append(f"{where}.{key}: file not found: {path}")
        paths[key] = path
    if mode != "None" and (paths["certificate"] is None or paths["private_key"] is None):
        problems.append(f"{where}.mode: {mode} needs certificate and private_key")
    password = str(raw.get("password", ""))
    if raw.get("password_env"):
        name = str(raw["password_env"])
        if name not in env:
            problems.append(f"{where}.password_env: names {name}, which is not set")
        password = env.get(name, "")
    username = str(raw.get("username", ""))
    if password and not username:
        problems.append(f"{where}.username: a password needs a username")
    config = SecurityConfig(
        mode=mode,
        certificate=paths["certificate"],
        private_key=paths["private_key"],
        application_uri=str(raw.get("application_uri", "urn:smooth-edge:collector")),
        username=username,
        password=password,
    )
    return config, problems
