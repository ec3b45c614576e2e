"""What the replicator is doing, for health checks, the ReplicationService and tests that wait on it."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime


class ReplicatorState(enum.StrEnum):
    STARTING = "starting"  # entered; no round with central finished yet
    REPLICATING = "replicating"  # pushing or pulling
    RESYNCING = "resyncing"  # replacing what came from central with central's current state (a full resync)
    IDLE = "idle"  # the last round finished: everything pushed and pulled; waiting for a commit or the timer
    RETRYING = "retrying"  # a transient failure (central unreachable, busy, elsewhere): retrying with backoff
    FAILED = "failed"  # a permanent failure (refused, central failed, a bug here): retried only slowly
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ReplicatorStatus:
    central: str
    origin_id: uuid.UUID | None
    state: ReplicatorState
    connected: bool
    last_local_seq: int  # the newest local change
    acked_seq: int  # the newest local change central acknowledged
    backlog: int  # local changes not yet acknowledged
    lag_seconds: float  # age of the oldest unacknowledged change (0 when the backlog is empty)
    # Empty after a successful round; otherwise "transient: <reason>: <message>" or "permanent: ...".
    last_error: str
    last_success: datetime | None
    rejected: int  # local changes central rejected so far
    pulled_cursor: int  # central's sequence this edge has applied up to
    resyncs: int  # full resyncs finished since start

    @property
    def resyncing(self) -> bool:
        return self.state is ReplicatorState.RESYNCING
