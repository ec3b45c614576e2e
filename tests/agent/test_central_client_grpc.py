"""The gRPC `CentralClient`'s own edge: its wire codec round-trips a change and keeps what is malformed as the
change's defect; every gRPC status central can answer comes back as our error (the one table in grpc_central.py,
the inverse of server/api/errors.py); a central nobody serves is transient, a wrong key permanent."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from conftest import Edge, start_edge
from test_central_client_contract import creations

from agent.replicator.errors import CentralFailed, SequenceGap, is_transient
from agent.replicator.grpc_central import GrpcCentralClient, error_from_status
from server.api.errors import to_status
from server.domain import errors as e
from server.domain.entities import ChangeOperation
from server.wire import change_from_proto, change_to_proto


@pytest.mark.parametrize("operation", list(ChangeOperation))
@pytest.mark.parametrize("with_ids", [True, False])
def test_a_change_round_trips_through_the_wire(operation: ChangeOperation, with_ids: bool) -> None:
    (change,) = creations(7, 1)
    change = replace(
        change,
        operation=operation,
        actor_id=uuid.uuid4() if with_ids else None,
        tx_id=uuid.uuid4() if with_ids else None,
        request_id="req-1" if with_ids else "",
    )
    arrived = change_from_proto(change_to_proto(change))
    assert arrived.defect == "" and arrived.snapshot_json
    assert replace(arrived, snapshot_json="") == change


def test_a_malformed_change_is_kept_with_its_defect() -> None:
    msg = change_to_proto(creations(1, 1)[0])
    msg.entity_id, msg.tx_id, msg.actor_id, msg.operation, msg.data_json = "x", "y", "z", 0, "[1]"
    msg.change_time.nanos = -1
    arrived = change_from_proto(msg)
    for what in ("entity_id", "tx_id", "actor_id", "operation", "change_time", "data_json"):
        assert f"{what}:" in arrived.defect
    assert arrived.snapshot == {} and arrived.snapshot_json == "" and arrived.sequence == 1


def _call_failed(
    code: grpc.StatusCode, details: str, trailing: grpc.aio.Metadata | None = None
) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), trailing or grpc.aio.Metadata(), details)


def _answered(error: e.SmoothError) -> grpc.aio.AioRpcError:
    """The failed call a client sees when central's error mapping answers `error`."""
    status = to_status(error)
    code = next(c for c in grpc.StatusCode if c.value[0] == status.code)
    trailing = grpc.aio.Metadata(("grpc-status-details-bin", status.SerializeToString()))
    return _call_failed(code, status.message, trailing)


@pytest.mark.parametrize(
    "sent",
    [
        e.InvalidArgument.of([e.FieldViolation("changes", "sequences must increase")]),
        e.NotFound("no such thing"),
        e.AlreadyExists("taken", reason="UNIQUE_VIOLATION"),
        e.Aborted("collided", reason="WRITE_CONFLICT"),
        e.FailedPrecondition("newer", reason="SCHEMA_AHEAD", metadata={"central_schema": "0003"}),
        e.Unauthenticated("who are you", reason="BAD_KEY"),
        e.PermissionDenied("not yours", reason="ORIGIN_OF_ANOTHER_KEY"),
        e.Unavailable("database down", reason="DATABASE_UNAVAILABLE"),
    ],
    ids=lambda err: type(err).__name__,
)
def test_central_s_errors_come_back_as_ours(sent: e.SmoothError) -> None:
    got = error_from_status(_answered(sent))
    assert type(got) is type(sent)
    assert (got.reason, got.metadata, got.violations) == (sent.reason, sent.metadata, sent.violations)
    assert sent.message in got.message
    assert is_transient(got) == isinstance(sent, e.Unavailable | e.Aborted)


def test_a_sequence_gap_carries_central_s_watermark() -> None:
    got = error_from_status(
        _answered(e.FailedPrecondition("resend", reason="SEQUENCE_GAP", metadata={"watermark": "42"}))
    )
    assert isinstance(got, SequenceGap) and got.watermark == 42 and is_transient(got)


@pytest.mark.parametrize(
    ("code", "expected", "transient"),
    [
        (grpc.StatusCode.UNAVAILABLE, e.Unavailable, True),
        (grpc.StatusCode.DEADLINE_EXCEEDED, e.Unavailable, True),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, e.Unavailable, True),
        (grpc.StatusCode.CANCELLED, e.Unavailable, True),
        (grpc.StatusCode.ABORTED, e.Aborted, True),
        (grpc.StatusCode.INTERNAL, CentralFailed, False),
        (grpc.StatusCode.UNKNOWN, CentralFailed, False),
        (grpc.StatusCode.UNIMPLEMENTED, CentralFailed, False),
        (grpc.StatusCode.DATA_LOSS, CentralFailed, False),
        (grpc.StatusCode.PERMISSION_DENIED, e.PermissionDenied, False),
    ],
)
def test_a_bare_status_is_classified_by_its_code(
    code: grpc.StatusCode, expected: type[e.SmoothError], transient: bool
) -> None:
    got = error_from_status(_call_failed(code, "something"))
    assert type(got) is expected and got.reason == code.name and is_transient(got) == transient


async def test_a_central_nobody_serves_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with GrpcCentralClient(f"127.0.0.1:{port}", "key", watermark_timeout_s=5) as client:
        with pytest.raises(e.Unavailable) as err:
            await client.watermark(uuid.uuid4())
    assert is_transient(err.value)


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Edge]:
    async for c in start_edge(str(tmp_path / "central.db"), central=True):
        yield c


async def test_a_wrong_key_is_permanent(central: Edge) -> None:
    async with GrpcCentralClient(central.address, "sk_not_a_key") as client:
        with pytest.raises(e.Unauthenticated) as err:
            await client.watermark(uuid.uuid4())
    assert not is_transient(err.value)


async def test_a_closed_client_is_not_reopened(central: Edge) -> None:
    client = GrpcCentralClient(central.address, central.admin_secret)
    async with client:
        assert await client.watermark(uuid.uuid4()) == 0
    with pytest.raises(RuntimeError):
        await client.watermark(uuid.uuid4())
    with pytest.raises(RuntimeError):
        await client.__aenter__()
