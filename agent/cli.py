"""The `smooth-edge` command: serve | migrate | user create | audit verify | demo."""

from __future__ import annotations

import argparse
import asyncio
import faulthandler
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy.engine import make_url

from agent import backup, health_probe
from agent.config import Config, ConfigError, Flag, load_config
from agent.config.model import DEFAULT_CENTRAL_LISTEN, DEFAULT_DB, DEFAULT_EDGE_LISTEN, Role
from agent.logs import configure_logging
from agent.supervisor import ComponentFailed
from server.domain.errors import SmoothError

DEFAULT_LISTEN = DEFAULT_EDGE_LISTEN
# argparse dest -> the configuration key it overrides (agent/config/model.py)
FLAGS = {
    "db": "database.url",
    "migrate": "database.auto_migrate",
    "listen": "server.listen",
    "reflection": "server.reflection",
    "tls_cert": "server.tls.cert",
    "tls_key": "server.tls.key",
    "tls_client_ca": "server.tls.client_ca",
    "central": "replication.central",
    "sync_key": "replication.key",
    "central_ca": "replication.ca",
    "log_level": "logging.level",
    "log_format": "logging.format",
    "metrics_listen": "metrics.listen",
}


def _db(parser: argparse.ArgumentParser, default: str = DEFAULT_DB) -> None:
    parser.add_argument("--db", default=default, help="SQLite file path or database URL (default %(default)s)")


