"""A faster decoder for the PublishResponse of a data-change subscription, the one message a busy collector
receives all the time (one per machine per publishing interval with a change in it).

asyncua decodes every message with its generic decoder, a walk over each dataclass's fields built from type hints:
about 40 us for a response with two values, 14 % of the agent's CPU with 200 machines (issue 11, bench_collector).
This one reads the usual shape straight from the bytes (OPC UA Part 6, 5.2 binary encoding; Part 4, 5.13.5
Publish): data changes of scalar values, no diagnostics. It builds the same asyncua objects, field for field,
with asyncua's own constructors and its own DateTime and StatusCode conversions. Anything else it meets (events,
a status change, arrays, diagnostic infos, another type id) and it declines: asyncua's decoder reads the message
from the start, as it always did. tests/agent/test_fast_publish.py holds it equal to asyncua's decoder.

`install()` routes asyncua's client session through it (asyncua is pinned to 2.1.x in pyproject.toml).
"""

from __future__ import annotations

import struct
from typing import Any

from asyncua import ua
from asyncua.client import ua_session
from asyncua.common.utils import Buffer
from asyncua.ua.object_ids import ObjectIds
from asyncua.ua.ua_binary import get_string_encoding, struct_from_binary

_U8 = struct.Struct("<B")
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_U16 = struct.Struct("<H")
# Type id, response header (timestamp, handle, service result), empty diagnostics (mask 0).
_HEAD = struct.Struct("<4sqIIB")
_PUBLISH_RESPONSE_ID = b"\x01\x00" + _U16.pack(ObjectIds.PublishResponse_Encoding_DefaultBinary)
_DATA_CHANGE_ID = b"\x01\x00" + _U16.pack(ObjectIds.DataChangeNotification_Encoding_DefaultBinary)
_EMPTY_EXTENSION = b"\x00\x00\x00"  # AdditionalHeader: TwoByte null type id, no body

_TYPE_ID = ua.FourByteNodeId(ObjectIds.PublishResponse_Encoding_DefaultBinary)  # type: ignore[arg-type]
_win_epoch_to_datetime = ua.win_epoch_to_datetime
_Variant = ua.Variant
_DataValue = ua.DataValue
_StatusCode = ua.StatusCode
_MonitoredItemNotification = ua.MonitoredItemNotification

# Scalar variant types read here: built-in type id -> (struct, VariantType). Others decline.
_SCALARS: dict[int, tuple[struct.Struct, ua.VariantType]] = {
    vt.value: (struct.Struct(fmt), vt)
    for vt, fmt in (
        (ua.VariantType.Boolean, "<?"),
        (ua.VariantType.SByte, "<b"),
        (ua.VariantType.Byte, "<B"),
        (ua.VariantType.Int16, "<h"),
        (ua.VariantType.UInt16, "<H"),
        (ua.VariantType.Int32, "<i"),
        (ua.VariantType.UInt32, "<I"),
        (ua.VariantType.Int64, "<q"),
        (ua.VariantType.UInt64, "<Q"),
        (ua.VariantType.Float, "<f"),
        (ua.VariantType.Double, "<d"),
    )
}
_STRING = ua.VariantType.String.value
_DATETIME = ua.VariantType.DateTime.value
_NULL = ua.VariantType.Null.value


class _Declined(Exception):
    """Not the usual shape: asyncua's own decoder reads it."""


def decode_publish_response(data: bytes) -> ua.PublishResponse:
    """The PublishResponse in `data` (its encoding type id first), or _Declined."""
    try:
        type_id, stamp, handle, result, diagnostics = _HEAD.unpack_from(data, 0)
    except struct.error:
        raise _Declined from None
    if type_id != _PUBLISH_RESPONSE_ID or diagnostics != 0:
        raise _Declined
    pos = _HEAD.size
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    if count > 0:
        raise _Declined  # a string table: only with diagnostics
    string_table: list[str] | None = None if count == -1 else []
    if data[pos : pos + 3] != _EMPTY_EXTENSION:
        raise _Declined
    pos += 3
    header = ua.ResponseHeader(
        Timestamp=_win_epoch_to_datetime(stamp),
        RequestHandle=handle,
        ServiceResult=_StatusCode(result),
        ServiceDiagnostics=ua.DiagnosticInfo(),
        StringTable=string_table,  # type: ignore[arg-type]
        AdditionalHeader=ua.ExtensionObject(),
    )
    subscription_id, count = struct.unpack_from("<Ii", data, pos)
    pos += 8
    available: list[int] | None = None
    if count >= 0:
        available = list(struct.unpack_from(f"<{count}I", data, pos))
        pos += 4 * count
    more = data[pos] != 0
    sequence, published, count = struct.unpack_from("<Iqi", data, pos + 1)
    pos += 17
    if count < 0:
        raise _Declined  # a null NotificationData array: asyncua gives None for it (its subscription code then fails)
    notifications: list[Any] = []
    for _ in range(count):
        if data[pos : pos + 5] != _DATA_CHANGE_ID + b"\x01":
            raise _Declined  # events, a status change, or a body not in binary
        length = _I32.unpack_from(data, pos + 5)[0]
        pos += 9
        end = pos + length
        items, pos = _monitored_items(data, pos)
        diagnostics_count = _I32.unpack_from(data, pos)[0]
        pos += 4
        if diagnostics_count > 0 or pos != end:
            raise _Declined
        notifications.append(
            ua.DataChangeNotification(MonitoredItems=items, DiagnosticInfos=None if diagnostics_count == -1 else [])  # type: ignore[arg-type]
        )
    message = ua.NotificationMessage(
        SequenceNumber=sequence, PublishTime=_win_epoch_to_datetime(published), NotificationData=notifications
    )
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    results: list[Any] | None = None
    if count >= 0:
        results = [_StatusCode(v) for v in struct.unpack_from(f"<{count}I", data, pos)]
        pos += 4 * count
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    if count > 0 or pos != len(data):
        raise _Declined
    parameters = ua.PublishResult(
        SubscriptionId=subscription_id,
        AvailableSequenceNumbers=available,  # type: ignore[arg-type]
        MoreNotifications=more,
        NotificationMessage=message,
        Results=results,  # type: ignore[arg-type]
        DiagnosticInfos=None if count == -1 else [],  # type: ignore[arg-type]
    )
    return ua.PublishResponse(TypeId=_TYPE_ID, ResponseHeader=header, Parameters=parameters)


