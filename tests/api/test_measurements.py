"""Presetter measurements (issue 12, item 1) through the real gRPC API on SQLite and PostgreSQL: recorded by id
or serial number, kept and listed newest first, retries answered and not doubled, bad values refused naming the
field, out of tolerance -> MAINTENANCE with the reason, calibration due computed, wear before/after filled on
the right usages, and the measurements:write scope."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from conftest import Edge, expect_failure
from google.protobuf import timestamp_pb2
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_instance_pb2_grpc as inst_grpc
from smooth.core.v1 import tool_usage_pb2 as usage_pb

from agent.grpc_client import authorized_channel
from server.domain.entities import UserRole
from server.domain.identity import Scope

T0 = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


def ts(at: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(at)
    return out


def measurement(
    instance: inst_pb.ToolInstance | None = None,
    *,
    serial: str = "",
    at: datetime = T0,
    dc: float = 10.004,
    measurement_id: str | None = None,
    **values: inst_pb.MeasuredValue,
) -> inst_pb.RecordMeasurementRequest:
    request = inst_pb.RecordMeasurementRequest(
        tool_instance_id=instance.id if instance is not None else "",
        serial_number=serial,
        measurement_id=measurement_id or f"ST1-{uuid.uuid4().hex[:10]}",
        station_id="ZOLLER-1",
        operator="anna",
        measured_at=ts(at),
    )
    request.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=dc, nominal=10.0, min=9.99, max=10.01))
    request.values["LF"].CopyFrom(inst_pb.MeasuredValue(value=72.31))
    for symbol, value in values.items():
        request.values[symbol].CopyFrom(value)
    return request


async def test_a_measurement_updates_the_instance_and_is_kept(edge: Edge) -> None:
    item = await edge.make.item(calibration_interval_days=90)
    instance = await edge.make.instance(tool_item_id=item.id)
    done = await edge.stubs.instances.RecordMeasurement(measurement(instance))
    assert not done.replayed and done.measurement.in_tolerance and not done.measurement.out_of_tolerance
    got = done.tool_instance
    assert got.version == instance.version + 1 and got.status == inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE
    assert got.measurements["DC"]["value"] == pytest.approx(10.004)
    assert got.measurements["measurement_id"] == done.measurement.measurement_id
    assert got.last_calibration.ToDatetime(tzinfo=UTC) == T0
    due = T0.date() + timedelta(days=90)
    assert (got.calibration_due.year, got.calibration_due.month, got.calibration_due.day) == (
        due.year,
        due.month,
        due.day,
    )
    # By serial number, without an interval on the item: the default, a year.
    other = await edge.make.instance()
    by_serial = await edge.stubs.instances.RecordMeasurement(measurement(serial=other.serial_number))
    assert by_serial.tool_instance.id == other.id
    default_due = T0.date() + timedelta(days=365)
    assert (
        date(
            by_serial.tool_instance.calibration_due.year,
            by_serial.tool_instance.calibration_due.month,
            by_serial.tool_instance.calibration_due.day,
        )
        == default_due
    )


async def test_a_retry_is_answered_and_other_content_under_its_id_refused(edge: Edge) -> None:
    instance = await edge.make.instance()
    request = measurement(instance, measurement_id="ST1-0042")
    first = await edge.stubs.instances.RecordMeasurement(request)
    again = await edge.stubs.instances.RecordMeasurement(request)
    assert again.replayed and again.measurement.id == first.measurement.id
    assert again.tool_instance.version == first.tool_instance.version, "a retry changes nothing"
    listed = await edge.stubs.instances.ListMeasurements(inst_pb.ListMeasurementsRequest(tool_instance_id=instance.id))
    assert [m.id for m in listed.measurements] == [first.measurement.id]
    changed = measurement(instance, measurement_id="ST1-0042", dc=10.005)
    refused = await expect_failure(edge.stubs.instances.RecordMeasurement(changed))
    assert (refused.code, refused.reason) == (grpc.StatusCode.ALREADY_EXISTS, "MEASUREMENT_ID_TAKEN")
    assert refused.metadata["existing_id"] == first.measurement.id


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.values["XYZ"].CopyFrom(inst_pb.MeasuredValue(value=1.0)), "values"),
        (lambda r: r.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=float("nan"))), "values.DC.value"),
        (lambda r: r.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=10, min=10.1, max=9.9)), "values.DC.max"),
        (lambda r: r.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=-3)), "values.DC.value"),
        (lambda r: r.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=10, unit="furlong")), "values.DC.unit"),
        (lambda r: r.values["SIG"].CopyFrom(inst_pb.MeasuredValue(value=118, unit="mm")), "values.SIG.unit"),
        (lambda r: r.ClearField("measured_at"), "measured_at"),
        (lambda r: setattr(r, "measurement_id", ""), "measurement_id"),
        (lambda r: r.ClearField("values"), "values"),
    ],
    ids=[
        "unknown-symbol",
        "nan",
        "min-over-max",
        "negative-length",
        "unknown-unit",
        "length-unit-on-an-angle",
        "no-time",
        "no-id",
        "no-values",
    ],
)
async def test_bad_values_are_refused_naming_the_field_and_change_nothing(
    edge: Edge, change: object, field: str
) -> None:
    instance = await edge.make.instance()
    request = measurement(instance)
    change(request)  # type: ignore[operator]
    refused = await expect_failure(edge.stubs.instances.RecordMeasurement(request))
    assert refused.code == grpc.StatusCode.INVALID_ARGUMENT
    assert any(f == field or f.startswith(field + ".") for f in refused.fields), refused.fields
    unchanged = await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=instance.id))
    assert unchanged.version == instance.version
    listed = await edge.stubs.instances.ListMeasurements(inst_pb.ListMeasurementsRequest(tool_instance_id=instance.id))
    assert not listed.measurements


async def test_unknown_instance_is_not_found(edge: Edge) -> None:
    missing = await expect_failure(edge.stubs.instances.RecordMeasurement(measurement(serial="NO-SUCH-SERIAL")))
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_out_of_tolerance_puts_the_instance_in_maintenance_with_the_reason(edge: Edge) -> None:
    instance = await edge.make.instance()
    done = await edge.stubs.instances.RecordMeasurement(measurement(instance, dc=10.05, measurement_id="ST1-bad"))
    assert not done.measurement.in_tolerance
    assert list(done.measurement.out_of_tolerance) == ["DC measured 10.05, allowed 9.99..10.01"]
    got = done.tool_instance
    assert got.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE
    assert got.status_reason == "measurement ST1-bad out of tolerance: DC measured 10.05, allowed 9.99..10.01"
    # A good measurement afterwards does not release it: that is an operator's explicit call.
    later = await edge.stubs.instances.RecordMeasurement(measurement(instance, at=T0 + timedelta(hours=1)))
    assert later.tool_instance.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE


async def test_measurements_are_listed_newest_first_page_by_page_and_a_late_one_is_only_kept(edge: Edge) -> None:
    instance = await edge.make.instance()
    times = [T0 + timedelta(hours=h) for h in (0, 2, 1, 3, 4)]  # the third arrives late (older than the second)
    for i, at in enumerate(times):
        done = await edge.stubs.instances.RecordMeasurement(measurement(instance, at=at, dc=10.0 + i / 1000))
    newest = done.tool_instance
    assert newest.last_calibration.ToDatetime(tzinfo=UTC) == times[-1]
    seen: list[datetime] = []
    token = ""
    while True:
        page = await edge.stubs.instances.ListMeasurements(
            inst_pb.ListMeasurementsRequest(tool_instance_id=instance.id, page_size=2, page_token=token)
        )
        seen += [m.measured_at.ToDatetime(tzinfo=UTC) for m in page.measurements]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(times, reverse=True)
    bad = await expect_failure(
        edge.stubs.instances.ListMeasurements(
            inst_pb.ListMeasurementsRequest(tool_instance_id=instance.id, page_token="garbage")
        )
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["page_token"]


async def test_wear_before_and_after_are_filled_on_the_right_usages(edge: Edge) -> None:
    instance = await edge.make.instance()
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=2)
    usage = await edge.make.usage(tool_instance_id=instance.id, start_time=ts(start), end_time=ts(end))
    # Before the usage: the last one before it opened wins; after it: the first one after it closed wins.
    for at, dc, mid in [
        (T0, 10.000, "m-early"),
        (start - timedelta(minutes=5), 10.001, "m-before"),
        (end + timedelta(minutes=30), 10.003, "m-later"),
        (end + timedelta(minutes=5), 10.002, "m-after"),
    ]:
        await edge.stubs.instances.RecordMeasurement(measurement(instance, at=at, dc=dc, measurement_id=mid))
    got = await edge.stubs.usages.GetToolUsage(usage_pb.GetToolUsageRequest(id=usage.id))
    wear = got.wear_measurements
    assert wear["before"]["DC"] == pytest.approx(10.001) and wear["x-before_measurement_id"] == "m-before"
    assert wear["after"]["DC"] == pytest.approx(10.002) and wear["x-after_measurement_id"] == "m-after"


async def test_recording_needs_the_measurements_write_scope(edge: Edge) -> None:
    instance = await edge.make.instance()
    _, viewer = await edge.user_with_key(UserRole.VIEWER, scopes=[Scope.READ.value])
    _, station = await edge.user_with_key(UserRole.OPERATOR, scopes=[Scope.MEASUREMENTS_WRITE.value])
    async with authorized_channel(edge.address, viewer) as channel:
        refused = await expect_failure(
            inst_grpc.ToolInstanceServiceStub(channel).RecordMeasurement(measurement(instance))
        )
        assert refused.code == grpc.StatusCode.PERMISSION_DENIED
    async with authorized_channel(edge.address, station) as channel:
        done = await inst_grpc.ToolInstanceServiceStub(channel).RecordMeasurement(measurement(instance))
        assert done.tool_instance.id == instance.id


async def test_a_usage_opened_after_a_measurement_takes_it_as_its_wear_before(edge: Edge) -> None:
    instance = await edge.make.instance()
    await edge.stubs.instances.RecordMeasurement(measurement(instance, at=T0, dc=10.002, measurement_id="m-pre"))
    usage = await edge.make.usage(tool_instance_id=instance.id, start_time=ts(T0 + timedelta(minutes=10)))
    assert usage.wear_measurements["before"]["DC"] == pytest.approx(10.002)
    assert usage.wear_measurements["x-before_measurement_id"] == "m-pre"
    # A usage that opened before the newest measurement was taken does not take it as its before.
    earlier = await edge.make.usage(tool_instance_id=instance.id, start_time=ts(T0 - timedelta(hours=1)))
    assert "before" not in earlier.wear_measurements


@pytest.mark.parametrize("days", [-1, 36501])
async def test_a_calibration_interval_out_of_range_is_refused(edge: Edge, days: int) -> None:
    refused = await expect_failure(edge.make.item(calibration_interval_days=days))
    assert (refused.code, refused.fields) == (grpc.StatusCode.INVALID_ARGUMENT, ["calibration_interval_days"])


async def test_inches_are_converted_at_the_boundary_and_never_stored(edge: Edge) -> None:
    instance = await edge.make.instance()
    request = measurement(instance)
    request.values["DC"].CopyFrom(inst_pb.MeasuredValue(value=0.3937, min=0.3933, max=0.3941, unit="in"))
    done = await edge.stubs.instances.RecordMeasurement(request)
    kept = done.measurement.values["DC"]
    assert (kept.value, kept.min, kept.max) == pytest.approx((9.99998, 9.98982, 10.01014))
    assert kept.unit == "" and done.measurement.in_tolerance
    assert done.tool_instance.measurements["DC"]["value"] == pytest.approx(9.99998)
