"""Presetter measurements replicate like every entity (issue 12): recorded on an edge, pushed to central
(real PostgreSQL) and pulled down by another edge (real SQLite), with the instance's state that followed them,
and nothing doubled — a retry after the round trip is still answered, not recorded again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Edge, start_edge
from google.protobuf import timestamp_pb2
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from test_replication import assert_replicated, central, edge, settings, snapshot, sync_key
from test_replicator import eventually, reaches

from agent.replicator.status import ReplicatorState
from agent.runtime import replicating
from server.usecases.entities import utc_now

__all__ = ["central", "edge"]  # the fixtures, shared with test_replication

pytestmark = pytest.mark.postgres


@pytest.fixture
async def other_edge(tmp_path: Path) -> AsyncIterator[Edge]:
    async for e in start_edge(str(tmp_path / "other.db")):
        yield e


def _request(instance_id: str, measurement_id: str, at: datetime, dc: float) -> inst_pb.RecordMeasurementRequest:
    measured_at = timestamp_pb2.Timestamp()
    measured_at.FromDatetime(at)
    request = inst_pb.RecordMeasurementRequest(
        tool_instance_id=instance_id, measurement_id=measurement_id, station_id="P1", measured_at=measured_at
    )
    request.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=dc, min=9.99, max=10.01))
    return request


async def test_a_measurement_goes_to_central_and_down_to_another_edge_once(
    edge: Edge, central: Edge, other_edge: Edge
) -> None:
    instance = await edge.make.instance()
    t0 = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
    good = _request(instance.id, "P1-0001", t0, 10.0)
    await edge.stubs.instances.RecordMeasurement(good)
    await edge.stubs.instances.RecordMeasurement(good)  # a retry before replication
    await edge.stubs.instances.RecordMeasurement(_request(instance.id, "P1-0002", t0 + timedelta(hours=1), 10.05))
    key = await sync_key(central)
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        await replicator.flush()
        assert (await replicator.status()).rejected == 0
    mine = await snapshot(edge)
    assert len(mine["tool_measurement"]) == 2
    assert_replicated(mine, await snapshot(central))
    on_central = await central.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance.id))
    assert on_central.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE  # the out-of-tolerance one followed
    # Another edge pulls them down; the first one's next round brings nothing back twice.
    async with replicating(other_edge.store, settings(central.address, key), utc_now):

        async def pulled() -> bool:
            return len((await snapshot(other_edge))["tool_measurement"]) == 2

        await eventually(pulled, what="the measurements on the other edge")
    theirs = await snapshot(other_edge)
    assert theirs["tool_measurement"] == mine["tool_measurement"]
    assert theirs["tool_instance"][instance.id] == mine["tool_instance"][instance.id]
    async with replicating(edge.store, settings(central.address, key), utc_now) as replicator:
        await reaches(replicator, lambda s: s.state is ReplicatorState.IDLE and s.backlog == 0, "a round")
    assert (await snapshot(edge))["tool_measurement"] == mine["tool_measurement"]
    # A retry after the round trip is answered from what was kept.
    again = await edge.stubs.instances.RecordMeasurement(good)
    assert again.replayed
    listed = await central.stubs.instances.ListMeasurements(
        inst_pb.ListMeasurementsRequest(tool_instance_id=instance.id)
    )
    assert [m.measurement_id for m in listed.measurements] == ["P1-0002", "P1-0001"]
