"""Create, get, list, update with a mask, delete and ListRevisions for every entity, over real gRPC + SQLite."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from conftest import Factory, Stubs, expect_failure, struct
from google.protobuf import empty_pb2, field_mask_pb2
from smooth.core.v1 import common_pb2


@dataclass(frozen=True)
class Entity:
    name: str  # registry name and the request's entity field
    label: str
    plural: str
    stub: str
    factory: str
    update_field: str
    update_value: Any


ENTITIES = [
    Entity("tool_item", "ToolItem", "ToolItems", "items", "item", "description", "re-ground twice"),
    Entity(
        "tool_assembly",
        "ToolAssembly",
        "ToolAssemblies",
        "assemblies",
        "assembly",
        "name",
        "Renamed assembly",
    ),
    Entity("tool_instance", "ToolInstance", "ToolInstances", "instances", "instance", "tags", ["spare", "blue"]),
    Entity(
        "tool_preset",
        "ToolPreset",
        "ToolPresets",
        "presets",
        "preset",
        "parameters",
        {"tool_number": 7, "pocket": 3},
    ),
    Entity("tool_usage", "ToolUsage", "ToolUsages", "usages", "usage", "notes", "chipped edge at the end"),
    Entity("tool_set", "ToolSet", "ToolSets", "sets", "tool_set", "description", "job 4711"),
]


def _module(stub: Any) -> Any:
    import importlib

    return importlib.import_module(type(stub).__module__.replace("_pb2_grpc", "_pb2"))


def _set(msg: Any, field: str, value: Any) -> None:
    if isinstance(value, dict):
        getattr(msg, field).CopyFrom(struct(value))
    elif isinstance(value, list):
        del getattr(msg, field)[:]
        getattr(msg, field).extend(value)
    else:
        setattr(msg, field, value)


def _get(msg: Any, field: str) -> Any:
    value = getattr(msg, field)
    if hasattr(value, "fields") and hasattr(value, "update"):
        from google.protobuf import json_format

        return json_format.MessageToDict(value)
    return list(value) if not isinstance(value, (str, int, float, bool)) else value


@pytest.mark.parametrize("e", ENTITIES, ids=lambda e: e.label)
async def test_full_lifecycle(e: Entity, stubs: Stubs, make: Factory) -> None:
    stub = getattr(stubs, e.stub)
    pb = _module(stub)
    created = await getattr(make, e.factory)()
    assert created.id and created.version == 1
    assert created.created_at.seconds > 0 and created.updated_at == created.created_at

    got = await getattr(stub, f"Get{e.label}")(getattr(pb, f"Get{e.label}Request")(id=created.id))
    assert got == created

    # Update one field through a mask: the other fields stay, the version goes up.
    patch = getattr(pb, e.label)(id=created.id, version=created.version)
    _set(patch, e.update_field, e.update_value)
    updated = await getattr(stub, f"Update{e.label}")(
        getattr(pb, f"Update{e.label}Request")(
            **{e.name: patch, "update_mask": field_mask_pb2.FieldMask(paths=[e.update_field])}
        )
    )
    assert updated.version == 2
    expected = type(created)()
    expected.CopyFrom(created)
    _set(expected, e.update_field, e.update_value)
    for field in ("version", "updated_at"):
        expected.ClearField(field)
    compare = type(updated)()
    compare.CopyFrom(updated)
    for field in ("version", "updated_at"):
        compare.ClearField(field)
    assert compare == expected
    assert _get(updated, e.update_field) == e.update_value

    # Listing finds it by id order; filtering by id finds exactly it.
    listed = await getattr(stub, f"List{e.plural}")(
        getattr(pb, f"List{e.plural}Request")(filter=f'id = "{created.id}"')
    )
    assert [x.id for x in getattr(listed, listed.DESCRIPTOR.fields[0].name)] == [created.id]

    # Delete needs the current version; afterwards Get is NOT_FOUND but the history stays.
    stale = await expect_failure(
        getattr(stub, f"Delete{e.label}")(getattr(pb, f"Delete{e.label}Request")(id=created.id, version=1))
    )
    assert stale.code == grpc.StatusCode.ABORTED and stale.metadata["current_version"] == "2"
    deleted = await getattr(stub, f"Delete{e.label}")(getattr(pb, f"Delete{e.label}Request")(id=created.id, version=2))
    assert deleted == empty_pb2.Empty()
    gone = await expect_failure(getattr(stub, f"Get{e.label}")(getattr(pb, f"Get{e.label}Request")(id=created.id)))
    assert gone.code == grpc.StatusCode.NOT_FOUND

    history = await stub.ListRevisions(common_pb2.ListRevisionsRequest(id=created.id))
    ops = [(r.revision.version, r.revision.operation) for r in history.revisions]
    assert ops == [
        (1, common_pb2.CHANGE_OPERATION_CREATE),
        (2, common_pb2.CHANGE_OPERATION_UPDATE),
        (2, common_pb2.CHANGE_OPERATION_DELETE),
    ]
    assert getattr(history.revisions[0], e.name) == created
    assert getattr(history.revisions[1], e.name) == updated
    seqs = [r.revision.sequence for r in history.revisions]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3


@pytest.mark.parametrize("e", ENTITIES, ids=lambda e: e.label)
async def test_stale_update_is_aborted_and_changes_nothing(e: Entity, stubs: Stubs, make: Factory) -> None:
    stub = getattr(stubs, e.stub)
    pb = _module(stub)
    created = await getattr(make, e.factory)()
    first = getattr(pb, e.label)(id=created.id, version=1)
    _set(first, e.update_field, e.update_value)
    request = getattr(pb, f"Update{e.label}Request")
    mask = field_mask_pb2.FieldMask(paths=[e.update_field])
    await getattr(stub, f"Update{e.label}")(request(**{e.name: first, "update_mask": mask}))
    # A second writer who also read version 1 loses: ABORTED with the current version.
    err = await expect_failure(getattr(stub, f"Update{e.label}")(request(**{e.name: first, "update_mask": mask})))
    assert err.code == grpc.StatusCode.ABORTED
    assert err.metadata["current_version"] == "2"
    current = await getattr(stub, f"Get{e.label}")(getattr(pb, f"Get{e.label}Request")(id=created.id))
    assert current.version == 2
    history = await stub.ListRevisions(common_pb2.ListRevisionsRequest(id=created.id))
    assert [r.revision.version for r in history.revisions] == [1, 2]


async def test_client_chosen_id_and_duplicate_id(stubs: Stubs, make: Factory) -> None:
    import uuid

    from smooth.core.v1 import tool_item_pb2 as pb

    wanted = str(uuid.uuid4())
    item = await make.item(id=wanted)
    assert item.id == wanted
    err = await expect_failure(make.item(id=wanted))
    assert err.code == grpc.StatusCode.ALREADY_EXISTS and "id" in err.fields
    # Server-assigned ids are UUIDv7: time-ordered.
    a, b = await make.item(), await make.item()
    assert uuid.UUID(a.id).version == 7 and a.id < b.id
    assert (await stubs.items.GetToolItem(pb.GetToolItemRequest(id=wanted))).id == wanted


async def test_request_id_makes_retries_idempotent(stubs: Stubs, make: Factory) -> None:
    from smooth.core.v1 import tool_item_pb2 as pb

    request = pb.CreateToolItemRequest(
        tool_item=pb.ToolItem(name="Retry me", tool_type=pb.TOOL_TYPE_OTHER), request_id="req-create-1"
    )
    first = await stubs.items.CreateToolItem(request)
    again = await stubs.items.CreateToolItem(request)
    assert again == first
    listed = await stubs.items.ListToolItems(pb.ListToolItemsRequest(filter='name = "Retry me"'))
    assert len(listed.tool_items) == 1

    update = pb.UpdateToolItemRequest(
        tool_item=pb.ToolItem(id=first.id, version=1, description="once"),
        update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        request_id="req-update-1",
    )
    assert (await stubs.items.UpdateToolItem(update)).version == 2
    assert (await stubs.items.UpdateToolItem(update)).version == 2  # the retry is not a stale write
    history = await stubs.items.ListRevisions(common_pb2.ListRevisionsRequest(id=first.id))
    assert len(history.revisions) == 2

    delete = pb.DeleteToolItemRequest(id=first.id, version=2, request_id="req-delete-1")
    await stubs.items.DeleteToolItem(delete)
    await stubs.items.DeleteToolItem(delete)
    # A request_id reused for another method is refused.
    err = await expect_failure(
        stubs.items.CreateToolItem(
            pb.CreateToolItemRequest(
                tool_item=pb.ToolItem(name="x", tool_type=pb.TOOL_TYPE_OTHER), request_id="req-update-1"
            )
        )
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == ["request_id"]


async def test_update_without_mask_and_with_star(stubs: Stubs, make: Factory) -> None:
    from smooth.core.v1 import tool_item_pb2 as pb

    item = await make.item(description="keep me")
    # No mask: only non-default fields of the message change.
    updated = await stubs.items.UpdateToolItem(
        pb.UpdateToolItemRequest(tool_item=pb.ToolItem(id=item.id, version=1, manufacturer="Other"))
    )
    assert updated.manufacturer == "Other" and updated.description == "keep me" and updated.name == item.name
    # "*": full replacement of every updatable field.
    full = pb.ToolItem(id=item.id, version=2, name="Replaced", tool_type=pb.TOOL_TYPE_OTHER)
    replaced = await stubs.items.UpdateToolItem(
        pb.UpdateToolItemRequest(tool_item=full, update_mask=field_mask_pb2.FieldMask(paths=["*"]))
    )
    assert (replaced.name, replaced.description, replaced.manufacturer, list(replaced.tags)) == (
        "Replaced",
        "",
        "",
        [],
    )
    assert not replaced.geometry.fields


async def test_clearing_an_optional_timestamp_with_the_mask(stubs: Stubs, make: Factory) -> None:
    from smooth.core.v1 import tool_usage_pb2 as pb

    usage = await make.usage()
    closed = pb.ToolUsage(id=usage.id, version=1)
    closed.end_time.GetCurrentTime()
    mask = field_mask_pb2.FieldMask(paths=["end_time"])
    done = await stubs.usages.UpdateToolUsage(pb.UpdateToolUsageRequest(tool_usage=closed, update_mask=mask))
    assert done.HasField("end_time")
    reopened = await stubs.usages.UpdateToolUsage(
        pb.UpdateToolUsageRequest(tool_usage=pb.ToolUsage(id=usage.id, version=2), update_mask=mask)
    )
    assert not reopened.HasField("end_time") and reopened.version == 3
