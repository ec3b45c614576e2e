"""The ToolInstance status lifecycle (issue 12): which transitions exist and who makes each, in one table.

AVAILABLE  -> IN_USE       a usage opens (the collector or the API records a tool in a spindle)
IN_USE     -> AVAILABLE    its last open usage closes
AVAILABLE,
IN_USE     -> MAINTENANCE  an operator locks it (with a reason), a measurement out of tolerance, a life limit
MAINTENANCE -> AVAILABLE   an operator releases it, with a reason (never by itself)
any but RETIRED -> RETIRED an operator retires it, with a reason; RETIRED is final

A usage never fails because of the status: a tool found in a spindle while in MAINTENANCE or RETIRED is still
recorded (usage is never lost), the status stays, and the usage is flagged (`usage_metrics["x-instance_status"]`).
Replication applies states made elsewhere as they are (the edge owns the status); these rules bind the writers
that make transitions: the API's callers and the usage hooks.
"""

from __future__ import annotations

import enum

from server.domain.entities import ToolInstanceStatus
from server.domain.errors import FailedPrecondition, FieldViolation

AVAILABLE = ToolInstanceStatus.AVAILABLE
IN_USE = ToolInstanceStatus.IN_USE
MAINTENANCE = ToolInstanceStatus.MAINTENANCE
RETIRED = ToolInstanceStatus.RETIRED


class By(enum.StrEnum):
    """Who makes a transition."""

    OPERATOR = "OPERATOR"  # a person or MES, through the API, with a reason
    USAGE = "USAGE"  # a usage opening or closing
    MEASUREMENT = "MEASUREMENT"  # a presetter measurement out of tolerance
    TOOL_LIFE = "TOOL_LIFE"  # a tool life limit reached


TRANSITIONS: dict[tuple[ToolInstanceStatus, ToolInstanceStatus], frozenset[By]] = {
    (AVAILABLE, IN_USE): frozenset({By.USAGE}),
    (IN_USE, AVAILABLE): frozenset({By.USAGE}),
    (AVAILABLE, MAINTENANCE): frozenset({By.OPERATOR, By.MEASUREMENT, By.TOOL_LIFE}),
    (IN_USE, MAINTENANCE): frozenset({By.OPERATOR, By.MEASUREMENT, By.TOOL_LIFE}),
    (MAINTENANCE, AVAILABLE): frozenset({By.OPERATOR}),
    (AVAILABLE, RETIRED): frozenset({By.OPERATOR}),
    (IN_USE, RETIRED): frozenset({By.OPERATOR}),
    (MAINTENANCE, RETIRED): frozenset({By.OPERATOR}),
}

# Where a usage records the status its tool had when it opened, when that tool was not fit for use.
USAGE_FLAG = "x-instance_status"

# What a new instance may start as: ready, or waiting for its first measurement.
INITIAL = frozenset({AVAILABLE, MAINTENANCE})


def allowed(current: ToolInstanceStatus, target: ToolInstanceStatus, by: By) -> bool:
    return current == target or by in TRANSITIONS.get((current, target), frozenset())


def check(current: ToolInstanceStatus, target: ToolInstanceStatus, by: By, reason: str) -> None:
    """Raise FAILED_PRECONDITION (STATUS_TRANSITION_REFUSED) unless `by` may move `current` to `target`; a change
    of status needs a reason (`status_reason`) except when usages make it."""
    if current == target:
        return
    if not allowed(current, target, by):
        makers = TRANSITIONS.get((current, target))
        if current == RETIRED:
            why = "RETIRED is final"
        elif makers:
            why = "only " + " or ".join(sorted(m.value.lower() for m in makers)) + " events make it"
        else:
            why = "the lifecycle has no such transition"
        raise FailedPrecondition(
            f"status {current.value} -> {target.value} is not allowed: {why} (README, 'Tool status lifecycle')",
            reason="STATUS_TRANSITION_REFUSED",
            violations=[FieldViolation("status", f"cannot go from {current.value} to {target.value}")],
            metadata={"current_status": current.value},
        )
    if by is By.OPERATOR and not reason.strip():
        raise FailedPrecondition(
            f"a status change ({current.value} -> {target.value}) needs a reason: set status_reason in the same update",
            reason="STATUS_REASON_REQUIRED",
            violations=[FieldViolation("status_reason", "required when status changes")],
        )


def after_usages(current: ToolInstanceStatus, open_usages: int) -> ToolInstanceStatus:
    """The status usages leave an instance in, given how many of its usages are open now."""
    if current == AVAILABLE and open_usages > 0:
        return IN_USE
    if current == IN_USE and open_usages == 0:
        return AVAILABLE
    return current  # MAINTENANCE and RETIRED stay: the usage is recorded and flagged, never refused
