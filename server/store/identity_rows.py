"""API keys and the hash-chained audit log (the `IdentityAndAudit` port): key rows, and audit entries with
the head row that holds the newest entry's sequence and hash.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from server.domain.identity import ApiKey, AuditEntry, AuditFilter
from server.store.connection import Connection
from server.store.tables import api_keys, audit_head, audit_log


def _row(obj: Any) -> dict[str, Any]:
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


class IdentityRows(Connection):
    """API key and audit rows."""

    # --- API keys ----------------------------------------------------------------------------------------

    async def insert_api_key(self, key: ApiKey) -> None:
        await self._execute(api_keys.insert().values(_row(key)))

    async def api_key_by_key_id(self, key_id: str) -> ApiKey | None:
        row = (await self._execute(sa.select(api_keys).where(api_keys.c.key_id == key_id))).mappings().first()
        return ApiKey(**row) if row is not None else None

    async def api_key(self, key_uuid: uuid.UUID) -> ApiKey | None:
        row = (await self._execute(sa.select(api_keys).where(api_keys.c.id == key_uuid))).mappings().first()
        return ApiKey(**row) if row is not None else None

    async def list_api_keys(self, user_id: uuid.UUID | None, after: uuid.UUID | None, limit: int) -> list[ApiKey]:
        stmt = sa.select(api_keys).order_by(api_keys.c.id).limit(limit)
        if user_id is not None:
            stmt = stmt.where(api_keys.c.user_id == user_id)
        if after is not None:
            stmt = stmt.where(api_keys.c.id > after)
        return [ApiKey(**r) for r in (await self._execute(stmt)).mappings().all()]

    async def set_api_key_times(self, key_uuid: uuid.UUID, **times: datetime | None) -> None:
        await self._execute(api_keys.update().where(api_keys.c.id == key_uuid).values(**times))

    async def revoke_user_keys(self, user_id: uuid.UUID, at: datetime) -> list[ApiKey]:
        """Revoke every live key of a user; returns the keys it revoked."""
        live = [
            ApiKey(**r)
            for r in (
                await self._execute(
                    sa.select(api_keys).where(api_keys.c.user_id == user_id, api_keys.c.revoked_at.is_(None))
                )
            )
            .mappings()
            .all()
        ]
        if live:
            await self._execute(api_keys.update().where(api_keys.c.id.in_([k.id for k in live])).values(revoked_at=at))
        return live

    # --- audit log ---------------------------------------------------------------------------------------

    async def audit_head(self) -> tuple[int, str]:
        """(sequence, hash) of the newest entry; (0, "") for an empty log. Writers are serialized, so this is safe.
        Read once per transaction: the units of work of a group commit share one (issue 11)."""
        head: tuple[int, str] | None = self._pending.get("audit_head") or self._known.get("audit_head")
        if head is None:
            rows = await self._fetch(_AUDIT_HEAD)
            head = (int(rows[0][0]), str(rows[0][1])) if rows else (0, "")
            self._known["audit_head"] = head
        return head

    async def insert_audit(self, entry: AuditEntry) -> None:
        """Insert an entry with its own sequence and move the head to it."""
        await self._insert(audit_log, _row(entry))
        await self._move_audit_head(entry)

    async def insert_audit_many(self, entries: Sequence[AuditEntry]) -> None:
        """Insert sealed entries (in sequence order) and move the head to the last one."""
        await self._change_many(audit_log.insert(), [_row(e) for e in entries])
        await self._move_audit_head(entries[-1])

    async def _move_audit_head(self, last: AuditEntry) -> None:
        """The head moves in this transaction's memory; `write_pending` writes it once, just before the commit
        (a group commit's units each appended one entry, and each moved the head with an UPDATE: issue 11)."""
        self._pending["audit_head"] = (last.seq, last.hash)

    async def write_pending(self) -> None:
        """Write what this transaction keeps for its end (the audit head); the store calls it before committing."""
        head = self._pending.pop("audit_head", None)
        if head is None:
            return
        seq, digest = head
        if not await self._change(_MOVE_AUDIT_HEAD, {"b_seq": seq, "b_hash": digest}):
            await self._execute(audit_head.insert().values(id=1, seq=seq, hash=digest))
        self._known["audit_head"] = head

    async def audit_entries(self, flt: AuditFilter, after_seq: int, limit: int) -> list[AuditEntry]:
        conditions = []
        if flt.actor_id is not None:
            conditions.append(audit_log.c.actor_id == flt.actor_id)
        for name in ("entity_type", "entity_id", "action"):
            if getattr(flt, name):
                conditions.append(audit_log.c[name] == getattr(flt, name))
        if flt.start_time is not None:
            conditions.append(audit_log.c.occurred_at >= flt.start_time)
        if flt.end_time is not None:
            conditions.append(audit_log.c.occurred_at < flt.end_time)
        stmt = (
            sa.select(audit_log).where(audit_log.c.seq > after_seq, *conditions).order_by(audit_log.c.seq).limit(limit)
        )
        return [AuditEntry(**r) for r in (await self._execute(stmt)).mappings().all()]


# Statements built once (SQLAlchemy neither builds them nor computes their cache keys again per call).
_AUDIT_HEAD = sa.select(audit_head.c.seq, audit_head.c.hash)
_MOVE_AUDIT_HEAD = (
    audit_head.update().where(audit_head.c.id == 1).values(seq=sa.bindparam("b_seq"), hash=sa.bindparam("b_hash"))
)
