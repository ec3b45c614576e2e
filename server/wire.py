"""The contract's codec for replicated change records: `Revision` <-> `smooth.core.v1.Change`, shared by central's
SyncService (server/api) and the edge's central client (agent/replicator), so both sides read a change alike.

Operations are table-driven; CHANGE_OPERATION_UNSPECIFIED (or any unknown number) from the wire is a defect.
What is malformed about an arriving change is kept as its `defect`: the apply rejects that change alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from smooth.core.v1 import common_pb2, sync_pb2

from server.domain.entities import ChangeOperation, Revision
from server.domain.schema import compact_json, load_json

_OPERATIONS = {
    ChangeOperation.CREATE: common_pb2.CHANGE_OPERATION_CREATE,
    ChangeOperation.UPDATE: common_pb2.CHANGE_OPERATION_UPDATE,
    ChangeOperation.DELETE: common_pb2.CHANGE_OPERATION_DELETE,
}
_FROM_WIRE = {v: k for k, v in _OPERATIONS.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NIL = uuid.UUID(int=0)


def change_to_proto(change: Revision) -> sync_pb2.Change:
    msg = sync_pb2.Change(
        seq=change.sequence,
        tx_id=str(change.tx_id or ""),
        entity_type=change.entity_type,
        entity_id=str(change.entity_id),
        version=change.version,
        operation=_OPERATIONS[ChangeOperation(change.operation)],
        data_json=data_json(change),
        actor_id=str(change.actor_id or ""),
        request_id=change.request_id,
    )
    msg.change_time.FromDatetime(change.change_time)
    return msg


def change_from_proto(msg: sync_pb2.Change) -> Revision:
    """A change as it arrived. What is malformed about it (ids, operation, time, JSON) is kept as its `defect`,
    so the apply rejects that change alone and applies the rest of its batch (as central does with a push)."""
    defects: list[str] = []

    def parse(what: str, convert: Callable[[], Any], default: Any) -> Any:
        try:
            return convert()
        except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
            defects.append(f"{what}: {str(exc)[:200] or type(exc).__name__}")
            return default

    data = parse("data_json", lambda: load_json(msg.data_json), {})
    if not isinstance(data, dict):
        defects.append("data_json: must be a JSON object")
        data = {}
    return Revision(
        sequence=msg.seq,
        entity_type=msg.entity_type,
        entity_id=parse("entity_id", lambda: uuid.UUID(msg.entity_id), _NIL),
        version=msg.version,
        operation=parse("operation", lambda: _FROM_WIRE[msg.operation], ChangeOperation.UPDATE),
        change_time=parse("change_time", lambda: _datetime(msg.change_time), _EPOCH),
        actor_id=parse("actor_id", lambda: uuid.UUID(msg.actor_id) if msg.actor_id else None, None),
        request_id=msg.request_id,
        snapshot=data,
        tx_id=parse("tx_id", lambda: uuid.UUID(msg.tx_id) if msg.tx_id else None, None),
        snapshot_json=msg.data_json if not defects else "",
        defect="; ".join(defects),
    )


def data_json(change: Revision) -> str:
    """The change's snapshot as JSON text (as stored when it is at hand)."""
    return change.snapshot_json or compact_json(change.snapshot)


def _datetime(ts: Any) -> datetime:  # a google.protobuf Timestamp (no type stubs here)
    if not 0 <= ts.nanos < 1_000_000_000:
        raise ValueError("nanos must be in [0, 1e9)")
    try:
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    except (ValueError, OverflowError):
        raise ValueError("out of range (years 1 to 9999)") from None
