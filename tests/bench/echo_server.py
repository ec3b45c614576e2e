"""A bare grpc.aio echo server: the baseline that tests/bench/bench_api.py compares Smooth Edge against.

Every unary-unary method (the bench calls /bench.Echo/Echo) answers with the request bytes unchanged: no
protobuf, interceptors, logging or database, so it costs what the grpc.aio stack alone costs. Prints the
port it bound on stdout, then serves until SIGTERM/SIGINT, or until stdin closes with --exit-on-stdin-eof.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import grpc


async def _echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


class EchoAnyMethod(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc ships no type stubs
    """Serves any method name, so the client needs no .proto for the baseline."""

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
        # No (de)serializers: the handler gets and returns raw bytes, so only the payload size matters.
        return grpc.unary_unary_rpc_method_handler(_echo)


async def serve(host: str, *, exit_on_stdin_eof: bool) -> None:
    # Same listening option as the real server (server/api/server.py), so both bind the same way.
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((EchoAnyMethod(),))
    port = server.add_insecure_port(f"{host}:0")
    if port == 0:
        raise OSError(f"cannot listen on {host}:0")
    await server.start()
    # The parent reads this line to learn the port: port 0 avoids the race of picking a free port up front.
    print(port, flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if exit_on_stdin_eof:
        # The bench holds our stdin open; EOF means it went away (even by SIGKILL), so don't linger as an orphan.
        fd = sys.stdin.fileno()

        def _on_stdin() -> None:
            if not os.read(fd, 4096):
                loop.remove_reader(fd)
                stop.set()

        loop.add_reader(fd, _on_stdin)
    await stop.wait()
    await server.stop(grace=0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s); port is free")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (the parent process is gone)"
    )
    args = parser.parse_args(argv)
    asyncio.run(serve(args.host, exit_on_stdin_eof=args.exit_on_stdin_eof))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
