"""TLS and mutual TLS on the gRPC listener, with certificates generated at test time."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from conftest import Edge, Stubs, start_edge
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from smooth.core.v1 import tool_item_pb2 as item_pb

from agent.grpc_client import authorized_channel
from server.api.server import TlsConfig


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    server: bool = False,
) -> x509.Certificate:
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer[0] if issuer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    elif not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def _pem(obj: x509.Certificate | ec.EllipticCurvePrivateKey) -> bytes:
    if isinstance(obj, x509.Certificate):
        return obj.public_bytes(serialization.Encoding.PEM)
    return obj.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Pki:
    def __init__(self) -> None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _cert("Smooth test CA", ca_key, None, ca=True)
        server_key, client_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        self.ca = _pem(ca)
        self.server_cert = _pem(_cert("localhost", server_key, (ca.subject, ca_key), server=True))
        self.server_key = _pem(server_key)
        self.client_cert = _pem(_cert("presetter-2", client_key, (ca.subject, ca_key)))
        self.client_key = _pem(client_key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    return Pki()


async def _list(edge: Edge, credentials: grpc.ChannelCredentials) -> None:
    async with authorized_channel(f"localhost:{edge.server.port}", edge.admin_secret, credentials) as channel:
        await Stubs(channel).items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1), timeout=10)


@pytest.fixture
async def tls_edge(tmp_path: Path, pki: Pki) -> AsyncIterator[Edge]:
    async for edge in start_edge(str(tmp_path / "tls.db"), tls=TlsConfig(pki.server_cert, pki.server_key)):
        yield edge


@pytest.fixture
async def mtls_edge(tmp_path: Path, pki: Pki) -> AsyncIterator[Edge]:
    async for edge in start_edge(str(tmp_path / "mtls.db"), tls=TlsConfig(pki.server_cert, pki.server_key, pki.ca)):
        yield edge


async def test_tls(tls_edge: Edge, pki: Pki) -> None:
    await _list(tls_edge, grpc.ssl_channel_credentials(root_certificates=pki.ca))
    # A plaintext client cannot talk to a TLS listener.
    async with authorized_channel(f"localhost:{tls_edge.server.port}", tls_edge.admin_secret) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await Stubs(plain).items.ListToolItems(item_pb.ListToolItemsRequest(), timeout=5)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_mtls_requires_a_client_certificate(mtls_edge: Edge, pki: Pki) -> None:
    await _list(
        mtls_edge,
        grpc.ssl_channel_credentials(
            root_certificates=pki.ca, private_key=pki.client_key, certificate_chain=pki.client_cert
        ),
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _list(mtls_edge, grpc.ssl_channel_credentials(root_certificates=pki.ca))
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    # A certificate from another CA is refused too.
    stranger = Pki()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _list(
            mtls_edge,
            grpc.ssl_channel_credentials(
                root_certificates=pki.ca, private_key=stranger.client_key, certificate_chain=stranger.client_cert
            ),
        )
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE


def test_serve_command_takes_tls_files(tmp_path: Path, pki: Pki) -> None:
    """The flags wire through: `smooth-edge serve --tls-cert --tls-key --tls-client-ca` serves mutual TLS."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    from grpc_health.v1 import health_pb2, health_pb2_grpc

    files = {"cert": pki.server_cert, "key": pki.server_key, "ca": pki.ca}
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agent.cli",
            "serve",
            "--migrate",
            "--db",
            str(tmp_path / "e.db"),
            "--listen",
            f"127.0.0.1:{port}",
            "--tls-cert",
            str(tmp_path / "cert.pem"),
            "--tls-key",
            str(tmp_path / "key.pem"),
            "--tls-client-ca",
            str(tmp_path / "ca.pem"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # Poll the health service over mTLS until it says SERVING, for 60 s at most.
        creds = grpc.ssl_channel_credentials(pki.ca, pki.client_key, pki.client_cert)
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            with grpc.secure_channel(f"localhost:{port}", creds) as channel:
                try:
                    status = (
                        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1).status
                    )
                except grpc.RpcError:  # not listening yet
                    status = None
            if status == health_pb2.HealthCheckResponse.SERVING:
                break
            assert time.monotonic() < deadline, f"server did not become SERVING within 60 s (last: {status})"
            time.sleep(0.2)
        with grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials(pki.ca)) as channel:
            with pytest.raises(grpc.RpcError):
                health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