def _server_flags(parser: argparse.ArgumentParser, listen: str) -> None:
    """`serve` and `central`: the configuration file, and the flags that override it (FLAGS)."""
    parser.add_argument("--config", type=Path, help="the configuration file (docs/configuration.md); flags override it")
    parser.add_argument("--db", help=f"SQLite file path or database URL (database.url; default {DEFAULT_DB})")
    parser.add_argument("--listen", help=f"HOST:PORT to serve gRPC on (server.listen; default {listen})")
    parser.add_argument(
        "--migrate", action="store_const", const=True, help="upgrade the schema before serving (database.auto_migrate)"
    )
    parser.add_argument("--tls-cert", type=Path, help="PEM certificate chain: serve TLS (server.tls.cert)")
    parser.add_argument("--tls-key", type=Path, help="PEM private key of --tls-cert (server.tls.key)")
    parser.add_argument("--tls-client-ca", type=Path, help="PEM CA: require client certificates it signed (mTLS)")
    parser.add_argument(
        "--reflection",
        choices=["open", "authenticated", "off"],
        help="gRPC server reflection: open to all, only with a valid key, or off (default open)",
    )
    parser.add_argument(
        "--metrics-listen", help="HOST:PORT to serve Prometheus metrics on (metrics.listen; default off)"
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smooth-edge", description="Smooth Edge: the machine-floor agent.")
    # Flags that override the configuration file default to None: "not given", so the file's value stands.
    parser.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO; logging.level)")
    parser.add_argument("--log-format", choices=["json", "console"], help="default json (logging.format)")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the edge agent: the gRPC server over the local store")
    _server_flags(serve, DEFAULT_LISTEN)
    serve.add_argument("--central", help="HOST:PORT of central: replicate this store to it (replication.central)")
    serve.add_argument("--sync-key", help="API key with the sync scope (default: $SMOOTH_EDGE_SYNC_KEY)")
    serve.add_argument("--central-ca", type=Path, help="PEM CA of central's certificate: replicate over TLS")
    serve.add_argument(
        "--insecure-disable-auth",
        action="store_const",
        const=True,
        help="trust every caller and write no refusal audits (benchmarks only; never in production)",
    )

    central = sub.add_parser("central", help="run the central store: the same services plus SyncService")
    _server_flags(central, DEFAULT_CENTRAL_LISTEN)

    check = sub.add_parser("check-config", help="validate a configuration file without starting anything")
    check.add_argument("file", type=Path, help="the TOML file (docs/configuration.md)")
    check.add_argument("--role", choices=["edge", "central"], default="edge", help="serve (edge) or central")

    mig = sub.add_parser("migrate", help="upgrade the database schema to this version's head")
    mig.add_argument("--db", help=f"SQLite file path or database URL (default: database.url, or {DEFAULT_DB})")
    mig.add_argument("--config", type=Path, help="take the database from this configuration file")

    user = sub.add_parser("user", help="manage users from the machine itself")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create = user_sub.add_parser("create", help="create a user and print its first API key (once)")
    _db(create)
    create.add_argument("--email", required=True)
    create.add_argument("--name", default="", help="display name")
    role = create.add_mutually_exclusive_group()
    role.add_argument("--admin", action="store_const", const="ADMIN", dest="role", help="role admin")
    role.add_argument("--role", choices=["ADMIN", "OPERATOR", "VIEWER"], dest="role")
    create.set_defaults(role="OPERATOR")

    audit = sub.add_parser("audit", help="the audit log")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="recompute the hash chain and report the first broken entry")
    _db(verify)

    sim = sub.add_parser("simulate-cnc", help="serve simulated CNC controllers over OPC UA (cnc / umati)")
    sim.add_argument("--listen", default="opc.tcp://127.0.0.1:4840/smooth-sim/", help="endpoint URL to serve")
    sim.add_argument("--machines", type=int, default=2, help="how many machines (default %(default)s)")
    sim.add_argument("--profile", choices=["cnc", "umati"], default="cnc", help="address space (default cnc)")
    sim.add_argument("--prefix", default="MILL-", help="machine names: PREFIX01, PREFIX02, ...")
    sim.add_argument("--seed", type=int, default=1, help="random routine seed (default %(default)s)")
    sim.add_argument("--tools", type=int, default=4, help="T numbers used, 1..N (default %(default)s)")
    sim.add_argument("--change-every", type=float, nargs=2, default=(3.0, 8.0), metavar=("MIN_S", "MAX_S"))
    sim.add_argument(
        "--script",
        type=Path,
        help='JSON {"MACHINE": [{"at_s": 0, "tool": 1, "speed_rpm": 8000, "program": "O1", "parts": 1}, ...]}: '
        "play these steps once instead of random routines",
    )

    usage = sub.add_parser("usage", help="tool usage records")
    usage_sub = usage.add_subparsers(dest="usage_command", required=True)
    tail = usage_sub.add_parser("tail", help="follow usages as the collector records them")
    tail.add_argument("--target", default=DEFAULT_LISTEN, help="the agent's gRPC address (default %(default)s)")
    tail.add_argument("--key", default="", help="API key (default: $SMOOTH_EDGE_API_KEY)")
    tail.add_argument("--machine", default="", help="only this machine_id")

    backup.add_commands(sub, DEFAULT_DB)
    health_probe.add_commands(sub, DEFAULT_LISTEN)

    demo = sub.add_parser("demo", help="serve on a SQLite file filled with sample shop data")
    _db(demo, "smooth-edge-demo.db")
    demo.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    demo.add_argument("--exit-after-seed", action="store_true", help="stop once the sample data is in")
    demo.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: Ctrl-C)")
    demo.add_argument("--no-cnc", action="store_true", help="no simulated CNC and no collector")
    demo.add_argument("--log-file", type=Path, help="where the JSON logs go (default: beside --db, .log)")
    return parser


async def _migrate(db: str) -> None:
    from server.store import migrate
    from server.store.repository import Store

    log = structlog.get_logger("smooth_edge.migrate")
    async with Store(db) as store:
        before = await migrate.current_revision(store.engine)
        log.info("migrate.start", current=before, head=migrate.head_revision())
        await migrate.upgrade(store.engine)
        log.info("migrate.done", current=await migrate.current_revision(store.engine))


async def _user_create(args: argparse.Namespace) -> None:
    from server.domain.entities import UserRole
    from server.store import migrate
    from server.store.repository import Store
    from server.usecases.app import build

    async with Store(args.db) as store:
        await migrate.ensure_at_head(store.engine)
        user, key, secret = await build(store).api_keys.bootstrap(
            email=args.email, role=UserRole(args.role), display_name=args.name
        )
    print(f"created user {user.id} <{user.email}> role {user.role.value}")
    print(f"API key {key.key_id} with scopes {', '.join(key.scopes)}; the secret is shown only now:")
    print(secret)


