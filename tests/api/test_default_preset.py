"""`ToolPreset.is_default`: at most one default preset per tool instance (issue 12, item 4), refused by the
rulebook with its reason through the API, and by a partial unique index in the database for any writer that
bypasses the API. Real gRPC, real SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import grpc
import pytest
import sqlalchemy as sa
from conftest import Edge, expect_failure
from google.protobuf import field_mask_pb2
from smooth.core.v1 import tool_preset_pb2 as preset_pb

from server.store.tables import tool_presets


async def test_a_second_default_for_one_instance_is_refused_with_the_holder_named(edge: Edge) -> None:
    instance = await edge.make.instance()
    first = await edge.make.preset(tool_instance_id=instance.id, is_default=True)
    refused = await expect_failure(edge.make.preset(tool_instance_id=instance.id, is_default=True))
    assert refused.code == grpc.StatusCode.ALREADY_EXISTS
    assert refused.reason == "DEFAULT_PRESET_TAKEN"
    assert refused.metadata["existing_id"] == first.id
    assert refused.fields == ["is_default"]
    # Not a default, the same instance takes any number of presets (one per machine, say).
    other = await edge.make.preset(tool_instance_id=instance.id, machine_id="MILL-02")
    # Turning another preset into the default is refused too, until the first one lets go.
    promote = preset_pb.UpdateToolPresetRequest(
        tool_preset=preset_pb.ToolPreset(id=other.id, version=other.version, is_default=True),
        update_mask=field_mask_pb2.FieldMask(paths=["is_default"]),
    )
    assert (await expect_failure(edge.stubs.presets.UpdateToolPreset(promote))).reason == "DEFAULT_PRESET_TAKEN"
    await edge.stubs.presets.UpdateToolPreset(
        preset_pb.UpdateToolPresetRequest(
            tool_preset=preset_pb.ToolPreset(id=first.id, version=first.version, is_default=False),
            update_mask=field_mask_pb2.FieldMask(paths=["is_default"]),
        )
    )
    promoted = await edge.stubs.presets.UpdateToolPreset(promote)
    assert promoted.is_default and promoted.version == other.version + 1


async def test_defaults_of_different_instances_do_not_collide(edge: Edge) -> None:
    a = await edge.make.preset(is_default=True)
    b = await edge.make.preset(is_default=True)
    assert a.is_default and b.is_default and a.tool_instance_id != b.tool_instance_id


async def test_the_database_refuses_a_second_default_from_any_writer(edge: Edge) -> None:
    """The partial unique index holds even for a write that skips the API's rules."""
    first = await edge.make.preset(is_default=True)
    now = datetime.now(UTC)
    row = {
        "id": uuid.uuid4(),
        "name": "raw",
        "description": "",
        "tool_instance_id": uuid.UUID(first.tool_instance_id),
        "machine_id": "MILL-09",
        "parameters": {},
        "is_default": True,
        "tags": [],
        "owner_id": None,
        "created_at": now,
        "updated_at": now,
        "version": 1,
    }
    async with edge.store.engine.connect() as conn:
        with pytest.raises(sa.exc.IntegrityError):
            await conn.execute(tool_presets.insert().values(row))
        await conn.rollback()
        await conn.execute(tool_presets.insert().values({**row, "is_default": False}))  # not a default: fine
        await conn.rollback()
