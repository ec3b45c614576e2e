"""Reading the configuration: defaults -> TOML file -> `SMOOTH_EDGE_<SECTION>__<KEY>` environment -> command-line
flags, parsed once into frozen objects (agent/config/model.py). Every problem is collected with its path and
where the value came from, and reported at once (ConfigError)."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

from agent.config.fields import ConfigError
from agent.config.machines import parse_machines
from agent.config.model import DEFAULT_CENTRAL_LISTEN, Config, Role

ENV_PREFIX = "SMOOTH_EDGE_"
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


@dataclass(frozen=True, slots=True)
class Flag:
    """A value given on the command line, and the flag it came from (named in problems)."""

    value: Any
    name: str


@dataclass(frozen=True, slots=True)
class _Given:
    value: Any
    origin: str  # "" (the file), "SMOOTH_EDGE_..." or "--flag"
    base: Path | None  # relative paths of the file are taken from its directory; others from the working directory

    def where(self, path: str) -> str:
        return f"{path} (from {self.origin})" if self.origin else path


def load_config(
    path: Path | None,
    *,
    role: Role = "edge",
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, Flag] | None = None,
    require_secrets: bool = True,
) -> Config:
    """The configuration of a `role` process from the file at `path` (None: defaults), the environment and
    `flags` (dotted key -> Flag). `require_secrets=False` skips checking that secrets named by the file are set
    (commands that use only the database)."""
    env = os.environ if environ is None else environ
    source = str(path) if path is not None else "configuration"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(source, [f"cannot read the file: {exc.strerror or exc}"]) from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(source, [f"not valid TOML: {exc}"]) from exc
    base = path.resolve().parent if path is not None else Path.cwd()
    reader = _Reader(env, dict(flags or {}), base, role)
    problems = reader.problems
    known = [f.name for f in dataclasses.fields(Config) if f.metadata.get("section")]
    problems += [
        f"{name}: unknown section; known: {', '.join([*known, 'machines'])}"
        for name in sorted(set(raw) - {*known, "machines"})
    ]
    sections = {name: reader.section(_section_type(Config, name), raw.get(name, {}), name) for name in known}
    problems += reader.unknown_environment()
    machines, machine_problems = parse_machines(raw.get("machines", []), base, env)
    problems += machine_problems
    config = Config(**sections, machines=machines, role=role, source=str(path) if path is not None else "")
    config, cross = _resolve(config, env, reader, require_secrets)
    problems += cross
    if problems:
        raise ConfigError(source, problems)
    return config


def setting_paths(cls: type[Any] = Config, prefix: str = "") -> Iterator[tuple[str, dataclasses.Field[Any], Any]]:
    """(dotted path, field, type) of every key of the model, sections before their nested sections."""
    hints = get_type_hints(cls)
    nested = []
    for f in dataclasses.fields(cls):
        if "doc" not in f.metadata:
            continue
        path = f"{prefix}{f.name}"
        if f.metadata.get("section"):
            nested.append((path, hints[f.name]))
        else:
            yield path, f, hints[f.name]
    for path, sub in nested:
        yield from setting_paths(sub, f"{path}.")


def type_name(hint: Any) -> str:
    if get_origin(hint) is Literal:
        return "one of " + ", ".join(f'"{choice}"' for choice in get_args(hint))
    if _is_path(hint):
        return "path"
    return {bool: "boolean", int: "integer", float: "number", str: "string"}.get(hint, str(hint))


def env_name(path: str) -> str:
    return ENV_PREFIX + path.upper().replace(".", "__")


class _Reader:
    """Builds each section from the layers, collecting problems."""

    def __init__(self, env: Mapping[str, str], flags: dict[str, Flag], base: Path, role: Role) -> None:
        self.env = env
        self.flags = flags
        self.base = base
        self.problems: list[str] = []
        self.given: dict[str, _Given] = {}
        self.defaults: dict[str, Any] = {"server.listen": DEFAULT_CENTRAL_LISTEN} if role == "central" else {}
        self.known = {path for path, _, _ in setting_paths()}
        unknown_flags = set(flags) - self.known
        assert not unknown_flags, f"flags for unknown keys: {unknown_flags}"  # a programming error in the CLI

    def section(self, cls: type[Any], raw: Any, prefix: str) -> Any:
        if not isinstance(raw, dict):
            self.problems.append(f"{prefix}: must be a table ([{prefix}])")
            raw = {}
        hints = get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        self.problems += [
            f"{prefix}.{key}: unknown key; known: {', '.join(fields)}" for key in sorted(set(raw) - set(fields))
        ]
        values: dict[str, Any] = {}
        for name, f in fields.items():
            path = f"{prefix}.{name}"
            if f.metadata.get("section"):
                values[name] = self.section(hints[name], raw.get(name, {}), path)
                continue
            given = self._given(path, raw)
            if given is None:
                if path in self.defaults:
                    values[name] = self.defaults[path]
                continue
            self.given[path] = given
            value, problem = _convert(hints[name], f, given)
            if problem is None and value is not None and f.metadata.get("check") is not None:
                problem = f.metadata["check"](value)
            if problem is None and value is not None and f.metadata.get("file") and not value.is_file():
                problem = f"file not found: {value}"
            if problem is not None:
                self.problems.append(f"{given.where(path)}: {problem}")
            else:
                values[name] = value
        return cls(**values)

    def _given(self, path: str, raw: Mapping[str, Any]) -> _Given | None:
        """The value of the last layer that gives one."""
        if path in self.flags:
            return _Given(self.flags[path].value, self.flags[path].name, None)
        name = env_name(path)
        if name in self.env:
            return _Given(self.env[name], name, None)
        key = path.rsplit(".", 1)[1]
        if key in raw:
            return _Given(raw[key], "", self.base)
        return None

    def unknown_environment(self) -> list[str]:
        problems = []
        for name in sorted(self.env):
            rest = name[len(ENV_PREFIX) :]
            if not name.startswith(ENV_PREFIX) or "__" not in rest:
                continue  # SMOOTH_EDGE_SYNC_KEY and the like: not settings
            path = rest.lower().replace("__", ".")
            if path.startswith("machines"):
                problems.append(f"{name}: machines are set in the file ([[machines]]), not in the environment")
            elif path not in self.known:
                section = path.split(".", 1)[0]
                near = [env_name(k) for k in sorted(self.known) if k.startswith(section + ".")]
                hint = f"; known: {', '.join(near)}" if near else ""
                problems.append(f"{name}: no setting {path}{hint}")
        return problems


def _convert(hint: Any, f: dataclasses.Field[Any], given: _Given) -> tuple[Any, str | None]:
    """The value of `given` as the field's type, or the problem with it. Environment values are text."""
    value = given.value
    text = isinstance(value, str) and given.origin.startswith(ENV_PREFIX)
    if get_origin(hint) is Literal:
        choices = get_args(hint)
        normal = value.upper() if isinstance(value, str) and all(c.isupper() for c in choices) else value
        if normal in choices:
            return normal, None
        return None, f"must be one of {', '.join(choices)}, not {value!r}"
    if _is_path(hint):
        if isinstance(value, Path):
            return value, None
        if not isinstance(value, str):
            return None, f"must be a path (a string), not {_toml_type(value)}"
        if not value:
            return None, None
        path = Path(value).expanduser()
        return (given.base / path if given.base is not None else path.absolute()), None
    if hint is bool:
        if isinstance(value, bool):
            return value, None
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return None, f"must be true or false, not {value!r}"
    if hint in (int, float):
        if isinstance(value, int | float) and not isinstance(value, bool) and (hint is float or isinstance(value, int)):
            return hint(value), None
        if text:
            try:
                return hint(value.strip()), None
            except ValueError:
                pass
        return None, f"must be {'an integer' if hint is int else 'a number'}, not {value!r}"
    if isinstance(value, str):
        if f.metadata.get("beside_file") and given.base is not None and value and "://" not in value:
            return str(given.base / Path(value).expanduser()), None  # a SQLite file beside the config file
        return value, None
    return None, f"must be a string, not {_toml_type(value)}"


