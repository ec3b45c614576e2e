"""The audit log: entries appended in the caller's transaction, sealed into a SHA-256 hash chain,
listed with filters for admins, and verified end to end (`smooth-edge audit verify`).

Each entry's hash covers its fields and the previous entry's hash, so editing an entry breaks its own hash
and deleting one breaks the next entry's `prev_hash` (and leaves a gap: sequence numbers are never reused).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import orjson
import structlog

from server.domain.errors import InvalidArgument, PermissionDenied
from server.domain.identity import AuditEntry, AuditFilter, Principal
from server.usecases.listing import page_size_of
from server.usecases.ports import Transaction, UnitOfWork
from server.usecases.tokens import decode_position, encode_position
from server.validation.rules import text_violations

log = structlog.get_logger("smooth_edge.audit")

VERIFY_BATCH = 5_000
# Refused calls are audited, but a flood of them must not turn into a flood of writes.
MAX_REFUSALS_PER_SECOND = 20


def entry_hash(entry: AuditEntry, prev_hash: str, *, seq: int | None = None) -> str:
    """SHA-256 over the entry's canonical JSON (sequence and prev_hash included, `hash` excluded); `seq` stands
    for the entry's own sequence when given."""
    payload = {f.name: getattr(entry, f.name) for f in _ENTRY_FIELDS if f.name != "hash"}
    payload["prev_hash"] = prev_hash
    if seq is not None:
        payload["seq"] = seq
    return hashlib.sha256(canonical_text(payload)).hexdigest()


def canonical_text(payload: dict[str, Any]) -> bytes:
    """The UTF-8 of `_CANONICAL.encode(_canonical_numbers(payload))`, the text every entry's hash is over.

    orjson writes the same text about ten times faster (sorted keys, no spaces, non-ASCII as it is), except for
    what it writes otherwise or refuses: floats below 1e-4 (json writes 8.1e-05 and 1e-07, orjson 0.000081 and
    1e-7), NaN and infinities (null there), keys that are not strings, integers beyond 64 bits. Those entries
    take the json module's encoder (between 1e-4 and 1e16 both write a float's shortest repr without exponent,
    and integral floats are integers by then): the hash is the same either way, which lets `verify` check entries
    written before this existed (issue 11: hashing was a fifth of the collector's audit cost)."""
    fast = fast_canonical_text(payload)
    return fast if fast is not None else _CANONICAL.encode(_canonical_numbers(payload)).encode()


def fast_canonical_text(payload: dict[str, Any]) -> bytes | None:
    """canonical_text through orjson; None where that could differ from the json module's text."""
    try:
        text = orjson.dumps(_canonical_numbers(payload, strict=True), default=_json_default, option=_ORJSON)
    except (orjson.JSONEncodeError, _NotPlain):
        return None
    return text


class _NotPlain(Exception):
    """A float json and orjson write differently: NaN (orjson null), and those json writes with an exponent."""


_ORJSON = orjson.OPT_SORT_KEYS | orjson.OPT_PASSTHROUGH_DATETIME  # datetimes through _json_default, as json does


_ENTRY_FIELDS = dataclasses.fields(AuditEntry)


def _canonical_numbers(value: Any, *, strict: bool = False) -> Any:
    """Integral floats as integers: PostgreSQL's jsonb gives 1e20 back as 100000000000000000000. `strict`: raise
    _NotPlain at a float the json module writes otherwise than orjson (NaN, infinities, below 1e-4)."""
    kind = type(value)
    if kind is dict:  # copied only where something in it changes: most entries hold no integral float
        copy: dict[Any, Any] | None = None
        for k, v in value.items():
            if type(v) not in _PLAIN and (new := _canonical_numbers(v, strict=strict)) is not v:
                if copy is None:
                    copy = dict(value)
                copy[k] = new
        return value if copy is None else copy
    if kind is list:
        items: list[Any] | None = None
        for i, v in enumerate(value):
            if type(v) not in _PLAIN and (new := _canonical_numbers(v, strict=strict)) is not v:
                if items is None:
                    items = list(value)
                items[i] = new
        return value if items is None else items
    if isinstance(value, float):
        if value.is_integer():
            return int(Decimal(repr(value)))  # the decimal the JSON text says, as jsonb keeps it
        if strict and not 1e-4 <= abs(value) < math.inf:
            raise _NotPlain  # json writes NaN (orjson null), and below 1e-4 an exponent (orjson 0.00008 or 1e-7)
        return value
    if isinstance(value, dict):
        return {k: _canonical_numbers(v, strict=strict) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(v, strict=strict) for v in value]
    return value


