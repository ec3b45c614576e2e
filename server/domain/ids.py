"""Entity ids: UUIDv7 (RFC 9562 §5.7), time-ordered so inserts land at the end of the primary-key index."""

from __future__ import annotations

import os
import threading
import time
import uuid

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def uuid7() -> uuid.UUID:
    """A UUIDv7: 48-bit Unix ms timestamp, then a 12-bit counter (RFC 9562 method 1) and 62 random bits.

    The counter keeps ids minted in the same millisecond strictly increasing within this process.
    """
    global _last_ms, _counter
    with _lock:
        now_ms = time.time_ns() // 1_000_000
        if now_ms <= _last_ms:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms += 1
                _counter = 0
            now_ms = _last_ms
        else:
            _last_ms = now_ms
            _counter = int.from_bytes(os.urandom(2), "big") & 0x3FF  # random start, headroom left
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (now_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= counter << 64
    value |= 0b10 << 62  # variant
    value |= rand
    return uuid.UUID(int=value)


def parse_uuid(text: str) -> uuid.UUID:
    """Parse a client-supplied id; raises ValueError on anything that is not a UUID."""
    return uuid.UUID(text.strip())
