"""Reads by a list of ids bind the whole list as one parameter (server/store/connection.py in_id_list: SQLite's
json_each, PostgreSQL's = ANY), one statement whatever the count: each id found once, duplicates and ids nothing
has give nothing extra, lists longer than SQLite's old limit of 999 bound variables work. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from server.domain.entities import ChangeOperation
from server.domain.registry import KINDS
from server.store.repository import Store

KIND = KINDS["tool_item"]
T0 = datetime(2026, 12, 2, tzinfo=UTC)


async def test_reads_by_id_list(migrated_store: Store) -> None:
    store = migrated_store
    ids = [uuid.uuid4() for _ in range(1500)]
    async with store.write() as tx:
        for n, item_id in enumerate(ids):
            entity = KIND.cls(id=item_id, name=f"item {n}", created_at=T0, updated_at=T0, version=1 + n % 3)
            await tx.insert(KIND, entity)
            if n < 20:
                await tx.append_change(KIND, entity, ChangeOperation.CREATE, actor_id=None, request_id="", at=T0)
    missing = [uuid.uuid4() for _ in range(5)]
    asked = [*ids, *ids[:10], *missing]
    async with store.read() as tx:
        found = await tx.get_many(KIND, asked)
        few = await tx.get_many(KIND, [missing[0], ids[7], ids[7]])
        versions = await tx.versions_of(KIND, asked)
        history = await tx.ids_with_history(KIND, asked)
        none = (await tx.get_many(KIND, []), await tx.versions_of(KIND, []), await tx.ids_with_history(KIND, []))
    assert set(found) == set(ids) and all(found[i].id == i and found[i].name == f"item {n}" for n, i in enumerate(ids))
    assert list(few) == [ids[7]]
    assert versions == {i: 1 + n % 3 for n, i in enumerate(ids)}
    assert history == set(ids[:20])
    assert none == ({}, {}, set())
