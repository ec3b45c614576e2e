"""Identity use cases: users (e-mail rules, deactivation), API keys (shown once, stored hashed, scoped,
expirable, revocable) and the authenticator that turns a bearer secret into a Principal.

A key is `sek_<key_id>_<secret>`: key_id (public, 12 hex) finds the row; the secret (32 random bytes) is kept
only as SHA-256. The secret has 256 bits of entropy, so a slow password hash would add cost and no safety.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from server.domain.entities import User, UserRole, Versioned
from server.domain.errors import (
    FieldViolation,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from server.domain.identity import ROLE_SCOPES, ApiKey, AuditEntry, Principal, Scope
from server.domain.ids import uuid7
from server.domain.registry import KINDS
from server.usecases import audit
from server.usecases.entities import Caller, EntityService, utc_now
from server.usecases.listing import page_size_of
from server.usecases.ports import Transaction, UnitOfWork
from server.validation.rules import text_violations

KEY_PREFIX = "sek"
KEY_NAME_MAX_LEN = 200
_KEY_FORMAT = re.compile(r"^sek_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# A verified key is trusted this long before it is read again (revocations in this process act at once).
AUTH_CACHE_SECONDS = 5.0
# last_used_at is written at most this often per key, so reads do not turn into writes.
LAST_USED_RESOLUTION = timedelta(seconds=60)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key_material() -> tuple[str, str]:
    """(key_id, full secret to hand out once)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def effective_scopes(key: ApiKey, role: UserRole) -> frozenset[Scope]:
    """A key never grants more than its user's role allows, even if the role was lowered later."""
    return frozenset(Scope(s) for s in key.scopes if s in {x.value for x in Scope}) & ROLE_SCOPES[role]


class UserService(EntityService):
    """Users through the generic entity operations, plus e-mail rules and deactivation."""

    def __init__(
        self, store: UnitOfWork, clock: Callable[[], datetime], on_identity_change: Callable[[], None]
    ) -> None:
        super().__init__(store, KINDS["user"], clock)
        self._on_identity_change = on_identity_change

    def _normalize(self, values: dict[str, Any], current: Versioned | None) -> dict[str, Any]:
        if current is None:
            values["is_active"] = True  # new users start active; deactivation is its own call
        return values

    async def _after_write(
        self, tx: Transaction, before: Versioned | None, after: Versioned, caller: Caller, now: datetime
    ) -> None:
        if before is None:
            return
        assert isinstance(before, User) and isinstance(after, User)
        if before.is_active and not after.is_active:
            for key in await tx.revoke_user_keys(after.id, now):
                await _audit_key(tx, "api_key.revoke", key, caller, now, detail="user deactivated")

    async def update(
        self, entity_id: uuid.UUID, version: int, values: Mapping[str, Any], *, caller: Caller
    ) -> Versioned:
        user = await super().update(entity_id, version, values, caller=caller)
        self._on_identity_change()  # after the commit: cached keys are read again with the new role/state
        return user

    async def deactivate(self, user_id: uuid.UUID, version: int, *, caller: Caller) -> Versioned:
        """Deactivate with the version last read, like any update (optimistic locking holds here too)."""
        return await self.update(user_id, version, {"is_active": False}, caller=caller)


