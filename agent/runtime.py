"""The composition root: opens the store, checks the schema, builds the use cases and serves gRPC.

Components start in order and stop in reverse; the first SIGTERM/SIGINT stops gracefully, a second forces.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import structlog
from sqlalchemy.engine import make_url

from server.api.server import GrpcServer
from server.store import migrate
from server.store.engine import database_url
from server.store.repository import Store
from server.usecases.entities import services

log = structlog.get_logger("smooth_edge.runtime")


async def prepare_store(store: Store, *, auto_migrate: bool) -> None:
    if auto_migrate:
        await migrate.upgrade(store.engine)
    await migrate.ensure_at_head(store.engine)


async def serve(
    db_url: str,
    listen: str,
    *,
    auto_migrate: bool = False,
    on_ready: Callable[[GrpcServer], Awaitable[None]] | None = None,
    stop: asyncio.Event | None = None,
) -> None:
    """Run the edge server until `stop` is set or the process gets SIGTERM/SIGINT."""
    stop = stop or asyncio.Event()
    _install_signal_handlers(stop)
    async with AsyncExitStack() as stack:
        store = await stack.enter_async_context(Store(db_url))
        await prepare_store(store, auto_migrate=auto_migrate)
        server = await stack.enter_async_context(GrpcServer(services(store), listen))
        log.info("agent.ready", db=_safe(db_url), listen=listen, port=server.port)
        if on_ready is not None:
            await on_ready(server)
        await stop.wait()
        log.info("agent.stopping")
    log.info("agent.stopped")


def _install_signal_handlers(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()

    def _on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            log.warning("agent.forced_exit", signal=sig.name)
            os._exit(130)
        log.info("agent.signal", signal=sig.name, note="stopping gracefully; send again to force")
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, _on_signal, sig)
        except (NotImplementedError, RuntimeError):  # not the main thread (tests) or no signals here
            pass


def _safe(url: str) -> str:
    return make_url(database_url(url)).render_as_string(hide_password=True)
