"""The API keeps each entity version's message once: a new version is never answered from an older one, and the
cache holds at most its size."""

from __future__ import annotations

from conftest import Stubs
from google.protobuf import field_mask_pb2
from smooth.core.v1 import tool_item_pb2 as item_pb
from smooth.core.v1 import user_pb2

from server.api.services import MessageCache


async def test_every_version_is_answered_as_it_is(stubs: Stubs) -> None:
    item = await stubs.items.CreateToolItem(
        item_pb.CreateToolItemRequest(tool_item=item_pb.ToolItem(name="v1", tool_type=item_pb.TOOL_TYPE_OTHER))
    )
    assert (await stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))).name == "v1"
    for n in range(2, 5):
        await stubs.items.UpdateToolItem(
            item_pb.UpdateToolItemRequest(
                tool_item=item_pb.ToolItem(id=item.id, version=n - 1, name=f"v{n}"),
                update_mask=field_mask_pb2.FieldMask(paths=["name"]),
            )
        )
        got = await stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))
        assert (got.name, got.version) == (f"v{n}", n)
        listed = await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(filter=f'id = "{item.id}"'))
        assert [(i.name, i.version) for i in listed.tool_items] == [(f"v{n}", n)]


def test_the_cache_keeps_at_most_its_size_and_the_most_recently_used() -> None:
    cache = MessageCache(2)
    a, b, c = (user_pb2.User(email=f"{x}@shop.example").SerializeToString() for x in "abc")
    cache.put(("a",), a)
    cache.put(("b",), b)
    assert cache.get(("a",)) is a  # a is now the most recently used
    cache.put(("c",), c)
    assert cache.get(("b",)) is None and cache.get(("a",)) is a and cache.get(("c",)) is c
