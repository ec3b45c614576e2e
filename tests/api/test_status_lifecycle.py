"""The status lifecycle of tool instances (issue 12, item 2; server/domain/lifecycle.py): every operator
transition allowed and refused through the real gRPC API, a reason required for each, usages moving their
instance IN_USE and back (from the API and from the collector's writer), a usage on a locked tool recorded and
flagged, and every transition a new version with its reason, audited. Real SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from conftest import Edge, expect_failure
from google.protobuf import field_mask_pb2, timestamp_pb2
from smooth.core.v1 import audit_log_pb2, audit_log_pb2_grpc, common_pb2
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_usage_pb2 as usage_pb

from agent.collector.tracker import Tracker
from server.domain.collector import MachineStatus
from server.domain.entities import ToolInstance, ToolInstanceStatus, ToolType
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import build
from server.usecases.entities import Caller
from server.usecases.lifecycle import FLAG

S = inst_pb.ToolInstanceStatus
AVAILABLE, IN_USE = S.TOOL_INSTANCE_STATUS_AVAILABLE, S.TOOL_INSTANCE_STATUS_IN_USE
MAINTENANCE, RETIRED = S.TOOL_INSTANCE_STATUS_MAINTENANCE, S.TOOL_INSTANCE_STATUS_RETIRED
ALL = (AVAILABLE, IN_USE, MAINTENANCE, RETIRED)
# What an operator may do (README, "Tool status lifecycle"); IN_USE comes and goes with usages only.
OPERATOR_MAY = {
    (AVAILABLE, MAINTENANCE),
    (IN_USE, MAINTENANCE),
    (MAINTENANCE, AVAILABLE),
    (AVAILABLE, RETIRED),
    (IN_USE, RETIRED),
    (MAINTENANCE, RETIRED),
}


def _set_status(instance: inst_pb.ToolInstance, status: int, reason: str | None) -> inst_pb.UpdateToolInstanceRequest:
    paths = ["status"] if reason is None else ["status", "status_reason"]
    return inst_pb.UpdateToolInstanceRequest(
        tool_instance=inst_pb.ToolInstance(
            id=instance.id, version=instance.version, status=status, status_reason=reason or ""
        ),
        update_mask=field_mask_pb2.FieldMask(paths=paths),
    )


async def _instance_in(edge: Edge, status: int) -> inst_pb.ToolInstance:
    """A new instance brought to `status` the way the product does it (IN_USE by an open usage)."""
    if status == IN_USE:
        instance = await edge.make.instance()
        await edge.make.usage(tool_instance_id=instance.id)
        return await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance.id))
    if status == RETIRED:
        instance = await edge.make.instance()
        return await edge.stubs.instances.UpdateToolInstance(_set_status(instance, RETIRED, "worn out"))
    return await edge.make.instance(status=status)


@pytest.mark.parametrize(
    ("current", "target"),
    [(a, b) for a, b in itertools.product(ALL, ALL) if a != b],
    ids=lambda s: S.Name(s).removeprefix("TOOL_INSTANCE_STATUS_"),
)
async def test_every_operator_transition_is_allowed_or_refused_by_the_table(
    edge: Edge, current: int, target: int
) -> None:
    instance = await _instance_in(edge, current)
    assert instance.status == current
    if (current, target) in OPERATOR_MAY:
        # Without a reason it is refused, with one it is a new version carrying the reason.
        missing = await expect_failure(edge.stubs.instances.UpdateToolInstance(_set_status(instance, target, None)))
        assert (missing.code, missing.reason, missing.fields) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "STATUS_REASON_REQUIRED",
            ["status_reason"],
        )
        done = await edge.stubs.instances.UpdateToolInstance(_set_status(instance, target, "regrind at Acme"))
        assert (done.status, done.status_reason, done.version) == (target, "regrind at Acme", instance.version + 1)
    else:
        refused = await expect_failure(
            edge.stubs.instances.UpdateToolInstance(_set_status(instance, target, "because I say so"))
        )
        assert (refused.code, refused.reason, refused.fields) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            "STATUS_TRANSITION_REFUSED",
            ["status"],
        )
        assert refused.metadata["current_status"] == S.Name(current).removeprefix("TOOL_INSTANCE_STATUS_")
        unchanged = await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance.id))
        assert (unchanged.status, unchanged.version) == (current, instance.version)


@pytest.mark.parametrize("status", [IN_USE, RETIRED], ids=["IN_USE", "RETIRED"])
async def test_a_new_instance_starts_available_or_in_maintenance(edge: Edge, status: int) -> None:
    refused = await expect_failure(edge.make.instance(status=status))
    assert (refused.code, refused.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "STATUS_TRANSITION_REFUSED")
    waiting = await edge.make.instance(status=MAINTENANCE, status_reason="waiting for its first measurement")
    assert (waiting.status, waiting.status_reason) == (MAINTENANCE, "waiting for its first measurement")


def _ts(at: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(at)
    return out


async def _close(edge: Edge, usage: usage_pb.ToolUsage, at: datetime) -> usage_pb.ToolUsage:
    return await edge.stubs.usages.UpdateToolUsage(
        usage_pb.UpdateToolUsageRequest(
            tool_usage=usage_pb.ToolUsage(id=usage.id, version=usage.version, end_time=_ts(at)),
            update_mask=field_mask_pb2.FieldMask(paths=["end_time"]),
        )
    )


async def _get(edge: Edge, instance_id: str) -> inst_pb.ToolInstance:
    return await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance_id))


async def test_usages_move_the_instance_in_use_and_back_when_the_last_one_closes(edge: Edge) -> None:
    instance = await edge.make.instance()
    start = datetime.now(UTC) - timedelta(minutes=10)
    first = await edge.make.usage(tool_instance_id=instance.id, start_time=_ts(start), machine_id="MILL-01")
    now_in_use = await _get(edge, instance.id)
    assert now_in_use.status == IN_USE and now_in_use.version == instance.version + 1
    assert now_in_use.status_reason == f"usage {first.id} opened on MILL-01"
    second = await edge.make.usage(tool_instance_id=instance.id, start_time=_ts(start), machine_id="MILL-02")
    await _close(edge, first, start + timedelta(minutes=1))
    assert (await _get(edge, instance.id)).status == IN_USE, "another usage is still open"
    await _close(edge, second, start + timedelta(minutes=2))
    back = await _get(edge, instance.id)
    assert back.status == AVAILABLE and back.version == instance.version + 2
    assert back.status_reason == f"usage {second.id} closed on MILL-02; no usage of it is open"
    # Each transition is a kept version with its reason, and audited.
    revisions = await edge.stubs.instances.ListRevisions(common_pb2.ListRevisionsRequest(id=instance.id))
    assert [(r.tool_instance.status, r.tool_instance.status_reason) for r in revisions.revisions][1:] == [
        (IN_USE, now_in_use.status_reason),
        (AVAILABLE, back.status_reason),
    ]
    audit = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    entries = await audit.ListAuditLogs(
        audit_log_pb2.ListAuditLogsRequest(entity_type="tool_instance", entity_id=instance.id)
    )
    assert [e.action for e in entries.entries] == [
        "tool_instance.create",
        "tool_instance.update",
        "tool_instance.update",
    ]


async def test_a_usage_on_a_locked_tool_is_recorded_and_flagged_and_the_status_stays(edge: Edge) -> None:
    for status in (MAINTENANCE, RETIRED):
        instance = await _instance_in(edge, status)
        usage = await edge.make.usage(tool_instance_id=instance.id)
        flag = S.Name(status).removeprefix("TOOL_INSTANCE_STATUS_")
        assert usage.usage_metrics[FLAG] == flag
        after = await _get(edge, instance.id)
        assert (after.status, after.version) == (status, instance.version)
        closed = await _close(edge, usage, datetime.now(UTC))
        assert closed.usage_metrics[FLAG] == flag
        assert (await _get(edge, instance.id)).status == status


async def test_the_collector_s_usages_move_the_instance_in_use_and_back(tmp_path: Path) -> None:
    """The collector's writer (UsageRecorder, batches through write_many_in) on a real SQLite file."""
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        uc = build(store)
        system = Caller(peer="test")
        item = await uc.entities["tool_item"].create(
            {"name": "mill", "tool_type": ToolType.END_MILL, "geometry": {"DC": 10, "NOF": 4, "OAL": 70}},
            entity_id=None,
            caller=system,
        )
        instances = {}
        for number in (1, 2):
            instances[number] = await uc.entities["tool_instance"].create(
                {"tool_item_id": item.id, "serial_number": f"T{number}", "status": ToolInstanceStatus.AVAILABLE},
                entity_id=None,
                caller=system,
            )
            await uc.entities["tool_preset"].create(
                {
                    "name": f"T{number}",
                    "tool_instance_id": instances[number].id,
                    "machine_id": "MILL-01",
                    "parameters": {"tool_number": number},
                },
                entity_id=None,
                caller=system,
            )

        async def status(number: int) -> ToolInstanceStatus:
            found = await uc.entities["tool_instance"].get(instances[number].id)
            assert isinstance(found, ToolInstance)
            return found.status

        tracker = Tracker("MILL-01")
        await uc.recorder.apply("MILL-01", tracker.reconnected(1, True, 5000.0, t0), tracker.state.to_json())
        assert (await status(1), await status(2)) == (ToolInstanceStatus.IN_USE, ToolInstanceStatus.AVAILABLE)
        await uc.recorder.apply("MILL-01", tracker.tool(2, t0 + timedelta(seconds=30)), tracker.state.to_json())
        assert (await status(1), await status(2)) == (ToolInstanceStatus.AVAILABLE, ToolInstanceStatus.IN_USE)
        assert (await uc.audit.verify()).ok


