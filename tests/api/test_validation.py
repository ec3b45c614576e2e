"""Every validation rule, through the API: the right status code, the field named, and nothing changed."""

from __future__ import annotations

import uuid

import grpc
import pytest
from conftest import Factory, Stubs, expect_failure, struct
from google.protobuf import field_mask_pb2
from smooth.core.v1 import (
    tool_assembly_pb2 as asm_pb,
)
from smooth.core.v1 import (
    tool_instance_pb2 as inst_pb,
)
from smooth.core.v1 import (
    tool_item_pb2 as item_pb,
)
from smooth.core.v1 import (
    tool_preset_pb2 as preset_pb,
)
from smooth.core.v1 import (
    tool_set_pb2 as set_pb,
)
from smooth.core.v1 import (
    tool_usage_pb2 as usage_pb,
)

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def _all_item_ids(stubs: Stubs) -> list[str]:
    listed = await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1000))
    return [i.id for i in listed.tool_items]


@pytest.mark.parametrize(
    ("fields", "bad_field"),
    [
        ({"name": "", "tool_type": item_pb.TOOL_TYPE_OTHER}, "name"),
        ({"name": "   ", "tool_type": item_pb.TOOL_TYPE_OTHER}, "name"),
        ({"name": "x" * 201, "tool_type": item_pb.TOOL_TYPE_OTHER}, "name"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "description": "d" * 2001}, "description"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "manufacturer": "m" * 201}, "manufacturer"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "part_number": "p" * 101}, "part_number"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_UNSPECIFIED}, "tool_type"),
        ({"name": "ok", "tool_type": 999}, "tool_type"),
        ({"name": "nul\x00byte", "tool_type": item_pb.TOOL_TYPE_OTHER}, "name"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "tags": ["a", "a"]}, "tags"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "tags": ["t" * 65]}, "tags.0"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "tags": [str(i) for i in range(51)]}, "tags"),
        ({"name": "ok", "tool_type": item_pb.TOOL_TYPE_OTHER, "id": "not-a-uuid"}, "id"),
    ],
)
async def test_item_field_rules(stubs: Stubs, fields: dict[str, object], bad_field: str) -> None:
    before = await _all_item_ids(stubs)
    err = await expect_failure(
        stubs.items.CreateToolItem(item_pb.CreateToolItemRequest(tool_item=item_pb.ToolItem(**fields)))
    )
    assert err.code == INVALID, err.message
    assert bad_field in err.fields, err.fields
    assert err.reason == "INVALID_ARGUMENT"
    assert await _all_item_ids(stubs) == before  # bad input changes nothing


@pytest.mark.parametrize(
    ("tool_type", "geometry", "bad_field"),
    [
        (item_pb.TOOL_TYPE_DRILL, {"DC": 8, "OAL": 90}, "geometry.SIG"),
        (item_pb.TOOL_TYPE_END_MILL, {"DC": -1, "NOF": 4, "OAL": 80}, "geometry.DC"),
        (item_pb.TOOL_TYPE_END_MILL, {"DC": 10, "NOF": 2.5, "OAL": 80}, "geometry.NOF"),
        (item_pb.TOOL_TYPE_END_MILL, {"DC": 10, "NOF": 4, "OAL": 80, "FOO": 1}, "geometry"),
        (item_pb.TOOL_TYPE_END_MILL, {"DC": 10, "NOF": 4, "OAL": 80, "LU": 90}, "geometry.LU"),
        (item_pb.TOOL_TYPE_END_MILL, {"DC": 10, "NOF": 4, "OAL": 80, "RE": 6}, "geometry.RE"),
        (item_pb.TOOL_TYPE_BALL_END_MILL, {"DC": 10, "NOF": 2, "RE": 4}, "geometry.RE"),
        (item_pb.TOOL_TYPE_HOLDER, {"DC": 10}, "geometry.CCMS"),
    ],
)
async def test_geometry_schema_by_tool_type(
    stubs: Stubs, tool_type: int, geometry: dict[str, object], bad_field: str
) -> None:
    err = await expect_failure(
        stubs.items.CreateToolItem(
            item_pb.CreateToolItemRequest(
                tool_item=item_pb.ToolItem(name="g", tool_type=tool_type, geometry=struct(geometry))
            )
        )
    )
    assert err.code == INVALID
    assert any(f == bad_field or f.startswith(bad_field + ".") for f in err.fields), err.fields


