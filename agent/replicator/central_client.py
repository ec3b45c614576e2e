"""The seam between the replicator and central (DESIGN decision 12): what the replicator asks of central, in
domain types. Implemented over gRPC (grpc_central.py) and in process over the central use case
(in_process_central.py); both pass tests/agent/test_central_client_contract.py.

Every method raises only `SmoothError`s (see errors.py), so the replicator can tell transient from permanent.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.domain.entities import Revision


@dataclass(frozen=True, slots=True)
class RejectedChange:
    """A change that can never be applied (kept aside by the side that refused it, never blocking the rest)."""

    seq: int
    entity_type: str
    entity_id: uuid.UUID
    reason: str


@dataclass(frozen=True, slots=True)
class PushResult:
    acked_seq: int  # central's watermark for the origin after the batch: everything up to it applied or rejected
    rejected: list[RejectedChange]


@dataclass(frozen=True, slots=True)
class PullPage:
    changes: list[Revision]  # central's changes after the cursor, oldest first, none of the asking origin's
    next_cursor: int  # save it with the applied changes (it may lie past the last change)
    more: bool
    central_id: uuid.UUID
    resync_required: bool  # the cursor is older than what central keeps: resynchronize in full


@dataclass(frozen=True, slots=True)
class SnapshotPage:
    as_of_seq: int  # central's newest sequence before the page was read
    rows: list[dict[str, Any]]  # entity snapshots (JSON objects), in id order
    next_page_token: str  # empty on the last page


class CentralClient(Protocol):
    async def watermark(self, origin_id: uuid.UUID) -> int:
        """The last sequence of `origin_id` central has applied (0 for an origin it has never seen)."""
        ...

    async def push(
        self, origin_id: uuid.UUID, after_seq: int, changes: Sequence[Revision], schema_version: str
    ) -> PushResult:
        """Apply `changes` (which follow `after_seq`, in order); already applied ones are skipped. A batch that
        does not start at central's watermark raises `SequenceGap` with that watermark."""
        ...

    async def pull(self, origin_id: uuid.UUID, after_seq: int, limit: int) -> PullPage:
        """Central's changes after its sequence `after_seq`, except `origin_id`'s own."""
        ...

    async def snapshot(
        self, origin_id: uuid.UUID, entity_type: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> SnapshotPage:
        """One page of central's current entities of `entity_type` (empty: only `as_of_seq`)."""
        ...
