"""The `smooth-edge` command: serve | migrate | demo."""

from __future__ import annotations

import argparse
import asyncio
import sys

import structlog

from agent.logs import configure_logging
from server.domain.errors import SmoothError

DEFAULT_DB = "smooth-edge.db"
DEFAULT_LISTEN = "127.0.0.1:50051"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smooth-edge", description="Smooth Edge: the machine-floor agent.")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    parser.add_argument("--log-format", choices=["json", "console"], default="json")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the edge agent: the gRPC server over the local store")
    serve.add_argument("--db", default=DEFAULT_DB, help="SQLite file path or database URL (default %(default)s)")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT to serve gRPC on (default %(default)s)")
    serve.add_argument("--migrate", action="store_true", help="upgrade the database schema before serving")

    mig = sub.add_parser("migrate", help="upgrade the database schema to this version's head")
    mig.add_argument("--db", default=DEFAULT_DB, help="SQLite file path or database URL (default %(default)s)")

    demo = sub.add_parser("demo", help="serve on a SQLite file filled with sample shop data")
    demo.add_argument("--db", default="smooth-edge-demo.db", help="SQLite file (default %(default)s)")
    demo.add_argument("--listen", default=DEFAULT_LISTEN, help="HOST:PORT (default %(default)s)")
    demo.add_argument("--exit-after-seed", action="store_true", help="stop once the sample data is in")
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


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    configure_logging(args.log_level, json_lines=args.log_format == "json")
    log = structlog.get_logger("smooth_edge.cli")
    try:
        if args.command == "serve":
            from agent.runtime import serve

            asyncio.run(serve(args.db, args.listen, auto_migrate=args.migrate))
        elif args.command == "migrate":
            asyncio.run(_migrate(args.db))
        elif args.command == "demo":
            from agent.demo import run_demo

            asyncio.run(run_demo(args.db, args.listen, exit_after_seed=args.exit_after_seed))
    except SmoothError as err:
        log.error("failed", error=err.message, reason=err.reason)
        print(f"smooth-edge: {err.message}", file=sys.stderr)
        return 2
    except OSError as err:
        log.error("failed", error=str(err))
        print(f"smooth-edge: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
