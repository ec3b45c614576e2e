"""What the replicator needs of this edge, as narrow protocols: the store's replication state and change log,
and the use cases that apply what comes from central. The composition root (agent/runtime.py) passes the real
ones (server.store's Store; PullApplier and ResyncApplier of server.usecases.replication.edge)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from server.domain.entities import Revision


class EdgeTransaction(Protocol):
    async def replication_value(self, key: str) -> Any: ...

    async def set_replication_value(self, key: str, value: Any, at: datetime) -> None: ...

    async def local_changes(self, after_seq: int, limit: int, *, as_text: bool = False) -> list[Revision]:
        """This store's own changes after a sequence, oldest first (`as_text`: snapshots as stored JSON text)."""
        ...

    async def local_backlog(self, after_seq: int) -> tuple[int, int, datetime | None]:
        """(count, newest local seq, time of the oldest) of local changes after `after_seq`."""
        ...

    async def last_local_seq(self) -> int: ...

    async def ensure_sequence_above(self, seq: int) -> None:
        """Never hand out a change sequence at or below `seq`."""
        ...

    async def renumber_local_changes_after(self, after: int, above: int) -> int:
        """Move this store's own changes after `after` above `above`, in order; returns how many moved."""
        ...


class EdgeStore(Protocol):
    def read(self) -> AbstractAsyncContextManager[EdgeTransaction]: ...

    def write(self, *, durable: bool = False) -> AbstractAsyncContextManager[EdgeTransaction]:
        """One atomic unit of work (`durable`: fsynced with every earlier commit)."""
        ...


class Refusal(Protocol):
    """A change that could not be applied, as the replicator logs it."""

    @property
    def seq(self) -> int: ...

    @property
    def entity_type(self) -> str: ...

    @property
    def reason(self) -> str: ...


class PullApply(Protocol):
    async def store_id(self) -> uuid.UUID:
        """This edge's origin id (made once, the first time it is asked; the use cases own it)."""
        ...

    async def cursor(self) -> int:
        """Central's sequence this edge has applied up to."""
        ...

    async def apply(self, central_id: uuid.UUID, changes: Sequence[Revision], cursor: int) -> Sequence[Refusal]:
        """Apply central's changes and save `cursor`, in one transaction."""
        ...


class ResyncApply(Protocol):
    async def apply_kind(self, central_id: uuid.UUID, kind_name: str, rows: Sequence[dict[str, Any]]) -> None:
        """Take central's entities of one kind (unless this edge holds a newer version still to push)."""
        ...

    async def finish(self, central_id: uuid.UUID, kept: dict[str, set[uuid.UUID]], as_of: int) -> int:
        """Remove what central no longer has (never this edge's own work), set the pull cursor to `as_of`."""
        ...
