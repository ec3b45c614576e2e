"""The one error tree of Smooth Edge. Errors carry data, never transport types.

    SmoothError
    ├── InvalidArgument      bad input; carries FieldViolations          -> INVALID_ARGUMENT
    ├── NotFound             the addressed entity does not exist         -> NOT_FOUND
    ├── AlreadyExists        a unique key (id, serial number...) is taken -> ALREADY_EXISTS
    ├── Aborted              a write collided with another; retry        -> ABORTED
    │   └── VersionConflict  stale version on update/delete              -> ABORTED
    ├── FailedPrecondition   referenced rows missing, or still referenced -> FAILED_PRECONDITION
    ├── Unauthenticated      no or bad credentials                       -> UNAUTHENTICATED
    ├── PermissionDenied     credentials lack the scope or ownership      -> PERMISSION_DENIED
    ├── Unavailable          a dependency (database, central) is down     -> UNAVAILABLE
    ├── OutOfRange           a position (stream cursor) outside what is kept -> OUT_OF_RANGE
    └── ResourceExhausted    a limit reached (a stream's reader too slow)  -> RESOURCE_EXHAUSTED

The API layer maps these once (server/api/errors.py); nothing else knows about gRPC codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class FieldViolation:
    """One problem with one field of a request. `field` is a dotted path such as `geometry.DC`."""

    field: str
    description: str


class SmoothError(Exception):
    """Base of every error we raise on purpose. `reason` is a stable UPPER_SNAKE identifier."""

    reason: str = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        violations: Sequence[FieldViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.violations: tuple[FieldViolation, ...] = tuple(violations)
        self.metadata: dict[str, str] = dict(metadata or {})


class InvalidArgument(SmoothError):
    reason = "INVALID_ARGUMENT"

    @classmethod
    def of(cls, violations: Sequence[FieldViolation]) -> InvalidArgument:
        """One error for a list of violations; the message names every field."""
        fields = ", ".join(dict.fromkeys(v.field for v in violations))
        first = violations[0].description if violations else ""
        return cls(f"invalid fields: {fields} ({first})", violations=violations)


class NotFound(SmoothError):
    reason = "NOT_FOUND"


class AlreadyExists(SmoothError):
    reason = "ALREADY_EXISTS"


class Aborted(SmoothError):
    reason = "ABORTED"


class VersionConflict(Aborted):
    reason = "VERSION_CONFLICT"

    def __init__(self, message: str, *, current_version: int) -> None:
        super().__init__(message, metadata={"current_version": str(current_version)})
        self.current_version = current_version


class FailedPrecondition(SmoothError):
    reason = "FAILED_PRECONDITION"


class Unauthenticated(SmoothError):
    reason = "UNAUTHENTICATED"


class PermissionDenied(SmoothError):
    reason = "PERMISSION_DENIED"


class Unavailable(SmoothError):
    reason = "UNAVAILABLE"


class OutOfRange(SmoothError):
    reason = "OUT_OF_RANGE"


class ResourceExhausted(SmoothError):
    reason = "RESOURCE_EXHAUSTED"


@dataclass(slots=True)
class ViolationCollector:
    """Collects violations while checking a whole request, so the client sees every problem at once."""

    violations: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.violations.append(FieldViolation(field_path, description))

    def extend(self, violations: Sequence[FieldViolation]) -> None:
        self.violations.extend(violations)

    def raise_if_any(self) -> None:
        if self.violations:
            raise InvalidArgument.of(self.violations)
