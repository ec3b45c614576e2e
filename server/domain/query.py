"""A parsed list request: filter terms, sort keys and the keyset position; built by the use cases
(server/usecases/listing.py), turned into SQL by the store (server/store/query.py)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Literal

from server.domain.registry import EntityKind
from server.domain.schema import FieldInfo

Op = Literal["=", "!=", "<", "<=", ">", ">=", ":"]


@dataclass(frozen=True, slots=True)
class Term:
    field: FieldInfo
    op: Op
    value: Any  # typed for the field; for text with a trailing '*', a prefix (see `prefix`)
    prefix: bool = False


@dataclass(frozen=True, slots=True)
class OrderKey:
    field: FieldInfo
    desc: bool


@dataclass(frozen=True, slots=True)
class ListQuery:
    kind: EntityKind
    terms: tuple[Term, ...]
    order: tuple[OrderKey, ...]  # always ends with id
    page_size: int
    after: tuple[Any, ...] | None  # the last row's order values, from the page token
    # Rows private to their owner (tool sets that are not global) are shown only to this user; None: all rows.
    private_viewer: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a list: its entities and, when there may be more rows, the last row's position."""

    items: list[Any]
    last_position: tuple[Any, ...] | None