async def test_integral_numbers_are_stored_as_integers(make: Factory) -> None:
    item = await make.item(geometry=struct({"DC": 10, "NOF": 4, "OAL": 72.5}))
    assert dict(item.geometry) == {"DC": 10, "NOF": 4, "OAL": 72.5}


async def test_instance_needs_item_or_assembly_and_unique_serial(stubs: Stubs, make: Factory) -> None:
    err = await expect_failure(
        stubs.instances.CreateToolInstance(
            inst_pb.CreateToolInstanceRequest(
                tool_instance=inst_pb.ToolInstance(serial_number="SN-X", status=inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE)
            )
        )
    )
    assert err.code == INVALID and "tool_item_id" in err.fields
    err = await expect_failure(make.instance(status=inst_pb.TOOL_INSTANCE_STATUS_UNSPECIFIED))
    assert err.code == INVALID and err.fields == ["status"]
    err = await expect_failure(make.instance(serial_number=""))
    assert err.code == INVALID and err.fields == ["serial_number"]
    first = await make.instance()
    dup = await expect_failure(make.instance(serial_number=first.serial_number))
    assert dup.code == grpc.StatusCode.ALREADY_EXISTS and dup.fields == ["serial_number"]
    assert dup.metadata["existing_id"] == first.id
    # Taking another instance's serial number by update is refused the same way.
    other = await make.instance()
    err = await expect_failure(
        stubs.instances.UpdateToolInstance(
            inst_pb.UpdateToolInstanceRequest(
                tool_instance=inst_pb.ToolInstance(id=other.id, version=1, serial_number=first.serial_number),
                update_mask=field_mask_pb2.FieldMask(paths=["serial_number"]),
            )
        )
    )
    assert err.code == grpc.StatusCode.ALREADY_EXISTS
    assert (await stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=other.id))).version == 1


async def test_measurements_schema(make: Factory) -> None:
    ok = await make.instance(
        measurements=struct(
            {
                "LF": {"value": 120.01, "nominal": 120, "min": 119.98, "max": 120.02},
                "measured_at": "2026-11-27T08:00:00Z",
                "station_id": "P1",
            }
        )
    )
    assert ok.measurements["LF"]["value"] == 120.01
    err = await expect_failure(make.instance(measurements=struct({"LF": {"value": 1, "min": 2, "max": 1}})))
    assert err.code == INVALID and any(f.startswith("measurements.LF") for f in err.fields)
    err = await expect_failure(make.instance(measurements=struct({"LF": {"value": 1}, "unit": "inch"})))
    assert err.code == INVALID and any(f.startswith("measurements") for f in err.fields)


@pytest.mark.parametrize(
    ("field", "value", "bad_prefix"),
    [
        ("parameters", {"tool_number": 0}, "parameters.tool_number"),
        ("parameters", {"tool_number": 1, "color": "red"}, "parameters"),
    ],
)
async def test_preset_parameters_schema(make: Factory, field: str, value: dict[str, object], bad_prefix: str) -> None:
    err = await expect_failure(make.preset(**{field: struct(value)}))
    assert err.code == INVALID and any(f.startswith(bad_prefix) for f in err.fields), err.fields


async def test_preset_requires_instance_and_machine(stubs: Stubs, make: Factory) -> None:
    instance = await make.instance()
    err = await expect_failure(make.preset(tool_instance_id=instance.id, machine_id=""))
    assert err.code == INVALID and err.fields == ["machine_id"]
    err = await expect_failure(
        stubs.presets.CreateToolPreset(
            preset_pb.CreateToolPresetRequest(tool_preset=preset_pb.ToolPreset(name="T", machine_id="M"))
        )
    )
    assert err.code == INVALID and err.fields == ["tool_instance_id"]