def _resolve(
    config: Config, env: Mapping[str, str], reader: _Reader, require_secrets: bool
) -> tuple[Config, list[str]]:
    """Checks across keys, and secrets read from the variables the file names."""
    problems: list[str] = []
    tls = config.server.tls
    if bool(tls.cert) != bool(tls.key):
        missing = "key" if tls.cert else "cert"
        problems.append(f"server.tls.{missing}: server.tls.cert and server.tls.key go together")
    if tls.client_ca and not tls.cert:
        problems.append("server.tls.client_ca: mutual TLS needs server.tls.cert and server.tls.key too")
    replication = config.replication
    if config.role == "central":
        if "database.url" not in reader.given:
            problems.append(
                "database.url: central needs its database (postgresql+asyncpg://user@host/db): set it in the file, "
                f"in {env_name('database.url')} or with --db"
            )
        if replication.central:
            problems.append(
                f"{_where(reader, 'replication.central')}: central does not replicate to another central; "
                "remove it, or run this file with `smooth-edge serve`"
            )
        if config.machines:
            problems.append("machines: collectors run on an edge (`smooth-edge serve`), not on central")
    elif replication.central and not replication.key:
        secret = env.get(replication.key_env, "") if replication.key_env else ""
        if secret:
            config = dataclasses.replace(config, replication=dataclasses.replace(replication, key=secret))
        elif require_secrets:
            named = f"{replication.key_env} is not set" if replication.key_env else "no variable named"
            problems.append(
                f"{_where(reader, 'replication.key_env')}: {named}; replication needs central's API key with the "
                "sync scope there (or replication.key, or --sync-key)"
            )
    return config, problems


def _where(reader: _Reader, path: str) -> str:
    given = reader.given.get(path)
    return given.where(path) if given is not None else path


def _section_type(cls: type[Any], name: str) -> type[Any]:
    hint: type[Any] = get_type_hints(cls)[name]
    return hint


def _is_path(hint: Any) -> bool:
    return isinstance(hint, types.UnionType) and Path in get_args(hint)


def _toml_type(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array"}.get(
        type(value), "a table" if isinstance(value, dict) else type(value).__name__
    )
