"""What can go wrong between the replicator and central, in our one error tree, and which failures are worth
retrying soon. Every `CentralClient` raises these (and only these) for an answer it got or failed to get:

    SmoothError                          (server/domain/errors.py)
    ├── Unavailable                      central unreachable, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED
    ├── Aborted                          ABORTED: a write collided on central
    ├── FailedPrecondition               e.g. SCHEMA_AHEAD, NOT_CENTRAL
    │   └── SequenceGap                  central's watermark is not where the edge thought: resend from it
    ├── InvalidArgument, NotFound, AlreadyExists, Unauthenticated, PermissionDenied
    └── CentralFailed                    INTERNAL, UNKNOWN, or any status with no meaning of ours

Transient (retry soon, with backoff): Unavailable, Aborted, SequenceGap. Everything else, and any exception that
is not a SmoothError (a bug in our code), is permanent: retrying it at once cannot help.
"""

from __future__ import annotations

from server.domain.errors import Aborted, FailedPrecondition, SmoothError, Unavailable

SEQUENCE_GAP = "SEQUENCE_GAP"


class SequenceGap(FailedPrecondition):
    """Central has applied this origin up to `watermark`, which is not where the refused batch started."""

    reason = SEQUENCE_GAP

    def __init__(self, message: str, *, watermark: int) -> None:
        super().__init__(message, metadata={"watermark": str(watermark)})
        self.watermark = watermark


class CentralFailed(SmoothError):
    """Central answered with a status that means "central itself failed" (INTERNAL, UNKNOWN, ...)."""

    reason = "CENTRAL_FAILED"


def refined(error: SmoothError) -> SmoothError:
    """`error` as the replicator wants to see it: a SEQUENCE_GAP refusal becomes a `SequenceGap`."""
    if isinstance(error, FailedPrecondition) and not isinstance(error, SequenceGap) and error.reason == SEQUENCE_GAP:
        try:
            watermark = int(error.metadata["watermark"])
        except (KeyError, ValueError):
            return error  # a gap without a usable watermark: nothing to resume from, so not recoverable
        gap = SequenceGap(error.message, watermark=watermark)
        gap.__cause__ = error.__cause__
        return gap
    return error


def is_transient(error: BaseException) -> bool:
    """True when the same call may well succeed a little later (central down, busy, or at another position)."""
    return isinstance(error, Unavailable | Aborted | SequenceGap)
