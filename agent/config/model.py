"""The configuration model: one frozen dataclass per TOML section, each key with its type, default, check and
documentation (the reference in docs/configuration.md is rendered from these fields: agent/config/reference.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from agent.config.fields import at_least, host_port, host_port_or_empty, positive, section, setting
from agent.config.machines import CollectorConfig, MachineConfig

Role = Literal["edge", "central"]

DEFAULT_DB = "smooth-edge.db"
DEFAULT_EDGE_LISTEN = "127.0.0.1:50051"
DEFAULT_CENTRAL_LISTEN = "0.0.0.0:50052"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    url: str = setting(
        DEFAULT_DB,
        "SQLite file path (relative paths in the file are taken from the file's directory), or a SQLAlchemy URL: "
        "`postgresql+asyncpg://user@host/db` (central), `sqlite+aiosqlite:////abs/path.db`.",
        check=lambda v: None if str(v).strip() else "must not be empty",
        beside_file=True,
    )
    auto_migrate: bool = setting(
        False,
        "Upgrade the schema to this version's head before serving (`--migrate`). Without it, a database at an "
        "older revision is refused with what to run; a database written by a newer smooth-edge is always refused.",
    )


@dataclass(frozen=True, slots=True)
class ServerTlsConfig:
    cert: Path | None = setting(None, "PEM certificate chain: serve TLS (`--tls-cert`). Needs `key`.", file=True)
    key: Path | None = setting(None, "PEM private key of `cert` (`--tls-key`).", file=True)
    client_ca: Path | None = setting(
        None, "PEM CA: require client certificates it signed, mutual TLS (`--tls-client-ca`). Needs `cert`.", file=True
    )


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = setting(
        DEFAULT_EDGE_LISTEN,
        f"HOST:PORT to serve gRPC on (`--listen`); port 0 takes a free one. `smooth-edge central` defaults to "
        f"`{DEFAULT_CENTRAL_LISTEN}`.",
        check=host_port,
    )
    auth: bool = setting(
        True,
        "Require an API key on every call. `false` trusts every caller and writes no refusal audits: benchmarks "
        "only, never in production (`--insecure-disable-auth`).",
    )
    reflection: Literal["open", "authenticated", "off"] = setting(
        "open", "gRPC server reflection: open to all, only with a valid key, or off (`--reflection`)."
    )
    tls: ServerTlsConfig = section(ServerTlsConfig, "Optional: TLS for the gRPC server (off while `cert` is empty).")


@dataclass(frozen=True, slots=True)
class ReplicationConfig:
    central: str = setting(
        "",
        "HOST:PORT of central's gRPC: replicate this store to it (`--central`); empty: no replication. Edge only.",
        check=host_port_or_empty,
    )
    key_env: str = setting(
        "SMOOTH_EDGE_SYNC_KEY",
        "The environment variable holding central's API key with the sync scope (read at start).",
    )
    key: str = setting(
        "",
        "The sync-scope API key itself (`--sync-key`); not recommended in a file: prefer `key_env`.",
        secret=True,
    )
    ca: Path | None = setting(None, "PEM CA of central's certificate: replicate over TLS (`--central-ca`).", file=True)
    batch_size: int = setting(2000, "Changes per batch sent to central.", check=at_least(1))
    interval_s: float = setting(
        1.0, "Seconds between polls for new changes when no commit wakes the replicator.", check=positive
    )


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = setting("INFO", "Lowest level logged (`--log-level`).")
    format: Literal["json", "console"] = setting(
        "json", "JSON lines (one per RPC, the collector's events) or a console renderer for people (`--log-format`)."
    )
    file: Path | None = setting(None, "Append the logs to this file; empty: stderr (and so the journal).")


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    listen: str = setting(
        "",
        "HOST:PORT of the Prometheus endpoint (`/metrics`, `--metrics-listen`); empty: no endpoint. What it serves: "
        "docs/metrics.md.",
        check=host_port_or_empty,
    )


@dataclass(frozen=True, slots=True)
class HealthConfig:
    collector_down_after_s: float = setting(
        60.0, "A machine disconnected longer than this makes its health NOT_SERVING.", check=positive
    )
    central_unreachable_after_s: float = setting(
        300.0, "Central unreachable longer than this makes replication's health NOT_SERVING.", check=positive
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration of one `smooth-edge serve` or `smooth-edge central` process."""

    database: DatabaseConfig = section(DatabaseConfig, "Where the store is.")
    server: ServerConfig = section(ServerConfig, "The gRPC server.")
    replication: ReplicationConfig = section(
        ReplicationConfig, "Optional, edge only: push this store's changes to central (and pull what comes down)."
    )
    logging: LoggingConfig = section(LoggingConfig, "The logs.")
    metrics: MetricsConfig = section(MetricsConfig, "The Prometheus endpoint.")
    health: HealthConfig = section(HealthConfig, "When components count as down in gRPC health and the metrics.")
    machines: tuple[MachineConfig, ...] = ()
    role: Role = "edge"
    source: str = ""  # the file it was read from, or "" (defaults, environment and flags only)

    @property
    def collector(self) -> CollectorConfig:
        return CollectorConfig(self.machines)
