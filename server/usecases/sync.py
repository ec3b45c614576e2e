"""Moved to server/usecases/replication/ (kept until the replicator's imports follow; then removed)."""

from server.usecases.replication.apply import Rejected, apply_changes, store_id
from server.usecases.replication.central import MAX_BATCH, ORPHAN_WAIT_S, SyncApplier
from server.usecases.replication.edge import RESYNC_ORDER, PullApplier, ResyncApplier

__all__ = [
    "MAX_BATCH",
    "ORPHAN_WAIT_S",
    "RESYNC_ORDER",
    "PullApplier",
    "Rejected",
    "ResyncApplier",
    "SyncApplier",
    "apply_changes",
    "store_id",
]
