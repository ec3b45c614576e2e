"""Identity: scopes, what each role may hold, the authenticated principal, API keys and audit entries."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from server.domain.entities import UserRole


class Scope(enum.StrEnum):
    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    USAGE_REPORT = "usage:report"  # collectors: create and close ToolUsage records
    MEASUREMENTS_WRITE = "measurements:write"  # presetter stations: measurements of any ToolInstance
    SYNC = "sync"  # the replicator
    TOOL_LIFE_RESET = "toollife:reset"  # start tool life counters again after a regrind (its own audited call)


# The scopes a key of a user with this role may carry (a key never grants more than its user's role).
ROLE_SCOPES: dict[UserRole, frozenset[Scope]] = {
    UserRole.ADMIN: frozenset(Scope),
    UserRole.OPERATOR: frozenset(
        {Scope.READ, Scope.WRITE, Scope.USAGE_REPORT, Scope.MEASUREMENTS_WRITE, Scope.TOOL_LIFE_RESET}
    ),
    UserRole.VIEWER: frozenset({Scope.READ}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller, as the authentication interceptor established it."""

    user_id: uuid.UUID
    role: UserRole
    scopes: frozenset[Scope]
    api_key_id: uuid.UUID | None = None

    @property
    def is_admin(self) -> bool:
        return self.role == UserRole.ADMIN and Scope.ADMIN in self.scopes

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    id: uuid.UUID
    user_id: uuid.UUID
    key_id: str
    secret_hash: str
    name: str = ""
    scopes: list[str] = field(default_factory=list)
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """What ListAuditLogs narrows by; empty fields match everything."""

    actor_id: uuid.UUID | None = None
    entity_type: str = ""
    entity_id: str = ""
    action: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AuditEntry:
    """One audit log entry. `hash` covers every other field and `prev_hash` (the chain)."""

    seq: int = 0
    occurred_at: datetime
    actor_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None
    action: str
    entity_type: str = ""
    entity_id: str = ""
    entity_version: int | None = None
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    request_id: str = ""
    peer: str = ""
    outcome: str = "OK"
    detail: str = ""
    prev_hash: str = ""
    hash: str = ""
