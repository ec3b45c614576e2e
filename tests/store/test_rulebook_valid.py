"""rulebook.check's `valid`: central's bulk apply has already run each change's field rules (check_entity) while
parsing the push, so the rulebook does not run them again for those states; it still runs everything else: the
rulebook's own checks, references and unique keys. SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime

from server.domain.entities import ToolInstance, ToolItem
from server.domain.errors import FailedPrecondition, InvalidArgument
from server.store.repository import Store
from server.usecases import rulebook

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


def _fields(error: object) -> list[str]:
    assert isinstance(error, InvalidArgument | FailedPrecondition)
    return [v.field for v in error.violations]


async def test_valid_states_skip_only_the_field_rules(migrated_store: Store) -> None:
    bad = ToolItem(id=uuid.uuid4(), name="  ", calibration_interval_days=36501, created_at=T0, updated_at=T0, version=1)
    async with migrated_store.read() as tx:
        everything = await rulebook.check(tx, [bad])
        trusted = await rulebook.check(tx, [bad], valid={bad.id})
    assert _fields(everything[bad.id]) == ["name", "calibration_interval_days"]
    # The blank name is check_entity's (skipped: the caller vouches for it); the interval is the rulebook's own.
    assert _fields(trusted[bad.id]) == ["calibration_interval_days"]


async def test_valid_states_still_have_their_references_and_keys_checked(migrated_store: Store) -> None:
    item = ToolItem(id=uuid.uuid4(), name="mill", created_at=T0, updated_at=T0, version=1)
    first, second = (
        ToolInstance(
            id=uuid.uuid4(), tool_item_id=item.id, serial_number="SN-1", created_at=T0, updated_at=T0, version=1
        )
        for _ in range(2)
    )
    orphan = dataclasses.replace(first, id=uuid.uuid4(), serial_number="SN-2", tool_item_id=uuid.uuid4())
    async with migrated_store.read() as tx:
        # The instances' item is in the batch, and valid too: found there, nothing looked up in the store for it.
        assert await rulebook.check(tx, [item, first], valid={item.id, first.id}) == {}
        errors = await rulebook.check(
            tx, [item, first, second, orphan], valid={item.id, first.id, second.id, orphan.id}
        )
    assert set(errors) == {second.id, orphan.id}
    assert errors[second.id].reason == "SERIAL_NUMBER_TAKEN"
    assert errors[orphan.id].reason == "BAD_REFERENCE"
    assert _fields(errors[orphan.id]) == ["tool_item_id"]


async def test_an_update_is_checked_for_what_it_changes(migrated_store: Store) -> None:
    """`stored`: field rules are not run again on what an update leaves as the store holds it (check_entity's
    `before`), and are on what it changes."""
    stored = ToolItem(id=uuid.uuid4(), name="mill", tags=["a", "a"], created_at=T0, updated_at=T0, version=1)
    renamed = dataclasses.replace(stored, name="renamed", version=2)
    retagged = dataclasses.replace(stored, tags=["b", "b"], version=2)
    async with migrated_store.read() as tx:
        assert _fields((await rulebook.check(tx, [renamed]))[stored.id]) == ["tags"]
        assert await rulebook.check(tx, [renamed], stored={stored.id: stored}) == {}
        assert _fields((await rulebook.check(tx, [retagged], stored={stored.id: stored}))[stored.id]) == ["tags"]
