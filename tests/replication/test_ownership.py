"""The ownership policy alone (pure: no store, no clock): who wins a conflict, and what the resolved state is."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, date, datetime

from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolItem, ToolType, ToolUsage
from server.domain.registry import KINDS
from server.domain.rulebook import PARENT_FIRST, RULES
from server.usecases.replication.ownership import edge_owns, resolve, resolve_deleted

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _instance(**overrides: object) -> ToolInstance:
    base = ToolInstance(
        id=uuid.UUID(int=1),
        tool_item_id=uuid.UUID(int=2),
        serial_number="SN-1",
        created_at=T0,
        updated_at=T0,
        version=3,
    )
    return dataclasses.replace(base, **overrides)  # type: ignore[arg-type]


def test_usage_is_the_edges_whole() -> None:
    central = ToolUsage(
        id=uuid.UUID(int=5), tool_instance_id=uuid.UUID(int=1), start_time=T0, notes="central", version=2
    )
    edge = dataclasses.replace(central, notes="edge")
    assert edge_owns(KINDS["tool_usage"])
    assert resolve(KINDS["tool_usage"], central, edge) == ("EDGE", edge)
    assert resolve_deleted(KINDS["tool_usage"]) == "EDGE"


def test_catalog_items_are_centrals() -> None:
    central = ToolItem(id=uuid.UUID(int=9), name="central name", tool_type=ToolType.OTHER, version=2)
    edge = dataclasses.replace(central, name="edge name", tags=["edge"])
    assert not edge_owns(KINDS["tool_item"])
    assert resolve(KINDS["tool_item"], central, edge) == ("CENTRAL", central)
    assert resolve_deleted(KINDS["tool_item"]) == "CENTRAL"


def test_an_instance_keeps_centrals_catalog_fields_and_the_edges_measurements() -> None:
    central = _instance(serial_number="SN-central", tags=["central"])
    edge = _instance(
        serial_number="SN-edge",
        measurements={"DC": 9.98},
        last_calibration=T0,
        calibration_due=date(2026, 6, 1),
        status=ToolInstanceStatus.MAINTENANCE,
    )
    winner, resolved = resolve(KINDS["tool_instance"], central, edge)
    assert winner == "MERGED"
    assert isinstance(resolved, ToolInstance)
    assert resolved.serial_number == "SN-central" and resolved.tags == ["central"]
    assert resolved.measurements == {"DC": 9.98} and resolved.status == ToolInstanceStatus.MAINTENANCE
    assert resolved.last_calibration == T0 and resolved.calibration_due == date(2026, 6, 1)


def test_an_instance_whose_edge_fields_agree_is_centrals() -> None:
    central = _instance(serial_number="SN-central")
    edge = _instance(serial_number="SN-edge")
    assert resolve(KINDS["tool_instance"], central, edge) == ("CENTRAL", central)


def test_the_decision_is_the_same_whichever_order_it_is_asked_in() -> None:
    central, edge = _instance(tags=["c"]), _instance(measurements={"DC": 1.0})
    assert resolve(KINDS["tool_instance"], central, edge) == resolve(KINDS["tool_instance"], central, edge)


def test_every_kind_has_a_rulebook_row_and_parents_come_first() -> None:
    assert set(RULES) == set(KINDS) == set(PARENT_FIRST)
    position = {name: i for i, name in enumerate(PARENT_FIRST)}
    from server.domain.schema import fields_of

    for name, kind in KINDS.items():
        for f in fields_of(kind.cls):
            if f.ref is not None and f.ref != name:
                assert position[f.ref] < position[name], f"{f.ref} must come before {name} ({f.name})"