async def _audit_verify(db: str) -> int:
    from server.store import migrate
    from server.store.repository import Store
    from server.usecases.app import build

    def progress(n: int) -> None:
        print(f"verified {n} entries...", file=sys.stderr, flush=True)

    async with Store(db) as store:
        await migrate.ensure_at_head(store.engine)
        result = await build(store).audit.verify(progress)
    if result.ok:
        print(f"audit log intact: {result.checked} entries verified")
        return 0
    print(f"audit log BROKEN at entry {result.broken_seq}: {result.reason}")
    print(f"({result.checked} entries before it are intact)")
    return 1


def _load(args: argparse.Namespace, role: Role, *, require_secrets: bool = True) -> Config:
    """The configuration: defaults -> --config file -> SMOOTH_EDGE_* environment -> the flags given."""
    flags = {
        key: Flag(getattr(args, dest), _flag_name(dest)) for dest, key in FLAGS.items() if getattr(args, dest, None)
    }
    if getattr(args, "insecure_disable_auth", None):
        flags["server.auth"] = Flag(False, "--insecure-disable-auth")
    return load_config(getattr(args, "config", None), role=role, flags=flags, require_secrets=require_secrets)


def _flag_name(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _serve_options(config: Config) -> Any:
    from agent.runtime import ServeOptions
    from server.api.server import TlsConfig

    tls = config.server.tls
    return ServeOptions(
        config.database.url,
        config.server.listen,
        auto_migrate=config.database.auto_migrate,
        auth=config.server.auth,
        reflection=config.server.reflection,
        tls=TlsConfig.from_files(tls.cert, tls.key, tls.client_ca) if tls.cert and tls.key else None,
        collector=config.collector,
        central=config.role == "central",
        replicate=_replicate(config),
        metrics_listen=config.metrics.listen,
        collector_down_after_s=config.health.collector_down_after_s,
        central_unreachable_after_s=config.health.central_unreachable_after_s,
    )


def _replicate(config: Config) -> Any:
    from agent.replicator.replicator import ReplicatorSettings

    replication = config.replication
    if config.role != "edge" or not replication.central:
        return None
    credentials = None
    if replication.ca is not None:
        import grpc

        credentials = grpc.ssl_channel_credentials(root_certificates=replication.ca.read_bytes())
    return ReplicatorSettings(
        central=replication.central,
        key=replication.key,
        credentials=credentials,
        batch_size=replication.batch_size,
        interval_s=replication.interval_s,
    )


def _check_config(path: Path, role: Role) -> int:
    """`smooth-edge check-config`: every problem on a line of its own, or OK and what the file sets up."""
    try:
        config = load_config(path, role=role)
    except ConfigError as err:
        for problem in err.problems:
            print(f"{path}: {problem}")
        return 2
    from server.store.engine import database_url

    url = make_url(database_url(config.database.url))
    database = (
        f"SQLite file {url.database}"
        if url.get_backend_name() == "sqlite"
        else url.render_as_string(hide_password=True)
    )
    server, tls = config.server, config.server.tls
    machines = ", ".join(m.machine_id for m in config.machines)
    replication = config.replication
    print(f"{path}: OK")
    print(f"  role: {role} (smooth-edge {'central' if role == 'central' else 'serve'})")
    print(f"  database: {database}{' (migrated at start)' if config.database.auto_migrate else ''}")
    print(
        f"  listen: {server.listen}, TLS {'mutual' if tls.client_ca else 'on' if tls.cert else 'off'}, "
        f"auth {'on' if server.auth else 'OFF'}, reflection {server.reflection}"
    )
    print(f"  machines: {len(config.machines)}{f' ({machines})' if machines else ''}")
    print(
        f"  replication: to {replication.central}{' over TLS' if replication.ca else ''}"
        if replication.central
        else "  replication: off"
    )
    print(f"  metrics: {config.metrics.listen or 'off'}")
    print(f"  logging: {config.logging.level} {config.logging.format} to {config.logging.file or 'stderr'}")
    return 0


async def _simulate(args: argparse.Namespace) -> None:
    from agent.simulator.server import CncSimulator, SimMachine
    from agent.simulator.timeline import Step, random_routine, scripted

    if args.script:
        script = json.loads(args.script.read_text())
        names = list(script)
        machines = [SimMachine(n, args.profile, scripted([Step(**step) for step in script[n]])) for n in names]
    else:
        names = [f"{args.prefix}{i:02d}" for i in range(1, args.machines + 1)]
        every = (float(args.change_every[0]), float(args.change_every[1]))
        machines = [
            SimMachine(name, args.profile, random_routine(args.seed + i, tools=args.tools, change_every_s=every))
            for i, name in enumerate(names)
        ]
    async with CncSimulator(machines, args.listen):
        print(f"simulating {len(machines)} {args.profile} machine(s) on {args.listen}; collector config:")
        for i, name in enumerate(names, start=1):
            extra = (
                f'channel = "Channel{i}"\nspindle = "Spindle{i}"' if args.profile == "cnc" else f'machine = "{name}"'
            )
            print(f'[[machines]]\nmachine_id = "{name}"\nendpoint = "{args.listen}"\nprofile = "{args.profile}"')
            print(extra + "\n", flush=True)
        await asyncio.Event().wait()


async def _with_task_dump(main: Coroutine[Any, Any, None]) -> None:
    """SMOOTH_EDGE_DUMP_STACKS_AFTER_S (tests): after that long, print every asyncio task's stack to stderr too
    (faulthandler shows the threads; an await that never returns shows only here)."""
    after = os.environ.get("SMOOTH_EDGE_DUMP_STACKS_AFTER_S")
    if after:

        def dump() -> None:
            for task in asyncio.all_tasks():
                print(f"--- task {task.get_name()} ({task.get_coro()!r}):", file=sys.__stderr__)
                awaited: Any = task.get_coro()
                for _ in range(40):  # the whole chain of awaits, not only the task's own frame
                    frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "ag_frame", None)
                    if frame is None:
                        print(f"  awaiting {awaited!r}", file=sys.__stderr__)
                        break
                    print(
                        f"  {frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}", file=sys.__stderr__
                    )
                    awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "ag_await", None)
                    if awaited is None:
                        break
            if sys.__stderr__ is not None:  # None when started without a console (pythonw)
                sys.__stderr__.flush()

        asyncio.get_running_loop().call_later(float(after), dump)
    await main