async def test_usage_rules(stubs: Stubs, make: Factory) -> None:
    instance = await make.instance()
    usage = usage_pb.ToolUsage(tool_instance_id=instance.id)
    usage.start_time.FromSeconds(2_000_000_000)
    usage.end_time.FromSeconds(1_999_999_999)
    err = await expect_failure(stubs.usages.CreateToolUsage(usage_pb.CreateToolUsageRequest(tool_usage=usage)))
    assert err.code == INVALID and err.fields == ["end_time"]
    no_start = usage_pb.ToolUsage(tool_instance_id=instance.id)
    err = await expect_failure(stubs.usages.CreateToolUsage(usage_pb.CreateToolUsageRequest(tool_usage=no_start)))
    assert err.code == INVALID and err.fields == ["start_time"]
    err = await expect_failure(
        make.usage(
            tool_instance_id=instance.id,
            usage_metrics=struct({"time_in_spindle_s": 10, "spindle_runtime_s": 20}),
        )
    )
    assert err.code == INVALID and any(f.startswith("usage_metrics") for f in err.fields)
    err = await expect_failure(make.usage(tool_instance_id=instance.id, wear_measurements=struct({"VB": -0.1})))
    assert err.code == INVALID and any(f.startswith("wear_measurements") for f in err.fields)
    err = await expect_failure(make.usage(tool_instance_id=instance.id, notes="n" * 10001))
    assert err.code == INVALID and err.fields == ["notes"]


async def test_missing_references_are_failed_precondition(stubs: Stubs, make: Factory) -> None:
    ghost = str(uuid.uuid4())
    err = await expect_failure(make.instance(tool_item_id=ghost))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["tool_item_id"]
    err = await expect_failure(make.preset(tool_instance_id=ghost))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["tool_instance_id"]
    err = await expect_failure(make.usage(tool_instance_id=ghost))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["tool_instance_id"]
    err = await expect_failure(make.tool_set(tool_instance_ids=[ghost]))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["tool_instance_ids"]
    err = await expect_failure(make.tool_set(tool_instance_ids=["nope"]))
    assert err.code == INVALID and err.fields == ["tool_instance_ids"]


async def test_assembly_roles_and_required_items(stubs: Stubs, make: Factory) -> None:
    cutter, holder = await make.item(), await make.holder()
    err = await expect_failure(make.assembly(holder_id=cutter.id, cutter_id=cutter.id))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["holder_id"]
    err = await expect_failure(make.assembly(holder_id=holder.id, cutter_id=holder.id))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.fields == ["cutter_id"]
    err = await expect_failure(
        stubs.assemblies.CreateToolAssembly(
            asm_pb.CreateToolAssemblyRequest(tool_assembly=asm_pb.ToolAssembly(name="empty"))
        )
    )
    assert err.code == INVALID and err.fields == ["holder_id"]
    err = await expect_failure(make.assembly(assembly_data=struct({"coolant": "LAVA"})))
    assert err.code == INVALID and any(f.startswith("assembly_data") for f in err.fields)


async def test_deleting_referenced_rows_is_failed_precondition(stubs: Stubs, make: Factory) -> None:
    item = await make.item()
    instance = await make.instance(tool_item_id=item.id)
    err = await expect_failure(stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=item.id, version=1)))
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and err.reason == "STILL_REFERENCED"
    assert err.metadata == {"tool_instance.tool_item_id": "1"}
    tool_set = await make.tool_set(tool_instance_ids=[instance.id])
    err = await expect_failure(
        stubs.instances.DeleteToolInstance(inst_pb.DeleteToolInstanceRequest(id=instance.id, version=1))
    )
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION and "tool_set.tool_instance_ids" in err.metadata
    # Deleting the set releases its members (membership belongs to the set).
    await stubs.sets.DeleteToolSet(set_pb.DeleteToolSetRequest(id=tool_set.id, version=1))
    await stubs.instances.DeleteToolInstance(inst_pb.DeleteToolInstanceRequest(id=instance.id, version=1))
    await stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=item.id, version=1))


