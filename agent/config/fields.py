"""What a configuration key is made of (type, default, check, documentation) and the checks keys share."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import MISSING, field
from typing import Any

Check = Callable[[Any], str | None]  # the problem with a value, or None


class ConfigError(ValueError):
    """Every problem found in a configuration, one per line, each starting with the key's path."""

    def __init__(self, source: str, problems: list[str]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s):\n  - " + "\n  - ".join(problems))
        self.source = source
        self.problems = problems


def setting(
    default: Any,
    doc: str,
    *,
    check: Check | None = None,
    file: bool = False,
    secret: bool = False,
    beside_file: bool = False,
) -> Any:
    """A documented key. `file`: a path that must name an existing file (relative paths in the TOML file are
    taken from the file's directory); `beside_file`: a string that may be a relative file path, taken from the
    file's directory too; `secret`: never shown (repr, check-config's summary)."""
    metadata = {"doc": doc, "check": check, "file": file, "secret": secret, "beside_file": beside_file}
    if default is MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata, repr=not secret)


def section(cls: type[Any], doc: str) -> Any:
    """A nested table (`[server.tls]`)."""
    return field(default_factory=cls, metadata={"doc": doc, "section": True})


def at_least(low: float) -> Check:
    def check(value: Any) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be a finite number, not {value}"
        return None if value >= low else f"must be at least {low}, not {value}"

    return check


def positive(value: Any) -> str | None:
    if isinstance(value, float) and not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return None if value > 0 else f"must be greater than 0, not {value}"


def host_port(value: Any) -> str | None:
    """HOST:PORT as gRPC takes it (`0.0.0.0:50051`, `[::]:50051`, `localhost:0`), or `unix:PATH`."""
    text = str(value)
    if text.startswith("unix:") and len(text) > len("unix:"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"must be HOST:PORT (e.g. 0.0.0.0:50051), not {text!r}"
    if host.startswith("[") != host.endswith("]") or (":" in host and not host.startswith("[")):
        return f"an IPv6 host goes in brackets ([::1]:50051), not {text!r}"
    return None


def host_port_or_empty(value: Any) -> str | None:
    return None if value == "" else host_port(value)
