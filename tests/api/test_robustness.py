"""No request, however malformed, gets UNKNOWN or INTERNAL: random and mutated bytes into every method of
every service, over a real channel."""

from __future__ import annotations

import random

import grpc
import pytest
from conftest import Edge, Factory, struct
from google.protobuf import message_factory

from server.api.services import PROTO_MODULES

FORBIDDEN = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}


def _methods() -> list[tuple[str, type]]:
    out = []
    for module in PROTO_MODULES.values():
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                out.append((f"/{service.full_name}/{method.name}", message_factory.GetMessageClass(method.input_type)))
    return out


def _mutations(seed_bytes: bytes, rng: random.Random, n: int) -> list[bytes]:
    out = [b"", b"\x00", b"\xff" * 8, bytes(rng.getrandbits(8) for _ in range(64))]
    for _ in range(n):
        data = bytearray(seed_bytes)
        for _ in range(rng.randint(1, 4)):
            if data and rng.random() < 0.7:
                data[rng.randrange(len(data))] = rng.getrandbits(8)
            else:
                data.insert(rng.randrange(len(data) + 1), rng.getrandbits(8))
        out.append(bytes(data))
    return out


async def test_garbage_never_yields_internal_or_unknown(edge: Edge, make: Factory) -> None:
    rng = random.Random(20261127)
    item = await make.item(geometry=struct({"DC": 10, "NOF": 4, "OAL": 72}))
    instance = await make.instance(tool_item_id=item.id)
    bad: list[str] = []
    calls = 0
    for path, request_cls in _methods():
        call = edge.channel.unary_unary(path)  # raw bytes in, raw bytes out
        seed = request_cls()
        for name in ("id", "filter", "order_by"):
            if name in seed.DESCRIPTOR.fields_by_name:
                setattr(seed, name, instance.id if name == "id" else 'name = "x"')
        for payload in _mutations(seed.SerializeToString(), rng, 25):
            calls += 1
            try:
                await call(payload, timeout=10)
            except grpc.aio.AioRpcError as err:
                if err.code() in FORBIDDEN:
                    bad.append(f"{path} {payload!r}: {err.code().name} {err.details()}")
    assert calls > 500
    assert not bad, "\n".join(bad[:10])


@pytest.mark.parametrize(
    "filter_text",
    [
        'created_at > "9999-12-31T23:59:59-14:00"',
        'created_at > "0001-01-01T00:00:00+14:00"',
        'name = "nul\\x00"',
        'id = "' + "f" * 500 + '"',
    ],
)
async def test_extreme_filter_values(edge: Edge, filter_text: str) -> None:
    from smooth.core.v1 import tool_item_pb2 as pb

    try:
        await edge.stubs.items.ListToolItems(pb.ListToolItemsRequest(filter=filter_text))
    except grpc.aio.AioRpcError as err:
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()


async def test_nul_inside_json_is_refused(make: Factory) -> None:
    from conftest import expect_failure

    err = await expect_failure(make.item(geometry=struct({"DC": 10, "NOF": 4, "OAL": 72, "x-note": "a\x00b"})))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == ["geometry"]