async def _audit_key(
    tx: Transaction, action: str, key: ApiKey, caller: Caller, now: datetime, detail: str = ""
) -> None:
    public = dataclasses.replace(key, secret_hash="")  # the hash stays out of the audit log too
    snapshot = {f.name: _plain(getattr(public, f.name)) for f in dataclasses.fields(public) if f.name != "secret_hash"}
    await audit.append(
        tx,
        AuditEntry(
            occurred_at=now,
            actor_id=caller.actor_id,
            api_key_id=caller.principal.api_key_id if caller.principal else None,
            action=action,
            entity_type="api_key",
            entity_id=str(key.id),
            after=snapshot,
            request_id=caller.request_id,
            peer=caller.peer[:200],
            detail=detail,
        ),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


class ApiKeyService:
    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime], authenticator: Authenticator) -> None:
        self.store = store
        self._clock = clock
        self._auth = authenticator

    async def create(
        self,
        *,
        user_id: uuid.UUID | None,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None,
        caller: Caller,
    ) -> tuple[ApiKey, str]:
        """A new key for `user_id` (default: the caller); returns it with its secret, which is not kept."""
        principal = caller.principal
        target = user_id or (principal.user_id if principal else None)
        if target is None:
            raise InvalidArgument.of([FieldViolation("user_id", "required when no user is calling")])
        if principal is not None and not principal.is_admin and target != principal.user_id:
            raise PermissionDenied("only admins create keys for other users", reason="ADMIN_ONLY")
        wanted = list(dict.fromkeys(scopes))
        errors = text_violations("name", name, KEY_NAME_MAX_LEN)
        known = {s.value for s in Scope}
        errors += [
            FieldViolation(f"scopes.{i}", f"unknown scope {s!r}; use {', '.join(sorted(known))}")
            for i, s in enumerate(wanted)
            if s not in known
        ]
        if not wanted:
            errors.append(FieldViolation("scopes", f"at least one scope: {', '.join(sorted(known))}"))
        now = self._clock()
        if expires_at is not None and expires_at <= now:
            errors.append(FieldViolation("expire_time", "must be in the future"))
        if errors:
            raise InvalidArgument.of(errors)
        async with self.store.write() as tx:
            user = await tx.get(KINDS["user"], target)
            if not isinstance(user, User) or not user.is_active:
                raise NotFound(f"no active user {target}", metadata={"id": str(target)})
            beyond = [s for s in wanted if Scope(s) not in ROLE_SCOPES[user.role]]
            if beyond:
                raise PermissionDenied(
                    f"a {user.role.value.lower()} cannot hold {', '.join(beyond)}; change the user's role first",
                    reason="SCOPE_BEYOND_ROLE",
                    violations=[FieldViolation("scopes", f"not allowed for role {user.role.value}")],
                )
            if principal is not None and not principal.is_admin:
                beyond_caller = [s for s in wanted if not principal.has(Scope(s))]
                if beyond_caller:
                    raise PermissionDenied(
                        f"your key does not hold {', '.join(beyond_caller)}, so it cannot grant them",
                        reason="SCOPE_BEYOND_CALLER",
                    )
            if principal is not None and not principal.is_admin and principal.api_key_id is not None:
                # A key never mints a key that outlives it.
                parent = await tx.api_key(principal.api_key_id)
                if parent is not None and parent.expires_at is not None:
                    expires_at = min(expires_at or parent.expires_at, parent.expires_at)
            key_id, secret = new_key_material()
            key = ApiKey(
                id=uuid7(),
                user_id=target,
                key_id=key_id,
                secret_hash=hash_secret(secret),
                name=name,
                scopes=wanted,
                expires_at=expires_at,
                created_at=now,
            )
            await tx.insert_api_key(key)
            await _audit_key(tx, "api_key.create", key, caller, now)
        return key, secret

    async def list(
        self, *, user_id: uuid.UUID | None, page_size: int, page_token: str, caller: Caller
    ) -> tuple[list[ApiKey], str]:
        principal = caller.principal
        if principal is not None and not principal.is_admin:
            if user_id is not None and user_id != principal.user_id:
                raise PermissionDenied("only admins list other users' keys", reason="ADMIN_ONLY")
            user_id = principal.user_id
        size = page_size_of(page_size)
        try:
            after = uuid.UUID(page_token) if page_token else None
        except ValueError:
            raise InvalidArgument.of(
                [FieldViolation("page_token", "not a key page token; pass it unchanged")]
            ) from None
        async with self.store.read() as tx:
            keys = await tx.list_api_keys(user_id, after, size + 1)
        more = len(keys) > size
        keys = keys[:size]
        return keys, (str(keys[-1].id) if more and keys else "")

    async def revoke(self, key_uuid: uuid.UUID, *, caller: Caller) -> ApiKey:
        principal = caller.principal
        now = self._clock()
        async with self.store.write() as tx:
            key = await tx.api_key(key_uuid)
            if key is None or (principal is not None and not principal.is_admin and key.user_id != principal.user_id):
                raise NotFound(f"API key {key_uuid} not found", metadata={"id": str(key_uuid)})
            if key.revoked_at is None:
                await tx.set_api_key_times(key.id, revoked_at=now)
                key = dataclasses.replace(key, revoked_at=now)
                await _audit_key(tx, "api_key.revoke", key, caller, now)
        self._auth.forget(key.key_id)
        return key

    async def bootstrap(self, *, email: str, role: UserRole, display_name: str = "") -> tuple[User, ApiKey, str]:
        """Create a user with a key holding every scope of its role (the CLI's `user create`)."""
        users = UserService(self.store, self._clock, self._auth.forget_all)
        user = await users.create(
            {"email": email, "display_name": display_name, "role": role}, entity_id=None, caller=Caller(peer="cli")
        )
        assert isinstance(user, User)
        scopes = sorted(s.value for s in ROLE_SCOPES[role])
        key, secret = await self.create(
            user_id=user.id,
            name="bootstrap (smooth-edge user create)",
            scopes=scopes,
            expires_at=None,
            caller=Caller(peer="cli"),
        )
        return user, key, secret


