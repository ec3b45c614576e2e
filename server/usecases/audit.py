"""The audit log: entries appended in the caller's transaction, sealed into a SHA-256 hash chain,
listed with filters for admins, and verified end to end (`smooth-edge audit verify`).

Each entry's hash covers its fields and the previous entry's hash, so editing an entry breaks its own hash
and deleting one breaks the next entry's `prev_hash` (and leaves a gap: sequence numbers are never reused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from server.domain.errors import FieldViolation, InvalidArgument, PermissionDenied
from server.domain.identity import AuditEntry, AuditFilter, Principal
from server.store.repository import Store, Transaction
from server.usecases.listing import page_size_of

log = structlog.get_logger("smooth_edge.audit")

VERIFY_BATCH = 5_000
# Refused calls are audited, but a flood of them must not turn into a flood of writes.
MAX_REFUSALS_PER_SECOND = 20


def entry_hash(entry: AuditEntry, prev_hash: str) -> str:
    payload = {f.name: getattr(entry, f.name) for f in dataclasses.fields(entry) if f.name not in ("seq", "hash")}
    payload["prev_hash"] = prev_hash
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default, ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


async def append(tx: Transaction, entry: AuditEntry) -> None:
    """Seal `entry` onto the chain inside the caller's transaction (it commits or rolls back with it)."""
    prev = await tx.last_audit_hash()
    await tx.insert_audit(dataclasses.replace(entry, prev_hash=prev, hash=entry_hash(entry, prev)))


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


class AuditService:
    def __init__(self, store: Store, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock
        self._window = 0
        self._in_window = 0
        self._suppressed = 0

    async def record_refusal(
        self, *, outcome: str, method: str, detail: str, peer: str, principal: Principal | None, request_id: str = ""
    ) -> None:
        """Audit a refused call in its own transaction (rate-limited; suppressed ones are counted)."""
        second = int(time.monotonic())
        if second != self._window:
            self._window, self._in_window = second, 0
        self._in_window += 1
        if self._in_window > MAX_REFUSALS_PER_SECOND:
            self._suppressed += 1
            return
        suppressed, self._suppressed = self._suppressed, 0
        note = f" (+{suppressed} similar refusals not recorded individually)" if suppressed else ""
        entry = AuditEntry(
            occurred_at=self._clock(),
            actor_id=principal.user_id if principal else None,
            api_key_id=principal.api_key_id if principal else None,
            action=f"auth.{outcome.lower()}",
            entity_type="rpc",
            entity_id=method[:64],
            request_id=request_id[:100],
            peer=peer[:200],
            outcome=outcome,
            detail=(detail + note)[:2000],
        )
        try:
            async with self.store.write() as tx:
                await append(tx, entry)
        except Exception:  # an audit write must never turn a refusal into a crash
            log.exception("audit.refusal_not_recorded", method=method, outcome=outcome)

    async def list(
        self, principal: Principal | None, flt: AuditFilter, *, page_size: int, page_token: str
    ) -> tuple[list[AuditEntry], str]:
        if principal is not None and not principal.is_admin:
            raise PermissionDenied("the audit log is for admins", reason="ADMIN_ONLY")
        size = page_size_of(page_size)
        after = _seq_token(page_token)
        async with self.store.read() as tx:
            entries = await tx.audit_entries(flt, after, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        return entries, (f"a{entries[-1].seq}" if more else "")

    async def verify(self, progress: Callable[[int], None] | None = None) -> VerifyResult:
        """Recompute the whole chain; the first entry that does not fit is reported."""
        prev_hash, prev_seq, checked = "", 0, 0
        while True:
            async with self.store.read() as tx:
                batch = await tx.audit_entries(AuditFilter(), prev_seq, VERIFY_BATCH)
            if not batch:
                return VerifyResult(checked)
            for entry in batch:
                if entry.seq != prev_seq + 1:
                    return VerifyResult(checked, entry.seq, f"entries {prev_seq + 1}..{entry.seq - 1} are missing")
                if entry.prev_hash != prev_hash:
                    return VerifyResult(checked, entry.seq, "prev_hash does not match the previous entry's hash")
                if entry_hash(entry, prev_hash) != entry.hash:
                    return VerifyResult(checked, entry.seq, "the entry was altered: its hash does not match")
                prev_hash, prev_seq = entry.hash, entry.seq
                checked += 1
            if progress is not None:
                progress(checked)


def _seq_token(token: str) -> int:
    if not token:
        return 0
    if not token.startswith("a") or not token[1:].isdigit():
        raise InvalidArgument.of([FieldViolation("page_token", "not an audit page token; pass it unchanged")])
    return int(token[1:])
