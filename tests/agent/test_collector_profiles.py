"""The sinumerik and custom profiles end to end, and OPC UA security (Basic256Sha256 with a client certificate
and a user token) against real asyncua servers; a wrong password gives a clear error and the collector keeps
retrying. As in test_collector.py, the simulated controller's clock is moved by the test, so durations are exact."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import structlog
from asyncua import Client, ua
from conftest import free_port
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from test_collector import (
    ControllerClock,
    connected,
    eventually,
    play,
    stays,
    store_with_presets,
    usages,
)

from agent.collector import profiles, session
from agent.collector.collector import Collector
from agent.config import CollectorConfig, MachineConfig, SecurityConfig
from agent.simulator.server import CNC_NS, CncSimulator, SimMachine, SimSecurity
from agent.simulator.timeline import Step
from server.domain.entities import ToolUsage
from server.usecases.entities import utc_now


def _rsa_cert(tmp: Path, name: str, uri: str) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri), x509.DNSName("localhost")]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=True,
                data_encipherment=True,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}-cert.pem", tmp / f"{name}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
async def secure_sim(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[CncSimulator, Path]]:
    tmp = tmp_path_factory.mktemp("pki")
    cert, key = _rsa_cert(tmp, "sim", "urn:smooth-edge:test-sim")
    security = SimSecurity(certificate=cert, private_key=key, users={"collector": "s3cret"})
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/secure-sim/"
    async with CncSimulator([SimMachine("S1", "cnc", [])], endpoint, security=security) as sim:
        yield sim, tmp


def _secure_machine(sim: CncSimulator, tmp: Path, password: str) -> MachineConfig:
    cert, key = _rsa_cert(tmp, f"client-{password}", "urn:smooth-edge:collector")
    return MachineConfig(
        machine_id="S1",
        endpoint=sim.endpoint,
        profile="cnc",
        publishing_interval_ms=50,
        watchdog_s=10,
        reconnect_max_s=0.5,
        security=SecurityConfig(
            mode="SignAndEncrypt",
            certificate=cert,
            private_key=key,
            application_uri="urn:smooth-edge:collector",
            username="collector",
            password=password,
        ),
    )


async def test_security_mode_with_certificate_and_user_token(
    secure_sim: tuple[CncSimulator, Path], tmp_path: Path
) -> None:
    sim, pki = secure_sim
    store, uc, _ = await store_with_presets(tmp_path / "s.db", "S1", [4])
    try:
        async with Collector(
            CollectorConfig((_secure_machine(sim, pki, "s3cret"),)), uc.recorder, utc_now
        ) as collector:
            await connected(collector, "S1")
            await sim.apply("S1", Step(0, tool=4))

            async def recorded() -> bool:
                return len(await usages(store, "S1")) == 1

            await eventually(recorded, what="a usage over the secure session")
    finally:
        await store.__aexit__(None, None, None)
    # Without security the server does not let us in at all.
    with pytest.raises(Exception):  # noqa: B017 (asyncua raises several kinds here)
        async with Client(sim.endpoint, timeout=3) as client:
            await client.nodes.objects.get_children()


async def test_wrong_password_is_a_clear_error_and_the_collector_retries(
    secure_sim: tuple[CncSimulator, Path], tmp_path: Path
) -> None:
    sim, pki = secure_sim
    store, uc, _ = await store_with_presets(tmp_path / "w.db", "S1", [4])
    try:
        async with Collector(CollectorConfig((_secure_machine(sim, pki, "wrong"),)), uc.recorder, utc_now) as collector:

            async def retried() -> bool:
                status = collector.live_statuses()["S1"]
                return status.failed_attempts >= 3

            await eventually(retried, timeout=30, what="three failed attempts")
            status = collector.live_statuses()["S1"]
            assert not status.connected
            assert "refused our credentials" in status.last_error, status.last_error
    finally:
        await store.__aexit__(None, None, None)


@pytest.fixture(scope="module")
def clock() -> ControllerClock:
    return ControllerClock()


@pytest.fixture(scope="module")
async def plain_sim(clock: ControllerClock) -> AsyncIterator[CncSimulator]:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/profiles-sim/"
    machines = [
        SimMachine("N1", "sinumerik", []),
        SimMachine("C1", "cnc", []),
        SimMachine("V1", "umati", [], tools=2),
        SimMachine("V2", "umati", [], tools=2),
    ]
    async with CncSimulator(machines, endpoint, clock=clock) as sim:
        yield sim


async def _one_usage(
    sim: CncSimulator, clock: ControllerClock, config: MachineConfig, tmp: Path, name: str
) -> ToolUsage:
    """On simulated machine `name`: P7, then T7 in for 1 s, the spindle turning 0.5 s of it, one part made."""
    store, uc, _ = await store_with_presets(tmp / f"{name}.db", config.machine_id, [7])
    try:
        async with Collector(CollectorConfig((config,)), uc.recorder, utc_now) as collector:
            await connected(collector, config.machine_id)
            base = clock.fresh_start()
            await play(
                sim,
                clock,
                name,
                base,
                [
                    (0.5, Step(0, program="P7")),
                    (1.0, Step(0, tool=7)),
                    (1.2, Step(0, speed_rpm=3000.0)),
                    (1.7, Step(0, speed_rpm=0.0, parts=1)),
                    (2.0, Step(0, tool=0)),
                ],
            )
            [usage] = await eventually(stays(store, config.machine_id, 1, closed=1), what="a closed usage")
        assert (usage.start_time, usage.end_time) == (base + dt.timedelta(seconds=1), base + dt.timedelta(seconds=2))
        assert usage.usage_metrics["time_in_spindle_s"] == 1.0 and usage.usage_metrics["spindle_runtime_s"] == 0.5
        assert usage.usage_metrics["programs"] == ["P7"] and usage.program_name == "P7"
        return usage
    finally:
        await store.__aexit__(None, None, None)


async def test_sinumerik_profile(plain_sim: CncSimulator, clock: ControllerClock, tmp_path: Path) -> None:
    config = MachineConfig(
        machine_id="N1",
        endpoint=plain_sim.endpoint,
        profile="sinumerik",
        channel="1",
        publishing_interval_ms=50,
        watchdog_s=10,
        reconnect_max_s=0.5,
    )
    usage = await _one_usage(plain_sim, clock, config, tmp_path, "N1")
    assert usage.usage_metrics["tool_number"] == 7 and usage.usage_metrics["max_speed_rpm"] == 3000
    assert usage.usage_metrics["parts"] == 1


async def test_sinumerik_spindle_selection(plain_sim: CncSimulator, clock: ControllerClock, tmp_path: Path) -> None:
    # Spindle 2 of the channel (the simulator's counter-spindle turns at half speed): [u1,2] is followed.
    config = MachineConfig(
        machine_id="N1",
        endpoint=plain_sim.endpoint,
        profile="sinumerik",
        channel="1",
        spindle="2",
        publishing_interval_ms=50,
        watchdog_s=10,
        reconnect_max_s=0.5,
    )
    usage = await _one_usage(plain_sim, clock, config, tmp_path, "N1")
    assert usage.usage_metrics["tool_number"] == 7 and usage.usage_metrics["max_speed_rpm"] == 1500


async def test_custom_profile_with_namespace_uris(
    plain_sim: CncSimulator, clock: ControllerClock, tmp_path: Path
) -> None:
    # Find the simulator's numeric NodeIds the way an integrator would, then name them by namespace URI.
    async with Client(plain_sim.endpoint) as client:
        ns = await client.get_namespace_index(CNC_NS)
        root = await client.nodes.objects.get_child([f"{ns}:CncInterface"])
        channel = await root.get_child([f"{ns}:CncChannelList", f"{ns}:Channel2"])
        spindle = await root.get_child([f"{ns}:CncSpindleList", f"{ns}:Spindle2"])
        ids = {
            "tool": (await channel.get_child([f"{ns}:ToolId"])).nodeid.Identifier,
            "speed": (await spindle.get_child([f"{ns}:ActSpeed"])).nodeid.Identifier,
            "program": (await channel.get_child([f"{ns}:ActMainProgramName"])).nodeid.Identifier,
        }
    nodes = {signal: f"nsu={CNC_NS};i={ident}" for signal, ident in ids.items()}
    config = MachineConfig(
        machine_id="C1",
        endpoint=plain_sim.endpoint,
        profile="custom",
        nodes=nodes,
        publishing_interval_ms=50,
        watchdog_s=10,
        reconnect_max_s=0.5,
    )
    usage = await _one_usage(plain_sim, clock, config, tmp_path, "C1")
    assert usage.usage_metrics["tool_number"] == 7 and usage.usage_metrics["max_speed_rpm"] == 3000


def test_controller_values_are_read_whatever_type_arrives() -> None:
    # Untrusted input: a defined reading for every value, or a ProfileError that says what does not fit (retried
    # like any mismatch of the address space), never an error that would stop the machine's session as a bug.
    assert [profiles.whole_number("tool", v) for v in (None, 5, 5.0, 5.9, "12", True)] == [0, 5, 5, 5, 12, 1]
    for bad in ("T5", "5.0", float("nan"), float("inf"), -1, object()):
        with pytest.raises(profiles.ProfileError, match=r"^tool: "):
            profiles.whole_number("tool", bad)
    assert [profiles.to_number(v) for v in (2.5, "2.5", -3, None, "x", float("nan"), float("inf"))] == [
        2.5,
        2.5,
        -3.0,
        0.0,
        0.0,
        0.0,
        0.0,
    ]
    for odd in (None, "x", float("nan"), float("inf"), object()):
        assert profiles.operation_mode("cnc", odd) == "OTHER"
        assert profiles.spindle_turning(odd) is False and profiles.program_running(odd) is False
    assert profiles.operation_mode("cnc", 1.0) == "MDA" and profiles.spindle_turning(2) is True


async def test_umati_machine_key_names_one_of_several_or_takes_the_only_one(plain_sim: CncSimulator) -> None:
    config = MachineConfig(machine_id="LATHE", endpoint=plain_sim.endpoint, profile="umati")
    async with Client(plain_sim.endpoint) as client:
        with pytest.raises(profiles.ProfileError, match=r"2 machines \(V1, V2\): name one with machine"):
            await profiles.resolve(client, config)
        signals = await profiles.resolve(client, replace(config, machine="V2"))
        assert len(signals.last_usage) == 2 and "rotating" in signals.nodes
        with pytest.raises(profiles.ProfileError, match="no child named 'V3'"):
            await profiles.resolve(client, replace(config, machine="V3"))


def test_last_error_names_the_opc_ua_status_and_what_to_check() -> None:
    lost = session.SubscriptionLost(
        ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadServerNotConnected))
    )
    text = session._describe(lost)
    assert text.startswith("BadServerNotConnected: ") and "check that its OPC UA server runs" in text
    assert "StatusChangeNotification" not in text
    unknown = session._describe(session.SubscriptionLost(ua.StatusCode(ua.StatusCodes.BadInternalError)))
    assert unknown.startswith("BadInternalError: ")


def test_asyncua_tracebacks_go_through_structlog() -> None:
    library = logging.getLogger("asyncua.client.ua_session.UaSession")
    with structlog.testing.capture_logs() as logs:
        try:
            raise ConnectionError("Connection is closed")
        except ConnectionError:
            library.exception("Publish iteration crashed; retrying in 1s")
    [entry] = [e for e in logs if e["event"] == "asyncua.log"]
    assert entry["message"] == "Publish iteration crashed; retrying in 1s" and entry["log_level"] == "error"
    assert entry["exc_info"][0] is ConnectionError


async def test_the_simulator_stamps_a_value_when_it_changes_not_when_it_is_written_again(
    plain_sim: CncSimulator, clock: ControllerClock
) -> None:
    """OPC UA Part 4 (DataValue): the SourceTimestamp is when the value last changed. The simulated controller
    keeps it when a step writes a value the variable already has (the spindle status of a speed change)."""
    base = clock.fresh_start()
    await play(plain_sim, clock, "C1", base, [(0, Step(0, tool=3, speed_rpm=1000.0)), (5, Step(0, speed_rpm=2000.0))])
    async with Client(plain_sim.endpoint) as client:
        ns = await client.get_namespace_index(CNC_NS)
        root = client.nodes.objects
        spindle = await root.get_child([f"{ns}:CncInterface", f"{ns}:CncSpindleList", f"{ns}:Spindle2"])
        channel = await root.get_child([f"{ns}:CncInterface", f"{ns}:CncChannelList", f"{ns}:Channel2"])
        speed = await (await spindle.get_child(f"{ns}:ActSpeed")).read_data_value()
        status = await (await spindle.get_child(f"{ns}:ActStatus")).read_data_value()
        tool = await (await channel.get_child(f"{ns}:ToolId")).read_data_value()
    assert speed.Value is not None and speed.Value.Value == 2000.0
    assert speed.SourceTimestamp == base + dt.timedelta(seconds=5)
    assert status.SourceTimestamp == base and tool.SourceTimestamp == base
