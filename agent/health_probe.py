"""`smooth-edge health`: ask a running agent's gRPC health service (grpc.health.v1) whether it serves, for a
container's HEALTHCHECK or any supervisor (issue 14, item 4). Exit 0 when SERVING, 1 otherwise, with why on stderr.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class ProbeTls:
    ca: Path  # the CA of the server's certificate
    cert: Path | None = None  # a client certificate, where the server asks for one (mutual TLS)
    key: Path | None = None
    server_name: str = ""  # the name the server's certificate carries, when the target is another (127.0.0.1)


@dataclass(frozen=True, slots=True)
class ProbeResult:
    serving: bool
    status: str  # SERVING, NOT_SERVING, SERVICE_UNKNOWN, UNKNOWN, or the gRPC code of a failed call
    detail: str = ""


def probe(
    target: str, service: str = "", *, tls: ProbeTls | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> ProbeResult:
    """One Health/Check call to `target` for `service` ("" is the agent as a whole)."""
    options: list[tuple[str, str | int]] = []
    if tls is None:
        channel = grpc.insecure_channel(target)
    else:
        chain = tls.cert.read_bytes() if tls.cert else None
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes(),
            private_key=tls.key.read_bytes() if tls.key else None,
            certificate_chain=chain,
        )
        if tls.server_name:
            options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel = grpc.secure_channel(target, credentials, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
        except grpc.RpcError as exc:
            code: grpc.StatusCode = exc.code()
            if code == grpc.StatusCode.NOT_FOUND:
                return ProbeResult(False, "SERVICE_UNKNOWN", f"the server has no health service named {service!r}")
            return ProbeResult(False, code.name, str(exc.details()))
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    return ProbeResult(reply.status == health_pb2.HealthCheckResponse.SERVING, status)


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], default_target: str) -> None:
    """`smooth-edge health`."""
    health = sub.add_parser("health", help="check a running agent's gRPC health (exit 0 when it serves)")
    health.add_argument("--target", default=default_target, help="the agent's gRPC address (default %(default)s)")
    health.add_argument("--service", default="", help='a health service name (default "": the agent as a whole)')
    health.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds (default %(default)s)")
    health.add_argument("--ca", type=Path, help="PEM CA of the server's certificate: check over TLS")
    health.add_argument("--cert", type=Path, help="PEM client certificate, for a server that asks for one (mTLS)")
    health.add_argument("--key", type=Path, help="PEM private key of --cert")
    health.add_argument("--server-name", default="", help="the name in the server's certificate, if not the target's")


def run_command(args: argparse.Namespace) -> int:
    if bool(args.cert) != bool(args.key):
        print("smooth-edge: --cert and --key go together", file=sys.stderr)
        return 2
    if args.cert and not args.ca:
        print("smooth-edge: --cert needs --ca (a client certificate is only sent over TLS)", file=sys.stderr)
        return 2
    tls = ProbeTls(args.ca, args.cert, args.key, args.server_name) if args.ca else None
    result = probe(args.target, args.service, tls=tls, timeout_s=args.timeout)
    name = f"service {args.service!r}" if args.service else "the agent"
    if result.serving:
        print(f"{args.target}: {name} is SERVING")
        return 0
    detail = f" ({result.detail})" if result.detail else ""
    print(f"smooth-edge: {args.target}: {name} is {result.status}{detail}", file=sys.stderr)
    return 1
