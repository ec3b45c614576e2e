"""The collector's PublishResponse decoder (agent/collector/fast_publish.py) gives exactly what asyncua's own
decoder gives, for messages encoded by asyncua's encoder: the usual data changes it reads itself, and everything
else (events, status changes, arrays, diagnostics, picoseconds, cut data) it leaves to asyncua."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asyncua import ua
from asyncua.client import ua_session
from asyncua.common.utils import Buffer
from asyncua.ua.ua_binary import struct_from_binary, struct_to_binary

from agent.collector import fast_publish
from agent.collector.fast_publish import _Declined, decode_publish_response, publish_response_from_binary

_BASE = datetime(2026, 12, 2, tzinfo=UTC)


def _scalar(rng: random.Random) -> ua.Variant:
    VT = ua.VariantType
    choice = rng.randrange(12)
    if choice == 0:
        return ua.Variant(rng.random() > 0.5, VT.Boolean)
    if choice == 1:
        return ua.Variant(rng.randrange(-(2**31), 2**31), VT.Int32)
    if choice == 2:
        return ua.Variant(rng.randrange(2**32), VT.UInt32)
    if choice == 3:
        return ua.Variant(rng.uniform(-1e6, 1e6), VT.Double)
    if choice == 4:
        return ua.Variant(rng.choice([0.0, 1.5, -2.25, 1e30]), VT.Float)
    if choice == 5:
        return ua.Variant(rng.randrange(-(2**63), 2**63), VT.Int64)
    if choice == 6:
        return ua.Variant(rng.randrange(2**64), VT.UInt64)
    if choice == 7:
        return ua.Variant(rng.choice(["O4711", "", "Ölwechsel 🔧", None]), VT.String)
    if choice == 8:
        return ua.Variant(_BASE + timedelta(microseconds=rng.randrange(10**12)), VT.DateTime)
    if choice == 9:
        return ua.Variant(rng.randrange(-128, 128), VT.SByte)
    if choice == 10:
        return ua.Variant(rng.randrange(65536), VT.UInt16)
    return ua.Variant(rng.randrange(-32768, 32768), VT.Int16)


def _data_value(rng: random.Random, unusual: bool) -> ua.DataValue:
    kwargs: dict[str, Any] = {}
    if rng.random() < 0.95:
        kwargs["Value"] = _scalar(rng)
    if unusual and rng.random() < 0.3:
        kwargs["Value"] = rng.choice(
            [ua.Variant([1, 2, 3], ua.VariantType.Int32), ua.Variant(b"\x00\x01", ua.VariantType.ByteString)]
        )
    if rng.random() < 0.3:
        kwargs["StatusCode"] = ua.StatusCode(rng.choice([0, ua.StatusCodes.UncertainLastUsableValue, 0x80000000]))
    if rng.random() < 0.9:
        kwargs["SourceTimestamp"] = _BASE + timedelta(microseconds=rng.randrange(10**12))
    if rng.random() < 0.7:
        kwargs["ServerTimestamp"] = _BASE + timedelta(microseconds=rng.randrange(10**12))
    if unusual and rng.random() < 0.3:
        kwargs["SourcePicoseconds"] = rng.randrange(10000)
    return ua.DataValue(**kwargs)


def _response(rng: random.Random, unusual: bool) -> ua.PublishResponse:
    notifications: list[Any] = []
    for _ in range(rng.choice([0, 1, 1, 1, 2])):
        items = [
            ua.MonitoredItemNotification(ClientHandle=rng.randrange(2**32), Value=_data_value(rng, unusual))
            for _ in range(rng.choice([0, 1, 2, 5]))
        ]
        if unusual and rng.random() < 0.1:
            items = None  # type: ignore[assignment]  # a null array (-1)
        notifications.append(ua.DataChangeNotification(MonitoredItems=items, DiagnosticInfos=rng.choice([[], None])))
    if unusual and rng.random() < 0.3:
        notifications.append(ua.StatusChangeNotification(Status=ua.StatusCode(ua.StatusCodes.BadTimeout)))
    if unusual and rng.random() < 0.3:
        notifications.append(ua.EventNotificationList(Events=[ua.EventFieldList(ClientHandle=3, EventFields=[])]))
    response = ua.PublishResponse()
    response.ResponseHeader.Timestamp = _BASE + timedelta(seconds=rng.randrange(10**6))
    response.ResponseHeader.RequestHandle = rng.randrange(2**32)
    response.ResponseHeader.StringTable = rng.choice([[], None])  # type: ignore[assignment]
    if unusual and rng.random() < 0.3:
        response.ResponseHeader.ServiceDiagnostics = ua.DiagnosticInfo(SymbolicId=3)
    if unusual and rng.random() < 0.1:
        notifications = None  # type: ignore[assignment]  # a null array (-1): asyncua's decoder gives None
    response.Parameters = ua.PublishResult(
        SubscriptionId=rng.randrange(1, 2**32),
        AvailableSequenceNumbers=rng.choice([[], None, [rng.randrange(2**32) for _ in range(3)]]),  # type: ignore[arg-type]
        MoreNotifications=rng.random() < 0.5,
        NotificationMessage=ua.NotificationMessage(
            SequenceNumber=rng.randrange(2**32), PublishTime=_BASE, NotificationData=notifications
        ),
        Results=rng.choice([[], None, [ua.StatusCode(0), ua.StatusCode(ua.StatusCodes.BadTimeout)]]),  # type: ignore[arg-type]
        DiagnosticInfos=rng.choice([[], None]),  # type: ignore[arg-type]
    )
    return response


@pytest.mark.parametrize("unusual", [False, True])
def test_decodes_as_asyncua_does(unusual: bool) -> None:
    rng = random.Random(7 if unusual else 3)
    fast = 0
    for _ in range(3000):
        blob = struct_to_binary(_response(rng, unusual))
        expected = struct_from_binary(ua.PublishResponse, Buffer(blob))
        buffer = Buffer(blob)
        assert publish_response_from_binary(buffer) == expected
        assert len(buffer) == 0  # consumed, as asyncua's decoder leaves it
        fast += _read_by_fast_path(blob)
    if unusual:
        assert 300 < fast < 2700  # both paths taken
    else:
        assert fast == 3000  # the usual shape is always read by the fast path


def _read_by_fast_path(blob: bytes) -> bool:
    try:
        decode_publish_response(blob)
    except _Declined:
        return False
    return True


def test_cut_or_foreign_data_gives_asyncuas_own_outcome() -> None:
    blob = struct_to_binary(_response(random.Random(1), False))
    foreign = struct_to_binary(ua.ReadResponse())
    for data in [blob[:cut] for cut in (0, 3, 10, 40, len(blob) - 1)] + [foreign]:
        with pytest.raises(Exception) as theirs:
            struct_from_binary(ua.PublishResponse, Buffer(data))
        with pytest.raises(type(theirs.value)):
            publish_response_from_binary(Buffer(data))


def test_install_routes_only_publish_responses() -> None:
    fast_publish.install()
    assert ua_session.struct_from_binary is fast_publish._struct_from_binary  # type: ignore[attr-defined]
    read = struct_to_binary(ua.ReadResponse())
    assert fast_publish._struct_from_binary(ua.ReadResponse, Buffer(read)) == struct_from_binary(
        ua.ReadResponse, Buffer(read)
    )