class Authenticator:
    """Bearer secret -> Principal. Unknown, malformed, revoked or expired keys and inactive users are refused."""

    def __init__(self, store: UnitOfWork, clock: Callable[[], datetime] = utc_now) -> None:
        self.store = store
        self._clock = clock
        # key_id -> (when read, key, its user, the principal they make): read again after AUTH_CACHE_SECONDS
        self._cache: dict[str, tuple[float, ApiKey, User, Principal]] = {}
        # Bumped by every invalidation: a lookup that started before one must not refill the cache after it.
        self._generation = 0

    def forget(self, key_id: str) -> None:
        self._generation += 1
        self._cache.pop(key_id, None)

    def forget_all(self) -> None:
        self._generation += 1
        self._cache.clear()

    async def authenticate(self, secret: str | None) -> Principal:
        if not secret:
            raise Unauthenticated(
                "no API key: send the header `authorization: Bearer <key>`", reason="MISSING_CREDENTIALS"
            )
        match = _KEY_FORMAT.match(secret)
        if match is None:
            raise Unauthenticated("malformed API key; keys look like sek_<id>_<secret>", reason="MALFORMED_KEY")
        key_id = match.group(1)
        cached = self._cache.get(key_id)
        if cached is not None and time.monotonic() - cached[0] < AUTH_CACHE_SECONDS:
            _, key, user, principal = cached
        else:
            generation = self._generation
            async with self.store.read() as tx:
                found = await tx.api_key_by_key_id(key_id)
                user_row = await tx.get(KINDS["user"], found.user_id) if found is not None else None
            if found is None or not isinstance(user_row, User):
                raise Unauthenticated("unknown API key", reason="UNKNOWN_KEY", metadata={"key_id": key_id})
            key, user = found, user_row
            principal = Principal(
                user_id=user.id, role=user.role, scopes=effective_scopes(key, user.role), api_key_id=key.id
            )
            if generation == self._generation:
                self._cache[key_id] = (time.monotonic(), key, user, principal)
        if not hmac.compare_digest(hash_secret(secret), key.secret_hash):
            raise Unauthenticated("wrong API key secret", reason="BAD_SECRET", metadata={"key_id": key_id})
        now = self._clock()
        if key.revoked_at is not None:
            raise Unauthenticated("the API key was revoked", reason="KEY_REVOKED", metadata={"key_id": key_id})
        if key.expires_at is not None and key.expires_at <= now:
            raise Unauthenticated(
                "the API key has expired; ask for a new one", reason="KEY_EXPIRED", metadata={"key_id": key_id}
            )
        if not user.is_active:
            raise Unauthenticated("the key's user is deactivated", reason="USER_INACTIVE", metadata={"key_id": key_id})
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            await self._touch(key, now)
        return principal

    async def _touch(self, key: ApiKey, now: datetime) -> None:
        generation = self._generation
        async with self.store.write() as tx:
            await tx.set_api_key_times(key.id, last_used_at=now)
        cached = self._cache.get(key.key_id)
        if cached is not None and generation == self._generation:
            # The cached copy, not ours: a revocation may have been cached meanwhile, and must stay (issue 11 race).
            self._cache[key.key_id] = (
                cached[0],
                dataclasses.replace(cached[1], last_used_at=now),
                cached[2],
                cached[3],
            )
