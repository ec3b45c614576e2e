"""Who may read and change what (README "Access rules"). Pure functions over the principal and the entity.

`principal is None` is a trusted in-process caller (the collector, the demo seeder, the CLI); every gRPC call
carries a principal established by the authentication interceptor.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from server.domain.entities import ToolSet, Versioned
from server.domain.errors import PermissionDenied
from server.domain.identity import Principal, Scope
from server.domain.registry import EntityKind

# Shop-floor data any presetter station or operator may update on any tool, whoever owns it.
MEASUREMENT_FIELDS = frozenset({"measurements", "last_calibration", "calibration_due", "status", "status_reason"})


def can_read(principal: Principal | None, entity: Versioned) -> bool:
    """Everything is readable with a read scope, except tool sets that are neither global nor the caller's."""
    if principal is None or principal.is_admin or not isinstance(entity, ToolSet):
        return True
    return entity.is_global or entity.owner_id == principal.user_id


def private_viewer(principal: Principal | None, kind: EntityKind) -> uuid.UUID | None:
    """For lists: the user whose private rows (besides public ones) may be shown; None shows everything."""
    if principal is None or principal.is_admin or kind.cls is not ToolSet:
        return None
    return principal.user_id


def _refuse(message: str) -> PermissionDenied:
    return PermissionDenied(message, reason="NOT_OWNER")


def check_create(principal: Principal | None, kind: EntityKind) -> None:
    if principal is None or principal.is_admin:
        return
    if kind.name == "user":
        raise PermissionDenied("only admins create users", reason="ADMIN_ONLY")
    # Any operator may record usage on any instance: usage is shop-floor data (collectors hold usage:report).
    if kind.name == "tool_usage" and principal.has(Scope.USAGE_REPORT):
        return
    if not principal.has(Scope.WRITE):
        raise PermissionDenied(f"creating a {kind.label} needs the write scope", reason="MISSING_SCOPE")


def check_change(principal: Principal | None, kind: EntityKind, current: Versioned, fields: Iterable[str]) -> None:
    """Non-admins change what they own; measurements of any instance are open to measuring stations."""
    if principal is None or principal.is_admin:
        return
    if kind.name == "user":
        raise PermissionDenied("only admins change users", reason="ADMIN_ONLY")
    changed = set(fields)
    if (
        kind.name == "tool_instance"
        and changed <= MEASUREMENT_FIELDS
        and (principal.has(Scope.MEASUREMENTS_WRITE) or principal.has(Scope.WRITE))
    ):
        return
    # A tool life reset (its own call and scope, ResetToolLife) on any instance: regrinding is shop-floor work.
    if kind.name == "tool_instance" and changed == {"tool_life_state"} and principal.has(Scope.TOOL_LIFE_RESET):
        return
    if current.owner_id is None or current.owner_id != principal.user_id:
        raise _refuse(
            f"{kind.label} {current.id} belongs to another user; ask its owner or an admin to change it"
            + (
                " (measuring stations may change only measurements, calibration dates and status)"
                if kind.name == "tool_instance"
                else ""
            )
        )
    needed = Scope.USAGE_REPORT if kind.name == "tool_usage" and principal.has(Scope.USAGE_REPORT) else Scope.WRITE
    if not principal.has(needed):
        raise PermissionDenied(f"changing a {kind.label} needs the write scope", reason="MISSING_SCOPE")


def check_delete(principal: Principal | None, kind: EntityKind, current: Versioned) -> None:
    if principal is None or principal.is_admin:
        return
    if kind.name == "user":
        raise PermissionDenied("users are deactivated, not deleted", reason="ADMIN_ONLY")
    if not principal.has(Scope.WRITE):
        raise PermissionDenied(f"deleting a {kind.label} needs the write scope", reason="MISSING_SCOPE")
    if current.owner_id is None or current.owner_id != principal.user_id:
        raise _refuse(f"{kind.label} {current.id} belongs to another user; ask its owner or an admin to delete it")
