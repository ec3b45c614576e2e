"""What a hostile or buggy edge may push: every malformed change is rejected alone, with its reason; the valid
changes around it in the same batch are applied, and no push ever answers INTERNAL or UNKNOWN (issue 9's
list, case by case). Real central on PostgreSQL, real gRPC."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable

import pytest
from pushing import central, new_item, push_between_valid, wire
from smooth.core.v1 import common_pb2, sync_pb2

from server.domain.entities import ToolItem
from server.domain.registry import KIND_BY_CLASS
from server.domain.schema import to_json

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the module's fixture


def with_snapshot(**changes: object) -> Callable[[sync_pb2.Change], None]:
    """Replace keys of the snapshot (JSON-encodable values)."""

    def edit(change: sync_pb2.Change) -> None:
        data = json.loads(change.data_json)
        data.update(changes)
        change.data_json = json.dumps(data)

    return edit


def with_geometry_text(text: str) -> Callable[[sync_pb2.Change], None]:
    """Put raw JSON text (not necessarily what json.dumps would write) in the geometry field."""

    def edit(change: sync_pb2.Change) -> None:
        change.data_json = change.data_json[:-1] + f',"geometry":{text}}}'

    return edit


def with_text(data_json: str) -> Callable[[sync_pb2.Change], None]:
    def edit(change: sync_pb2.Change) -> None:
        change.data_json = data_json

    return edit


def with_field(**fields: object) -> Callable[[sync_pb2.Change], None]:
    def edit(change: sync_pb2.Change) -> None:
        for name, value in fields.items():
            setattr(change, name, value)

    return edit


def with_version(version: int) -> Callable[[sync_pb2.Change], None]:
    def edit(change: sync_pb2.Change) -> None:
        change.version = version
        with_snapshot(version=version)(change)

    return edit


def out_of_range_time(change: sync_pb2.Change) -> None:
    change.change_time.seconds = 400_000_000_000  # year ~14,600


def negative_nanos(change: sync_pb2.Change) -> None:
    change.change_time.nanos = -1


def update_of_unknown(change: sync_pb2.Change) -> None:
    change.operation = common_pb2.CHANGE_OPERATION_UPDATE
    with_version(2)(change)


HOSTILE: dict[str, Callable[[sync_pb2.Change], None]] = {
    "tags of numbers": with_snapshot(tags=[5]),
    "tags of arrays": with_snapshot(tags=[["a"]]),
    "tags null": with_snapshot(tags=None),
    "tags a string": with_snapshot(tags="abc"),
    "name a number": with_snapshot(name=123),
    "name null": with_snapshot(name=None),
    "name of 100k characters": with_snapshot(name="x" * 100_000),
    "name with NUL": with_snapshot(name="a\x00b"),
    "tool_type null": with_snapshot(tool_type=None),
    "tool_type unknown": with_snapshot(tool_type="LIGHTSABER"),
    "geometry a list": with_snapshot(geometry=[1, 2]),
    "geometry with a 400-digit integer": with_geometry_text('{"DC":' + "9" * 400 + "}"),
    "geometry nested 5,000 deep": with_geometry_text('{"a":' * 5000 + "1" + "}" * 5000),
    "geometry nested 40 deep": with_geometry_text('{"a":' * 40 + "1" + "}" * 40),
    "geometry with NaN": with_geometry_text('{"DC":NaN}'),
    "geometry with 1e400": with_geometry_text('{"DC":1e400}'),
    "geometry with NUL": with_geometry_text('{"x":"a\\u0000b"}'),
    "geometry with a lone surrogate": with_geometry_text('{"x":"\\ud800"}'),
    "name with a lone surrogate": with_text('{"id":"00000000-0000-0000-0000-000000000000","name":"\\udfff"}'),
    "snapshot not an object": with_text("[1, 2, 3]"),
    "snapshot not JSON": with_text("{not json"),
    "snapshot empty": with_text(""),
    "snapshot without id": with_snapshot(id=None),
    "snapshot id differs": with_snapshot(id=str(uuid.uuid4())),
    "created_at not a time": with_snapshot(created_at="yesterday"),
    "created_at without offset": with_snapshot(created_at="2026-01-01T00:00:00"),
    "owner_id not a uuid": with_snapshot(owner_id="nobody"),
    "owner_id unknown": with_snapshot(owner_id=str(uuid.uuid4())),
    "entity_id not a uuid": with_field(entity_id="not-a-uuid"),
    "tx_id not a uuid": with_field(tx_id="not-a-uuid"),
    "actor_id not a uuid": with_field(actor_id="not-a-uuid"),
    "actor_id unknown": with_field(actor_id=str(uuid.uuid4())),
    "operation unknown": with_field(operation=99),
    "operation unspecified": with_field(operation=0),
    "entity_type unknown": with_field(entity_type="tool_magic"),
    "entity_type with NUL": with_field(entity_type="tool\x00item"),
    "request_id with NUL": with_field(request_id="r\x00"),
    "request_id of 10k characters": with_field(request_id="r" * 10_000),
    "change_time out of range": out_of_range_time,
    "change_time negative nanos": negative_nanos,
    "version -1": with_version(-1),
    "version 0": with_version(0),
    "version 2^63-1": with_version(2**63 - 1),
    "version differs from the snapshot's": with_field(version=5),
    "CREATE at version 7": with_version(7),
    "UPDATE of an entity central lacks": update_of_unknown,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_a_malformed_change_is_rejected_alone(central: object, case: str) -> None:
    item = new_item("hostile")
    bad = wire(0, item)
    HOSTILE[case](bad)
    response = await push_between_valid(central, bad)  # type: ignore[arg-type]
    assert response.rejected[0].reason.strip(), "a rejection says why"
    async with central.store.read() as tx:  # type: ignore[attr-defined]
        assert await tx.get(KIND_BY_CLASS[ToolItem], item.id) is None, "nothing of the bad change is stored"


async def test_a_rejected_change_is_kept_with_its_reason(central: object) -> None:
    item = new_item("kept")
    bad = wire(0, item)
    with_snapshot(tags=[5])(bad)
    response = await push_between_valid(central, bad)  # type: ignore[arg-type]
    assert "tags" in response.rejected[0].reason
    assert to_json(item)["id"] == response.rejected[0].entity_id
