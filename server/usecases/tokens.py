"""Page tokens for lists walked by a sequence number (revisions, the audit log): one strict codec."""

from __future__ import annotations

from server.domain.errors import FieldViolation, InvalidArgument

_MAX = 2**63 - 1


def encode_position(prefix: str, position: int) -> str:
    return f"{prefix}{position}"


def decode_position(prefix: str, token: str) -> int:
    """0 for no token; the position for a token this codec made; INVALID_ARGUMENT for anything else."""
    if not token:
        return 0
    digits = token[len(prefix) :] if token.startswith(prefix) else ""
    if not digits or not digits.isascii() or not digits.isdigit() or len(digits) > 19 or int(digits) > _MAX:
        raise InvalidArgument.of([FieldViolation("page_token", "not a page token of this list; pass it unchanged")])
    return int(digits)