async def test_a_tool_in_maintenance_found_in_a_spindle_is_recorded_and_flagged_in_the_machine_status(
    tmp_path: Path,
) -> None:
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
    async with Store(str(tmp_path / "edge.db")) as store:
        await migrate.upgrade(store.engine)
        uc = build(store)
        system = Caller(peer="test")
        item = await uc.entities["tool_item"].create(
            {"name": "mill", "tool_type": ToolType.END_MILL, "geometry": {"DC": 10, "NOF": 4, "OAL": 70}},
            entity_id=None,
            caller=system,
        )
        locked = await uc.entities["tool_instance"].create(
            {
                "tool_item_id": item.id,
                "serial_number": "T7",
                "status": ToolInstanceStatus.MAINTENANCE,
                "status_reason": "chipped edge",
            },
            entity_id=None,
            caller=system,
        )
        await uc.entities["tool_preset"].create(
            {"name": "T7", "tool_instance_id": locked.id, "machine_id": "MILL-01", "parameters": {"tool_number": 7}},
            entity_id=None,
            caller=system,
        )
        tracker = Tracker("MILL-01")
        written = await uc.recorder.apply("MILL-01", tracker.reconnected(7, True, 5000.0, t0), tracker.state.to_json())
        (usage,) = written
        assert usage.usage_metrics[FLAG] == "MAINTENANCE" and usage.end_time is None
        found = await uc.entities["tool_instance"].get(locked.id)
        assert isinstance(found, ToolInstance) and found.status == ToolInstanceStatus.MAINTENANCE
        (status,) = await uc.recorder.statuses({"MILL-01": MachineStatus("MILL-01", open_usage_id=usage.id)})
        assert status.open_tool_status == "MAINTENANCE"
