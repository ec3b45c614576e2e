"""List: keyset pagination (every row exactly once, also while rows are inserted), filters and order_by."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import pytest
from conftest import Factory, Stubs, expect_failure, struct
from google.protobuf import timestamp_pb2
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_item_pb2 as item_pb
from smooth.core.v1 import tool_usage_pb2 as usage_pb


async def _walk(stubs: Stubs, page_size: int, **kw: Any) -> list[item_pb.ToolItem]:
    seen: list[item_pb.ToolItem] = []
    token = ""
    while True:
        page = await stubs.items.ListToolItems(
            item_pb.ListToolItemsRequest(page_size=page_size, page_token=token, **kw)
        )
        assert len(page.tool_items) <= page_size
        seen.extend(page.tool_items)
        token = page.next_page_token
        if not token:
            return seen


async def test_pages_walk_every_row_exactly_once_while_rows_are_inserted(stubs: Stubs, make: Factory) -> None:
    tag = "walk-concurrent"
    existing = [await make.item(tags=[tag], name=f"W{i % 7}") for i in range(120)]
    stop = asyncio.Event()
    inserted: list[str] = []

    async def writer() -> None:
        while not stop.is_set():
            inserted.append((await make.item(tags=[tag], name=f"W{len(inserted) % 7}")).id)

    task = asyncio.create_task(writer())
    walks: dict[str, list[str]] = {}
    try:
        for order_by in ("", "name", "name desc", "created_at desc", "updated_at, name desc"):
            seen = await _walk(stubs, 7, filter=f'tags:"{tag}"', order_by=order_by)
            walks[order_by] = [i.id for i in seen]
    finally:
        stop.set()
        await task
    for order_by, ids in walks.items():
        assert len(ids) == len(set(ids)), f"a row came twice with order_by={order_by!r}"
        assert {i.id for i in existing} <= set(ids), f"a row was skipped with order_by={order_by!r}"
        # Checked after the writer stopped: a row can be visible before its Create call has returned.
        assert set(ids) <= {i.id for i in existing} | set(inserted)
    assert inserted, "the writer should have inserted rows during the walk"


async def test_order_by_is_respected(stubs: Stubs, make: Factory) -> None:
    tag = "ordering"
    for name in ["delta", "alpha", "charlie", "bravo", "alpha"]:
        await make.item(name=name, tags=[tag])
    names = [i.name for i in await _walk(stubs, 2, filter=f'tags:"{tag}"', order_by="name")]
    assert names == sorted(names)
    names = [i.name for i in await _walk(stubs, 2, filter=f'tags:"{tag}"', order_by="name desc")]
    assert names == sorted(names, reverse=True)


async def test_nullable_sort_keys_page_exactly(stubs: Stubs, make: Factory) -> None:
    from google.type import date_pb2

    tag = "calib"
    due = [
        None,
        date_pb2.Date(year=2027, month=1, day=5),
        None,
        date_pb2.Date(year=2026, month=12, day=1),
        date_pb2.Date(year=2027, month=1, day=5),
        None,
    ]
    made = []
    for d in due:
        kw: dict[str, Any] = {"tags": [tag]}
        if d is not None:
            kw["calibration_due"] = d
        made.append(await make.instance(**kw))
    seen: list[inst_pb.ToolInstance] = []
    token = ""
    while True:
        page = await stubs.instances.ListToolInstances(
            inst_pb.ListToolInstancesRequest(
                page_size=2, page_token=token, filter=f'tags:"{tag}"', order_by="calibration_due"
            )
        )
        seen.extend(page.tool_instances)
        token = page.next_page_token
        if not token:
            break
    assert sorted(i.id for i in seen) == sorted(i.id for i in made)
    dues = [
        (i.calibration_due.year, i.calibration_due.month, i.calibration_due.day)
        if i.HasField("calibration_due")
        else None
        for i in seen
    ]
    assert dues[:3] == [(2026, 12, 1), (2027, 1, 5), (2027, 1, 5)] and dues[3:] == [None, None, None]
    # Due before a date: the MES "tools due for calibration" query.
    page = await stubs.instances.ListToolInstances(
        inst_pb.ListToolInstancesRequest(filter=f'tags:"{tag}" AND calibration_due < "2027-01-01"')
    )
    assert [i.id for i in page.tool_instances] == [made[3].id]


async def test_filters(stubs: Stubs, make: Factory) -> None:
    tag = "filters"
    drill = await make.item(
        tags=[tag, "coated"],
        tool_type=item_pb.TOOL_TYPE_DRILL,
        manufacturer="Guhring",
        part_number="GU-5510",
        geometry=struct({"DC": 6.8, "SIG": 140, "OAL": 74}),
    )
    mill = await make.item(tags=[tag], manufacturer="Sandvik", part_number="SV-R216")

    async def ids(f: str) -> list[str]:
        return [i.id for i in (await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(filter=f))).tool_items]

    assert await ids(f'tags:"{tag}" AND tool_type = DRILL') == [drill.id]
    assert await ids(f'tags:"{tag}" AND tool_type = TOOL_TYPE_END_MILL') == [mill.id]
    assert await ids(f'tags:"{tag}" AND tool_type != DRILL') == [mill.id]
    assert await ids('tags:"coated"') == [drill.id]
    assert await ids('part_number = "GU-5510"') == [drill.id]
    assert await ids(f'tags:"{tag}" AND manufacturer = "Sand*"') == [mill.id]
    assert await ids(f'tags:"{tag}" AND created_at >= "{drill.created_at.ToJsonString()}"') == [
        drill.id,
        mill.id,
    ]
    assert await ids(f'tags:"{tag}" AND created_at > "{drill.created_at.ToJsonString()}"') == [mill.id]
    # A prefix is matched as text: LIKE's wildcards and its escape character in it are plain characters.
    odd = await make.item(tags=[tag], manufacturer="50%_off/Tools")
    await make.item(tags=[tag], manufacturer="50 and more")
    await make.item(tags=[tag], manufacturer="50x_off/Tools")
    assert await ids(f'tags:"{tag}" AND manufacturer = "50%*"') == [odd.id]
    assert await ids(f'tags:"{tag}" AND manufacturer = "50%_off/*"') == [odd.id]
    assert await ids(f'tags:"{tag}" AND manufacturer = "50%_off/Tools*"') == [odd.id]
    assert await ids(f'tags:"{tag}" AND manufacturer = "5_*"') == []


async def test_usage_history_by_machine_and_time_range(stubs: Stubs, make: Factory) -> None:
    instance = await make.instance()
    base = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    made = []
    for i, machine in enumerate(["LATHE-7", "LATHE-7", "MILL-9", "LATHE-7"]):
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(base + timedelta(hours=i))
        made.append(await make.usage(tool_instance_id=instance.id, machine_id=machine, start_time=ts))
    f = (
        f'tool_instance_id = "{instance.id}" AND machine_id = "LATHE-7" AND '
        f'start_time >= "2026-03-01T09:00:00Z" AND start_time < "2026-03-01T12:00:00+00:00"'
    )
    page = await stubs.usages.ListToolUsages(usage_pb.ListToolUsagesRequest(filter=f, order_by="start_time desc"))
    assert [u.id for u in page.tool_usages] == [made[3].id, made[1].id]
    open_ones = await stubs.usages.ListToolUsages(
        usage_pb.ListToolUsagesRequest(filter=f'tool_instance_id = "{instance.id}"', order_by="end_time")
    )
    assert len(open_ones.tool_usages) == 4


@pytest.mark.parametrize(
    ("request_fields", "field"),
    [
        ({"filter": "colour = red"}, "filter"),
        ({"filter": "name ~ x"}, "filter"),
        ({"filter": 'name = "a" OR name = "b"'}, "filter"),
        ({"filter": 'name = "a" AND'}, "filter"),
        ({"filter": "tags = x"}, "filter"),
        ({"filter": "tool_type = SPOON"}, "filter"),
        ({"filter": 'created_at > "yesterday"'}, "filter"),
        ({"filter": 'created_at > "2026-01-01T00:00:00"'}, "filter"),
        ({"order_by": "geometry"}, "order_by"),
        ({"order_by": "name sideways"}, "order_by"),
        ({"page_size": -1}, "page_size"),
        ({"page_token": "garbage!"}, "page_token"),
    ],
)
async def test_bad_list_requests(stubs: Stubs, request_fields: dict[str, Any], field: str) -> None:
    err = await expect_failure(stubs.items.ListToolItems(item_pb.ListToolItemsRequest(**request_fields)))
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == [field], err.message


async def test_page_token_is_bound_to_its_query(stubs: Stubs, make: Factory) -> None:
    for _ in range(3):
        await make.item(tags=["bound"])
    page = await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1, filter='tags:"bound"'))
    assert page.next_page_token
    err = await expect_failure(
        stubs.items.ListToolItems(
            item_pb.ListToolItemsRequest(page_size=1, page_token=page.next_page_token, order_by="name")
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == ["page_token"]


async def test_page_size_default_and_cap(stubs: Stubs, make: Factory) -> None:
    for _ in range(55):
        await make.item(tags=["sizes"])
    page = await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(filter='tags:"sizes"'))
    assert len(page.tool_items) == 50 and page.next_page_token
    page = await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(filter='tags:"sizes"', page_size=5000))
    assert len(page.tool_items) == 55 and not page.next_page_token


async def test_long_filters_work_and_are_not_kept(stubs: Stubs, make: Factory) -> None:
    """Parsed filters are kept by their text for the next List, but only short ones: a client sending long
    filters cannot fill the server's memory. A long filter still works, with its page tokens."""
    from server.domain.registry import KINDS
    from server.usecases import listing

    cache = listing.parse_filter.cache
    listing.parse_filter(KINDS["tool_item"], 'name = "short"')
    hits = cache.cache_info().hits
    listing.parse_filter(KINDS["tool_item"], 'name = "short"')
    assert cache.cache_info().hits == hits + 1
    made = [await make.item(name="long filter") for _ in range(3)]
    size = cache.cache_info().currsize
    walked = await _walk(stubs, 2, filter='name = "long filter"' + " " * listing.PARSED_KEPT_MAX_LEN)
    assert sorted(i.id for i in walked) == sorted(i.id for i in made)
    assert cache.cache_info().currsize == size
