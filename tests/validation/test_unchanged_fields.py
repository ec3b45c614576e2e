"""check_entity(before=...): an update's fields left as the store holds them (the very same value object) are not
checked again, unless what their rules read changed too (geometry follows tool_type; an instance's measurements
its item or assembly). Whatever the update does change is checked as ever."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from server.domain.entities import ToolInstance, ToolItem, ToolType
from server.validation.rules import check_entity

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def fields(violations: list[object]) -> set[str]:
    return {v.field.split(".")[0] for v in violations}  # type: ignore[attr-defined]


def item(**values: object) -> ToolItem:
    return ToolItem(id=uuid.uuid4(), name="mill", created_at=T0, updated_at=T0, version=1, **values)  # type: ignore[arg-type]


def test_a_field_the_update_leaves_is_not_checked_again() -> None:
    # A stored state that breaks a rule (as one written under older rules could): not a reason to refuse an
    # update of another field; the same state as a create, or the field itself changed, is refused.
    stored = item(tags=["a", "a"])
    update = dataclasses.replace(stored, name="renamed", version=2)
    assert fields(check_entity(update)) == {"tags"}
    assert check_entity(update, before=stored) == []
    changed = dataclasses.replace(update, tags=["b", "b"])
    assert fields(check_entity(changed, before=stored)) == {"tags"}


def test_an_equal_but_new_value_is_checked() -> None:
    stored = item(tags=["a", "a"])
    update = dataclasses.replace(stored, tags=list(stored.tags), version=2)  # equal, not the same object
    assert fields(check_entity(update, before=stored)) == {"tags"}


def test_geometry_is_checked_again_when_the_tool_type_changes() -> None:
    stored = item(tool_type=ToolType.OTHER, geometry={"DC": 10.0})
    update = dataclasses.replace(stored, tool_type=ToolType.END_MILL, version=2)  # geometry: the same object
    assert update.geometry is stored.geometry
    violations = check_entity(update, before=stored)
    assert {v.field for v in violations} == {"geometry.NOF", "geometry.OAL"}
    assert check_entity(dataclasses.replace(stored, name="renamed", version=2), before=stored) == []


def test_measurements_are_checked_again_when_the_item_changes() -> None:
    stored = ToolInstance(
        id=uuid.uuid4(),
        tool_item_id=uuid.uuid4(),
        serial_number="SN-1",
        measurements={"DC": "not an object"},
        created_at=T0,
        updated_at=T0,
        version=1,
    )
    assert check_entity(dataclasses.replace(stored, serial_number="SN-2", version=2), before=stored) == []
    moved = dataclasses.replace(stored, tool_item_id=uuid.uuid4(), version=2)
    assert fields(check_entity(moved, before=stored)) == {"measurements"}


def test_a_before_of_another_kind_is_ignored() -> None:
    stored = item(tags=["a", "a"])
    other = ToolInstance(
        id=stored.id, tool_item_id=uuid.uuid4(), serial_number="SN", created_at=T0, updated_at=T0, version=1
    )
    assert fields(check_entity(stored, before=other)) == {"tags"}