# Values that need no walk (exact types: a subclass takes the careful path).
_PLAIN = frozenset({str, int, bool, type(None), uuid.UUID, datetime})


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"cannot hash {type(value).__name__}")


async def append(tx: Transaction, entry: AuditEntry) -> None:
    """Seal `entry` onto the chain inside the caller's transaction (it commits or rolls back with it)."""
    seq, prev = await tx.audit_head()
    entry = dataclasses.replace(entry, seq=seq + 1, prev_hash=prev)
    await tx.insert_audit(dataclasses.replace(entry, hash=entry_hash(entry, prev)))


async def append_many(tx: Transaction, entries: Sequence[AuditEntry]) -> None:
    """Seal several entries onto the chain, in order, with one read of the head and one insert."""
    if not entries:
        return
    seq, prev = await tx.audit_head()
    sealed = []
    for entry in entries:
        seq += 1
        digest = entry_hash(entry, prev, seq=seq)
        sealed.append(dataclasses.replace(entry, seq=seq, prev_hash=prev, hash=digest))
        prev = digest
    await tx.insert_audit_many(sealed)


# Made once: json.dumps with arguments would build this encoder for every entry.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=_json_default, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    checked: int
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


class AuditService:
    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime]) -> None:
        self.store = store
        self._clock = clock
        self._hosts: dict[str, tuple[int, int, int]] = {}  # host -> (second, entries in it, suppressed)

    async def record_refusal(
        self, *, outcome: str, method: str, detail: str, peer: str, principal: Principal | None, request_id: str = ""
    ) -> None:
        """Audit a refused call in its own transaction.

        At most MAX_REFUSALS_PER_SECOND entries a second per client host: a flood of bad keys from one host
        cannot starve the store, nor hide another host's refusals. Refusals beyond the limit are counted in that
        host's next entry.
        """
        host = peer.rsplit(":", 1)[0]
        second = int(time.monotonic())
        window, count, suppressed = self._hosts.get(host, (second, 0, 0))
        if window != second:
            window, count = second, 0
        if count >= MAX_REFUSALS_PER_SECOND:
            self._hosts[host] = (window, count, suppressed + 1)
            return
        self._hosts[host] = (window, count + 1, 0)
        if len(self._hosts) > 10_000:  # forget quiet hosts
            self._hosts = {h: v for h, v in self._hosts.items() if v[0] == second}
        note = f" (+{suppressed} similar refusals from this host not recorded individually)" if suppressed else ""
        entry = AuditEntry(
            occurred_at=self._clock(),
            actor_id=principal.user_id if principal else None,
            api_key_id=principal.api_key_id if principal else None,
            action=f"auth.{outcome.lower()}",
            entity_type="rpc",
            entity_id=_clean(method, 64),
            request_id=_clean(request_id, 100),
            peer=_clean(peer, 200),
            outcome=outcome,
            detail=_clean(detail + note, 2000),
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
        after = decode_position("a", page_token)
        problems = [
            v
            for name, limit in (("entity_type", 32), ("entity_id", 64), ("action", 64))
            for v in text_violations(name, getattr(flt, name), limit)
        ]
        if problems:
            raise InvalidArgument.of(problems)
        async with self.store.read() as tx:
            entries = await tx.audit_entries(flt, after, size + 1)
        more = len(entries) > size
        entries = entries[:size]
        return entries, (encode_position("a", entries[-1].seq) if more else "")

    async def verify(self, progress: Callable[[int], None] | None = None) -> VerifyResult:
        """Recompute the whole chain; the first entry that does not fit is reported."""
        prev_hash, prev_seq, checked = "", 0, 0
        while True:
            async with self.store.read() as tx:
                batch = await tx.audit_entries(AuditFilter(), prev_seq, VERIFY_BATCH)
            if not batch:
                async with self.store.read() as tx:
                    head_seq, head_hash = await tx.audit_head()
                if (head_seq, head_hash) != (prev_seq, prev_hash):
                    return VerifyResult(
                        checked, prev_seq + 1, f"the newest entries were deleted: the head says entry {head_seq}"
                    )
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


def _clean(text: str, limit: int) -> str:
    """Text from a refused (untrusted) call, made storable: no NUL characters, bounded length."""
    return text.replace("\x00", "\\0")[:limit]
