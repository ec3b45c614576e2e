"""bulk_update writes only the columns an update changes when it is given the stored states (SQLite then
maintains only the indexes over them), and still writes every change: a JSON value equal in Python but not in
text ({"n": 1} and {"n": 1.0}), several sets of columns in one call, a row whose version moved (refused).
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta

from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolItem
from server.domain.registry import KINDS
from server.store.repository import Store

KIND = KINDS["tool_instance"]
T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)


async def test_changed_columns_are_written_and_the_rest_kept(migrated_store: Store) -> None:
    store = migrated_store
    item = ToolItem(id=uuid.uuid4(), name="mill", created_at=T0, updated_at=T0, version=1)
    stored = [
        ToolInstance(
            id=uuid.uuid4(),
            tool_item_id=item.id,
            serial_number=f"SN-{i}",
            tags=["a"],
            measurements={"n": 1},
            tool_life_state={"used": {"cycles": 1}},
            created_at=T0,
            updated_at=T0,
            version=1,
        )
        for i in range(4)
    ]
    async with store.write() as tx:
        await tx.insert(KINDS["tool_item"], item)
        for entity in stored:
            await tx.insert(KIND, entity)
    later = T0 + timedelta(minutes=1)
    changed = [
        # status only (a collector follow-up): the other columns must stay as they are
        dataclasses.replace(
            stored[0], status=ToolInstanceStatus.IN_USE, status_reason="opened", updated_at=later, version=2
        ),
        # a JSON value equal in Python, not in its text: written
        dataclasses.replace(stored[1], measurements={"n": 1.0}, updated_at=later, version=2),
        # a new JSON object equal to the old one, and a new tag list: written as given
        dataclasses.replace(
            stored[2], tool_life_state={"used": {"cycles": 2}}, tags=["a", "b"], updated_at=later, version=2
        ),
    ]
    async with store.write() as tx:
        before = {e.id: e for e in stored}
        assert await tx.bulk_update(KIND, [(e, 1) for e in changed], before)
    async with store.read() as tx:
        found = await tx.get_many(KIND, [e.id for e in stored])
    for entity in changed:
        assert found[entity.id] == entity
        assert type(found[entity.id].measurements["n"]) is type(entity.measurements["n"])
    assert found[stored[3].id] == stored[3]
    # A row whose version moved since it was read is refused (the caller aborts its transaction).
    async with store.write() as tx:
        stale = dataclasses.replace(changed[0], status_reason="again", version=3)
        assert not await tx.bulk_update(KIND, [(stale, 1)], {stale.id: stored[0]})
