"""The replicator's wire form: a change's size on the wire, and the replicator's status -> `ReplicationStatus`.
The change codec itself is the contract's (server/wire.py), shared with central. Pure functions."""

from __future__ import annotations

from smooth.core.v1 import sync_pb2

from agent.replicator.status import ReplicatorStatus
from server.domain.entities import Revision
from server.wire import data_json

_FIELDS_SIZE = 256  # a change's bytes on the wire besides its snapshot: ids, type, version, time, tags


def wire_size(change: Revision) -> int:
    """About how many bytes `change` takes in a push (to keep a batch under the message limit without encoding
    it twice); never less than its snapshot's."""
    data = data_json(change)
    return (len(data) if data.isascii() else len(data.encode())) + len(change.request_id) + _FIELDS_SIZE


def status_to_proto(status: ReplicatorStatus) -> sync_pb2.ReplicationStatus:
    """The status as the proto carries it."""
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
        state=str(status.state),
        resyncs=status.resyncs,
        pulled_cursor=status.pulled_cursor,
    )
    if status.last_success is not None:
        msg.last_success_time.FromDatetime(status.last_success)
    return msg