def _monitored_items(data: bytes, pos: int) -> tuple[list[Any], int]:
    count = _I32.unpack_from(data, pos)[0]
    pos += 4
    items = []
    for _ in range(count):
        handle, mask = struct.unpack_from("<IB", data, pos)
        pos += 5
        if mask & ~0x0F:
            # Picoseconds (or unknown bits): asyncua reads its DataValue fields in its own order (ServerTimestamp
            # before SourcePicoseconds, where Part 6 puts it after); declined, so the result stays asyncua's.
            raise _Declined
        kwargs: dict[str, Any] = {}
        if mask & 0x01:
            kwargs["Value"], pos = _variant(data, pos)
        if mask & 0x02:
            kwargs["StatusCode"] = _StatusCode(_U32.unpack_from(data, pos)[0])
            pos += 4
        if mask & 0x04:
            kwargs["SourceTimestamp"] = _win_epoch_to_datetime(_I64.unpack_from(data, pos)[0])
            pos += 8
        if mask & 0x08:
            kwargs["ServerTimestamp"] = _win_epoch_to_datetime(_I64.unpack_from(data, pos)[0])
            pos += 8
        items.append(_MonitoredItemNotification(ClientHandle=handle, Value=_DataValue(**kwargs)))
    return items, pos


def _variant(data: bytes, pos: int) -> tuple[ua.Variant, int]:
    encoding = data[pos]
    pos += 1
    scalar = _SCALARS.get(encoding)  # an array or dimensions flag (bits 7, 6) finds none: declined
    if scalar is not None:
        unpacker, vtype = scalar
        return _Variant(unpacker.unpack_from(data, pos)[0], vtype, None, is_array=False), pos + unpacker.size
    if encoding == _NULL:  # no value (a controller reporting a bad status sends none)
        return _Variant(None, ua.VariantType.Null, None, is_array=False), pos
    if encoding == _DATETIME:
        return _Variant(
            _win_epoch_to_datetime(_I64.unpack_from(data, pos)[0]), ua.VariantType.DateTime, None, is_array=False
        ), pos + 8
    if encoding == _STRING:
        length = _I32.unpack_from(data, pos)[0]
        pos += 4
        if length < 0:
            return _Variant(None, ua.VariantType.String, None, is_array=False), pos
        if pos + length > len(data):
            raise _Declined
        text = data[pos : pos + length].decode(get_string_encoding(), errors="surrogateescape")
        return _Variant(text, ua.VariantType.String, None, is_array=False), pos + length
    raise _Declined


def publish_response_from_binary(data: Buffer) -> ua.PublishResponse:
    """`decode_publish_response` where it applies, else asyncua's decoder; `data` is left as asyncua's leaves it."""
    try:
        response = decode_publish_response(bytes(data))
    except (_Declined, struct.error, IndexError):
        return struct_from_binary(ua.PublishResponse, data)
    data.skip(len(data))
    return response


def _struct_from_binary(objtype: Any, data: Any) -> Any:
    if objtype is ua.PublishResponse and isinstance(data, Buffer):
        return publish_response_from_binary(data)
    return struct_from_binary(objtype, data)


def install() -> None:
    """asyncua's client sessions decode PublishResponses here (idempotent). The session module's one use of
    struct_from_binary is for that message; every other type passes through to asyncua's own."""
    ua_session.struct_from_binary = _struct_from_binary  # type: ignore[attr-defined]