def _run(main: Coroutine[Any, Any, None]) -> None:
    """The long-running commands run on uvloop (libuv): the collector's OPC UA sessions spend most of their
    time in the event loop's socket and callback machinery, which uvloop does in C. SMOOTH_EDGE_LOOP=asyncio
    falls back to the standard loop."""
    if os.environ.get("SMOOTH_EDGE_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop
        except ImportError:  # not built for this platform (Windows)
            pass
        else:
            uvloop.run(_with_task_dump(main))
            return
    asyncio.run(_with_task_dump(main))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "check-config":
        return _check_config(args.file, args.role)
    config: Config | None = None
    try:
        if args.command in ("serve", "central"):
            config = _load(args, "central" if args.command == "central" else "edge")
        elif args.command == "migrate" and args.config:
            config = _load(args, "edge", require_secrets=False)
    except ConfigError as err:
        where = f"{args.config}: " if getattr(args, "config", None) else ""
        for problem in err.problems:
            print(f"smooth-edge: {where}{problem}", file=sys.stderr)
        return 2
    try:
        if config is not None:
            logs = config.logging
            configure_logging(logs.level, json_lines=logs.format == "json", file=logs.file)
        else:
            configure_logging(args.log_level or "INFO", json_lines=(args.log_format or "json") == "json")
    except (OSError, ValueError) as err:
        print(f"smooth-edge: cannot set up logging: {err}; fix logging.file (or --log-level)", file=sys.stderr)
        return 2
    if os.environ.get("SMOOTH_EDGE_FAILPOINTS"):  # crash tests only (server/domain/failpoints.py)
        from server.domain import failpoints

        failpoints.arm(os.environ["SMOOTH_EDGE_FAILPOINTS"])
    if os.environ.get("SMOOTH_EDGE_DUMP_STACKS_AFTER_S"):  # tests: a hang shows where every thread stands
        faulthandler.dump_traceback_later(float(os.environ["SMOOTH_EDGE_DUMP_STACKS_AFTER_S"]), exit=False)
    try:
        return _command(args, config)
    except KeyboardInterrupt:
        return 130
    except ComponentFailed as err:  # logged with its traceback when it happened
        print(f"smooth-edge: {err}", file=sys.__stderr__)
        return 1
    except Exception as err:
        message = _startup_failure(err, args, config)
        if message is None:
            raise
        if config is not None and config.logging.file is not None:  # on stderr, the line below says it all
            structlog.get_logger("smooth_edge.cli").error("failed", error=message)
        print(f"smooth-edge: {message}", file=sys.__stderr__)
        return 2


def _command(args: argparse.Namespace, config: Config | None) -> int:
    if args.command in ("serve", "central"):
        from agent.runtime import serve

        assert config is not None
        _run(serve(_serve_options(config)))
    elif args.command == "migrate":
        asyncio.run(_migrate(config.database.url if config is not None else args.db or DEFAULT_DB))
    elif args.command == "user":
        asyncio.run(_user_create(args))
    elif args.command == "audit":
        return asyncio.run(_audit_verify(args.db))
    elif args.command == "simulate-cnc":
        _run(_simulate(args))
    elif args.command == "usage":
        from agent.usage_tail import run_tail

        key = args.key or os.environ.get("SMOOTH_EDGE_API_KEY", "")
        if not key:
            raise SystemExit("smooth-edge: give an API key with --key or SMOOTH_EDGE_API_KEY")
        asyncio.run(run_tail(args.target, key, args.machine))
    elif args.command in ("backup", "restore"):
        return backup.run_command(args)
    elif args.command == "health":
        return health_probe.run_command(args)
    elif args.command == "demo":
        from agent.demo import default_log_file, run_demo

        asyncio.run(
            _with_task_dump(
                run_demo(
                    args.db,
                    args.listen,
                    exit_after_seed=args.exit_after_seed,
                    duration_s=args.duration,
                    with_cnc=not args.no_cnc,
                    log_file=args.log_file or default_log_file(args.db),
                    log_level=args.log_level or "INFO",
                )
            )
        )
    return 0


def _startup_failure(err: Exception, args: argparse.Namespace, config: Config | None) -> str | None:
    """One line that says what went wrong and what to do, for the failures a new installation meets; None for
    anything else (a traceback then: a bug to report)."""
    from server.api.server import ListenError
    from server.store.engine import DatabaseLocationError

    setting = "database.url" if config is not None and config.source else "--db"
    if isinstance(err, DatabaseLocationError):
        remedy = {"missing": "create it or ", "not_writable": "fix its permissions or "}.get(err.kind, "")
        return f"{err}; {remedy}point {setting} elsewhere"
    if isinstance(err, ListenError):
        return f"{err}; choose another server.listen (--listen)"
    if isinstance(err, SmoothError) and err.reason == "SCHEMA_NOT_AT_HEAD":
        how = f"--config {config.source}" if config is not None and config.source else f"--db {_db_of(args, config)}"
        return (
            f"the database is {err.metadata['state']}, but this version of smooth-edge needs revision "
            f"{err.metadata['head']}: run `smooth-edge migrate {how}` first, or start with --migrate "
            "(database.auto_migrate = true)"
        )
    if isinstance(err, SmoothError):
        return err.message
    if isinstance(err, ConfigError):
        return str(err)
    if isinstance(err, OSError):
        return str(err)
    return None


def _db_of(args: argparse.Namespace, config: Config | None) -> str:
    return config.database.url if config is not None else getattr(args, "db", None) or DEFAULT_DB


if __name__ == "__main__":
    raise SystemExit(main())
