"""The replicator's wire form: a change record (`Revision`) <-> `smooth.core.v1.Change`, and the replicator's
status -> `ReplicationStatus`. Pure functions; the gRPC client and the composition root call them.

Operations are table-driven; CHANGE_OPERATION_UNSPECIFIED (or any unknown number) from the wire is malformed.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from smooth.core.v1 import common_pb2, sync_pb2

from agent.replicator.status import ReplicatorStatus
from server.domain.entities import ChangeOperation, Revision
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.schema import compact_json

_OPERATIONS = {
    ChangeOperation.CREATE: common_pb2.CHANGE_OPERATION_CREATE,
    ChangeOperation.UPDATE: common_pb2.CHANGE_OPERATION_UPDATE,
    ChangeOperation.DELETE: common_pb2.CHANGE_OPERATION_DELETE,
}
_FROM_WIRE = {v: k for k, v in _OPERATIONS.items()}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS_SIZE = 256  # a change's bytes on the wire besides its snapshot: ids, type, version, time, tags


def change_to_proto(change: Revision) -> sync_pb2.Change:
    msg = sync_pb2.Change(
        seq=change.sequence,
        tx_id=str(change.tx_id or ""),
        entity_type=change.entity_type,
        entity_id=str(change.entity_id),
        version=change.version,
        operation=_OPERATIONS[ChangeOperation(change.operation)],
        data_json=_data_json(change),
        actor_id=str(change.actor_id or ""),
        request_id=change.request_id,
    )
    msg.change_time.FromDatetime(change.change_time)
    return msg


def change_from_proto(msg: sync_pb2.Change, index: int) -> Revision:
    """A change as central sent it; anything malformed is an `InvalidArgument` naming `changes.<index>`."""
    try:
        data = json.loads(msg.data_json)
        if not isinstance(data, dict):
            raise ValueError("data_json must be a JSON object")
        return Revision(
            sequence=msg.seq,
            entity_type=msg.entity_type,
            entity_id=uuid.UUID(msg.entity_id),
            version=msg.version,
            operation=_FROM_WIRE[msg.operation],
            change_time=_datetime(msg.change_time),
            actor_id=uuid.UUID(msg.actor_id) if msg.actor_id else None,
            request_id=msg.request_id,
            snapshot=data,
            tx_id=uuid.UUID(msg.tx_id) if msg.tx_id else None,
            snapshot_json=msg.data_json,
        )
    except (ValueError, KeyError, RecursionError) as exc:
        raise InvalidArgument.of([FieldViolation(f"changes.{index}", f"malformed change: {exc!r}")]) from None


def wire_size(change: Revision) -> int:
    """About how many bytes `change` takes in a push (to keep a batch under the message limit without encoding
    it twice); never less than its snapshot's."""
    data = _data_json(change)
    return (len(data) if data.isascii() else len(data.encode())) + len(change.request_id) + _FIELDS_SIZE


def status_to_proto(status: ReplicatorStatus) -> sync_pb2.ReplicationStatus:
    """What the proto can carry of the status. (It has no state or resync field: `last_error` names the
    failure class instead, see ReplicatorStatus.last_error.)"""
    msg = sync_pb2.ReplicationStatus(
        central=status.central,
        origin_id=str(status.origin_id or ""),
        connected=status.connected,
        last_local_seq=status.last_local_seq,
        acked_seq=status.acked_seq,
        backlog=status.backlog,
        lag_seconds=status.lag_seconds,
        last_error=status.last_error,
        rejected=status.rejected,
    )
    if status.last_success is not None:
        msg.last_success_time.FromDatetime(status.last_success)
    return msg


def _data_json(change: Revision) -> str:
    return change.snapshot_json or compact_json(change.snapshot)


def _datetime(ts: Any) -> datetime:  # a google.protobuf Timestamp (no type stubs here)
    if not 0 <= ts.nanos < 1_000_000_000:
        raise ValueError("change_time: nanos must be in [0, 1e9)")
    try:
        return _EPOCH + timedelta(seconds=ts.seconds, microseconds=ts.nanos // 1000)
    except (ValueError, OverflowError):
        raise ValueError("change_time: out of range (years 1 to 9999)") from None
