"""A `CentralClient` served in process by central's own use case (`SyncApplier`) over any store: replication
logic tested without gRPC. What crosses it is encoded and decoded with the wire codec, as over gRPC, and it
raises what the gRPC client raises; both pass tests/agent/test_central_client_contract.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Sequence
from typing import TypeVar

from agent.replicator.central_client import PullPage, PushResult, RejectedChange, SnapshotPage
from agent.replicator.errors import CentralFailed, refined
from server.domain.entities import Revision
from server.domain.errors import SmoothError
from server.domain.identity import Principal
from server.domain.schema import compact_json
from server.usecases.replication.central import SyncApplier
from server.wire import change_from_proto, change_to_proto

R = TypeVar("R")


class InProcessCentral:
    """`principal` is the caller central sees (None: a trusted caller, as the use case's own tests use)."""

    def __init__(self, applier: SyncApplier, *, principal: Principal | None = None) -> None:
        self._applier = applier
        self._principal = principal

    async def watermark(self, origin_id: uuid.UUID) -> int:
        return await _answer(self._applier.watermark(origin_id, self._principal))

    async def push(
        self, origin_id: uuid.UUID, after_seq: int, changes: Sequence[Revision], schema_version: str
    ) -> PushResult:
        arrived = [change_from_proto(change_to_proto(c)) for c in changes]
        acked, rejected = await _answer(
            self._applier.push(
                origin_id, after_seq, arrived, schema_version, principal=self._principal, peer="in-process"
            )
        )
        return PushResult(acked, [RejectedChange(r.seq, r.entity_type, r.entity_id, r.reason) for r in rejected])

    async def pull(self, origin_id: uuid.UUID, after_seq: int, limit: int) -> PullPage:
        changes, cursor, more, central_id, resync = await _answer(
            self._applier.pull(origin_id, after_seq, limit, principal=self._principal)
        )
        arrived = [change_from_proto(change_to_proto(c)) for c in changes]
        return PullPage(arrived, cursor, more, central_id, resync)

    async def snapshot(
        self, origin_id: uuid.UUID, entity_type: str = "", *, page_size: int = 0, page_token: str = ""
    ) -> SnapshotPage:
        as_of, rows, token = await _answer(
            self._applier.snapshot(entity_type, page_size=page_size, page_token=page_token, principal=self._principal)
        )
        return SnapshotPage(as_of, [json.loads(compact_json(r)) for r in rows], token)


async def _answer(call: Awaitable[R]) -> R:
    """The use case's answer, or the error the gRPC client would raise for it."""
    try:
        return await call
    except SmoothError as exc:
        if type(exc) is SmoothError:  # no code of its own: central's error mapping answers INTERNAL
            raise CentralFailed(exc.message, reason=exc.reason, metadata=exc.metadata) from exc
        raise refined(exc) from exc
    except Exception as exc:  # over gRPC, central's interceptor answers INTERNAL (and logs the traceback)
        raise CentralFailed(f"central failed: {exc!r}", reason="INTERNAL") from exc
