"""Who wins a conflict (DESIGN decision 7): pure, no clocks, no I/O.

Usage is the edge's; the measurements of a physical tool are the edge's (presetters and collectors stand
there); everything else — the catalog, presets, sets, users, the other instance fields — is central's. The
split is the rulebook's (`edge_owned`, `edge_fields`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from server.domain.entities import Versioned
from server.domain.registry import EntityKind
from server.domain.rulebook import RULES
from server.domain.schema import to_json

Winner = Literal["EDGE", "CENTRAL", "MERGED"]


def edge_owns(kind: EntityKind) -> bool:
    """The edge owns every field of this kind's entities."""
    return RULES[kind.name].edge_owned


def resolve(kind: EntityKind, central: Versioned, edge: Versioned) -> tuple[Winner, Versioned]:
    """The decision for two versions of one entity: (winner, resolved state). The resolved state is central's
    with the edge's owned fields laid over it; "MERGED" when that differs from central's."""
    if edge_owns(kind):
        return "EDGE", edge
    fields = RULES[kind.name].edge_fields
    merged = dataclasses.replace(central, **{f: getattr(edge, f) for f in fields})
    return ("MERGED" if to_json(merged) != to_json(central) else "CENTRAL"), merged


def resolve_deleted(kind: EntityKind) -> Winner:
    """One side deleted the entity while the other changed it: the owner's side wins (the edge's changes of
    what it owns come back; otherwise the delete stands)."""
    return "EDGE" if edge_owns(kind) else "CENTRAL"
