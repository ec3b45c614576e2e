"""Tool life (issue 12, item 3) through the real gRPC API on SQLite and PostgreSQL, and from the collector's
writer: limits on the item overridden per counter by the assembly and the instance, counting up and down as
usages close, the prewarning noted once, the limit putting the instance in MAINTENANCE with the reason, a usage
counted once however often it is updated, and the reset as its own audited call with its own scope."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import Edge, expect_failure, struct
from google.protobuf import field_mask_pb2, timestamp_pb2
from smooth.core.v1 import audit_log_pb2, audit_log_pb2_grpc
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_instance_pb2_grpc as inst_grpc
from smooth.core.v1 import tool_usage_pb2 as usage_pb

from agent.collector.tracker import Tracker
from agent.grpc_client import authorized_channel
from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolType, UserRole
from server.domain.identity import Scope
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import build
from server.usecases.entities import Caller

T0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)


def ts(at: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(at)
    return out


async def _closed_usage(edge: Edge, instance_id: str, minutes: int, **metrics: Any) -> usage_pb.ToolUsage:
    start = T0 + timedelta(minutes=minutes)
    return await edge.make.usage(
        tool_instance_id=instance_id,
        start_time=ts(start),
        end_time=ts(start + timedelta(minutes=1)),
        usage_metrics=struct(metrics),
    )


async def _get(edge: Edge, instance_id: str) -> inst_pb.ToolInstance:
    return await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance_id))


async def test_usages_count_up_warn_once_and_reaching_the_limit_takes_the_tool_out(edge: Edge) -> None:
    item = await edge.make.item(
        tool_life=struct({"spindle_runtime_s": {"limit": 300, "prewarning": 200}, "usages": {"limit": 100}})
    )
    instance = await edge.make.instance(tool_item_id=item.id)
    await _closed_usage(edge, instance.id, 0, spindle_runtime_s=150, time_in_spindle_s=160)
    got = await _get(edge, instance.id)
    state = got.tool_life_state
    assert state["used"]["spindle_runtime_s"] == 150 and state["used"]["usages"] == 1
    assert state["remaining"]["spindle_runtime_s"] == 150 and "prewarned_at" not in state
    assert got.status == inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE
    second = await _closed_usage(edge, instance.id, 10, spindle_runtime_s=60, time_in_spindle_s=60)
    state = (await _get(edge, instance.id)).tool_life_state
    assert state["prewarned_at"]["spindle_runtime_s"] == "2026-12-01T06:11:00Z"  # when the usage closed
    # Updating a closed usage again (notes) does not count it twice, nor warn again.
    await edge.stubs.usages.UpdateToolUsage(
        usage_pb.UpdateToolUsageRequest(
            tool_usage=usage_pb.ToolUsage(id=second.id, version=second.version, notes="chip on flute 2"),
            update_mask=field_mask_pb2.FieldMask(paths=["notes"]),
        )
    )
    assert (await _get(edge, instance.id)).tool_life_state["used"]["spindle_runtime_s"] == 210
    third = await _closed_usage(edge, instance.id, 20, spindle_runtime_s=95, time_in_spindle_s=100)
    out = await _get(edge, instance.id)
    assert out.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE
    assert out.status_reason == f"tool life reached: spindle_runtime_s 305 of 300 (usage {third.id} closed on MILL-01)"
    assert out.tool_life_state["remaining"]["spindle_runtime_s"] == -5
    assert out.tool_life_state["reached_at"]["spindle_runtime_s"] == "2026-12-01T06:21:00Z"


async def test_the_assembly_and_the_instance_override_the_item_per_counter(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 1000}, "usages": {"limit": 50}}))
    holder = await edge.make.holder()
    assembly = await edge.make.assembly(
        holder_id=holder.id, cutter_id=item.id, tool_life=struct({"parts": {"limit": 10, "prewarning": 2}})
    )
    instance = await edge.make.instance(
        tool_assembly_id=assembly.id, tool_life=struct({"usages": None, "cycles": {"limit": 3, "direction": "DOWN"}})
    )
    await _closed_usage(edge, instance.id, 0, parts=4, cycles=1)
    state = (await _get(edge, instance.id)).tool_life_state
    # parts from the assembly (10, not 1000), usages removed by the instance, cycles the instance's own.
    assert dict(state["remaining"]) == {"parts": 6, "cycles": 2}
    assert "parts" in state["prewarned_at"] and "cycles" not in state["prewarned_at"]


async def test_counting_down_warns_when_what_remains_falls_to_the_prewarning(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 10, "prewarning": 3, "direction": "DOWN"}}))
    instance = await edge.make.instance(tool_item_id=item.id)
    await _closed_usage(edge, instance.id, 0, parts=6)
    assert "prewarned_at" not in (await _get(edge, instance.id)).tool_life_state
    await _closed_usage(edge, instance.id, 5, parts=1)
    state = (await _get(edge, instance.id)).tool_life_state
    assert state["remaining"]["parts"] == 3 and "parts" in state["prewarned_at"]


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"parts": {"limit": 0}}, "tool_life.parts"),
        ({"parts": {"limit": 10, "prewarning": 11}}, "tool_life.parts.prewarning"),
        ({"minutes": {"limit": 10}}, "tool_life"),
        ({"parts": {"limit": 10, "direction": "SIDEWAYS"}}, "tool_life.parts"),
    ],
    ids=["zero-limit", "prewarning-over-limit", "unknown-counter", "bad-direction"],
)
async def test_bad_limits_are_refused_naming_the_field(edge: Edge, policy: dict[str, Any], field: str) -> None:
    refused = await expect_failure(edge.make.item(tool_life=struct(policy)))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert any(f == field or f.startswith(field + ".") for f in refused.fields), refused.fields


async def test_the_state_is_the_server_s_and_a_reset_is_its_own_audited_call(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 5}, "usages": {"limit": 10}}))
    instance = await edge.make.instance(tool_item_id=item.id)
    await _closed_usage(edge, instance.id, 0, parts=5)
    worn = await _get(edge, instance.id)
    assert worn.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE
    forged = inst_pb.UpdateToolInstanceRequest(
        tool_instance=inst_pb.ToolInstance(id=instance.id, version=worn.version, tool_life_state=struct({})),
        update_mask=field_mask_pb2.FieldMask(paths=["tool_life_state"]),
    )
    assert (await expect_failure(edge.stubs.instances.UpdateToolInstance(forged))).reason == "OUTPUT_ONLY"
    no_reason = inst_pb.ResetToolLifeRequest(id=instance.id, version=worn.version, counters=["parts"])
    assert (await expect_failure(edge.stubs.instances.ResetToolLife(no_reason))).fields == ["reason"]
    stale = inst_pb.ResetToolLifeRequest(id=instance.id, version=1, reason="reground", counters=["parts"])
    assert (await expect_failure(edge.stubs.instances.ResetToolLife(stale))).code == grpc.StatusCode.ABORTED
    # Only the toollife:reset scope (or admin) may reset, not write.
    _, writer = await edge.user_with_key(UserRole.OPERATOR, scopes=[Scope.WRITE.value])
    request = inst_pb.ResetToolLifeRequest(
        id=instance.id, version=worn.version, reason="reground to DC 9.96", counters=["parts"]
    )
    async with authorized_channel(edge.address, writer) as channel:
        denied = await expect_failure(inst_grpc.ToolInstanceServiceStub(channel).ResetToolLife(request))
        assert denied.code == grpc.StatusCode.PERMISSION_DENIED
    _, grinder = await edge.user_with_key(UserRole.OPERATOR, scopes=[Scope.TOOL_LIFE_RESET.value])
    async with authorized_channel(edge.address, grinder) as channel:
        reset = await inst_grpc.ToolInstanceServiceStub(channel).ResetToolLife(request)
    state = reset.tool_life_state
    assert dict(state["used"]) == {"usages": 1} and state["remaining"]["parts"] == 5
    assert state["reset_reason"] == "reground to DC 9.96" and "reached_at" not in state
    # The reset does not release the tool: that is an explicit status change.
    assert reset.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE and reset.version == worn.version + 1
    audit = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    entries = await audit.ListAuditLogs(
        audit_log_pb2.ListAuditLogsRequest(entity_id=instance.id, action="tool_instance.reset_tool_life")
    )
    assert len(entries.entries) == 1


async def test_the_collector_s_usages_count_towards_tool_life(tmp_path: Path) -> None:
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        uc = build(store)
        system = Caller(peer="test")
        item = await uc.entities["tool_item"].create(
            {
                "name": "mill",
                "tool_type": ToolType.END_MILL,
                "geometry": {"DC": 10, "NOF": 4, "OAL": 70},
                "tool_life": {"time_in_spindle_s": {"limit": 50, "prewarning": 20}},
            },
            entity_id=None,
            caller=system,
        )
        instance = await uc.entities["tool_instance"].create(
            {"tool_item_id": item.id, "serial_number": "T1", "status": ToolInstanceStatus.AVAILABLE},
            entity_id=None,
            caller=system,
        )
        for number in (1, 2):
            await uc.entities["tool_preset"].create(
                {
                    "name": f"T{number}",
                    "tool_instance_id": instance.id if number == 1 else None,
                    "machine_id": "MILL-01",
                    "parameters": {"tool_number": number},
                }
                if number == 1
                else {
                    "name": "T2",
                    "tool_instance_id": (
                        await uc.entities["tool_instance"].create(
                            {"tool_item_id": item.id, "serial_number": "T2", "status": ToolInstanceStatus.AVAILABLE},
                            entity_id=None,
                            caller=system,
                        )
                    ).id,
                    "machine_id": "MILL-01",
                    "parameters": {"tool_number": 2},
                },
                entity_id=None,
                caller=system,
            )
        tracker = Tracker("MILL-01")
        await uc.recorder.apply("MILL-01", tracker.reconnected(1, True, 5000.0, T0), tracker.state.to_json())
        for i, number in enumerate((2, 1, 2), start=1):  # T1 in the spindle 30 s, then again 30 s
            at = T0 + timedelta(seconds=30 * i)
            await uc.recorder.apply("MILL-01", tracker.tool(number, at), tracker.state.to_json())
        found = await uc.entities["tool_instance"].get(instance.id)
        assert isinstance(found, ToolInstance)
        assert found.tool_life_state["used"]["time_in_spindle_s"] == pytest.approx(60)
        assert "time_in_spindle_s" in found.tool_life_state["prewarned_at"]
        assert found.status == ToolInstanceStatus.MAINTENANCE
        assert found.status_reason.startswith("tool life reached: time_in_spindle_s 60 of 50")