@pytest.mark.parametrize(
    ("paths", "bad"),
    [(["version"], "update_mask"), (["created_at"], "update_mask"), (["nonsense"], "update_mask")],
)
async def test_bad_update_masks(stubs: Stubs, make: Factory, paths: list[str], bad: str) -> None:
    item = await make.item()
    err = await expect_failure(
        stubs.items.UpdateToolItem(
            item_pb.UpdateToolItemRequest(
                tool_item=item_pb.ToolItem(id=item.id, version=1),
                update_mask=field_mask_pb2.FieldMask(paths=paths),
            )
        )
    )
    assert err.code == INVALID and err.fields == [bad]


async def test_update_and_delete_require_a_version(stubs: Stubs, make: Factory) -> None:
    item = await make.item()
    err = await expect_failure(
        stubs.items.UpdateToolItem(item_pb.UpdateToolItemRequest(tool_item=item_pb.ToolItem(id=item.id, name="v0")))
    )
    assert err.code == INVALID and err.fields == ["version"]
    err = await expect_failure(stubs.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=item.id)))
    assert err.code == INVALID and err.fields == ["version"]
    err = await expect_failure(stubs.items.GetToolItem(item_pb.GetToolItemRequest(id="zzz")))
    assert err.code == INVALID and err.fields == ["id"]
    err = await expect_failure(stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=str(uuid.uuid4()))))
    assert err.code == grpc.StatusCode.NOT_FOUND


async def test_toolset_members_come_back_in_one_order_however_they_were_sent(stubs: Stubs, make: Factory) -> None:
    """Members are sets, kept in id order: the answer to the write (built from what was written) and every read
    back list them alike, whatever order the request had."""
    made = [await make.instance() for _ in range(3)]
    ids = sorted(m.id for m in made)
    tool_set = await make.tool_set(tool_instance_ids=list(reversed(ids)))
    got = await stubs.sets.GetToolSet(set_pb.GetToolSetRequest(id=tool_set.id))
    assert list(tool_set.tool_instance_ids) == list(got.tool_instance_ids) == ids
    more = [await make.instance() for _ in range(2)]
    added = await stubs.sets.AddToolSetMembers(
        set_pb.ToolSetMembersRequest(
            id=tool_set.id, version=1, tool_instance_ids=sorted((m.id for m in more), reverse=True)
        )
    )
    got = await stubs.sets.GetToolSet(set_pb.GetToolSetRequest(id=tool_set.id))
    assert list(added.tool_instance_ids) == list(got.tool_instance_ids) == sorted(ids + [m.id for m in more])


async def test_toolset_membership(stubs: Stubs, make: Factory) -> None:
    a, b = await make.instance(), await make.instance()
    preset = await make.preset()
    tool_set = await make.tool_set(tool_instance_ids=[a.id])
    added = await stubs.sets.AddToolSetMembers(
        set_pb.ToolSetMembersRequest(
            id=tool_set.id, version=1, tool_instance_ids=[a.id, b.id], tool_preset_ids=[preset.id]
        )
    )
    assert sorted(added.tool_instance_ids) == sorted([a.id, b.id]) and list(added.tool_preset_ids) == [preset.id]
    assert added.version == 2
    removed = await stubs.sets.RemoveToolSetMembers(
        set_pb.ToolSetMembersRequest(id=tool_set.id, version=2, tool_instance_ids=[a.id])
    )
    assert list(removed.tool_instance_ids) == [b.id] and removed.version == 3
    stale = await expect_failure(
        stubs.sets.AddToolSetMembers(set_pb.ToolSetMembersRequest(id=tool_set.id, version=2, tool_instance_ids=[a.id]))
    )
    assert stale.code == grpc.StatusCode.ABORTED
    # Replace the whole membership through Update with a mask.
    replaced = await stubs.sets.UpdateToolSet(
        set_pb.UpdateToolSetRequest(
            tool_set=set_pb.ToolSet(id=tool_set.id, version=3, tool_instance_ids=[a.id]),
            update_mask=field_mask_pb2.FieldMask(paths=["tool_instance_ids"]),
        )
    )
    assert list(replaced.tool_instance_ids) == [a.id] and list(replaced.tool_preset_ids) == [preset.id]
    found = await stubs.sets.ListToolSets(set_pb.ListToolSetsRequest(filter=f'tool_instance_ids:"{a.id}"'))
    assert [s.id for s in found.tool_sets] == [tool_set.id]
