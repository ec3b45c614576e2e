"""RecordMeasurement and ListMeasurements, the presetters' custom methods of ToolInstanceService (issue 12):
requests parsed into the use case's input, kept measurements mapped to `Measurement` messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
from smooth.core.v1 import tool_instance_pb2 as inst_pb

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.domain.entities import ToolMeasurement, Versioned
from server.domain.errors import FieldViolation, InvalidArgument
from server.usecases.entities import Caller
from server.usecases.measurements import MeasurementInput, MeasurementService, failures


class MeasurementHandlers:
    """The two methods, given the use case and how the instance servicer writes a ToolInstance (cached bytes)."""

    def __init__(self, service: MeasurementService, instance_bytes: Callable[[Versioned], bytes]) -> None:
        self._service = service
        self._instance_bytes = instance_bytes

    def behaviors(self) -> dict[str, Any]:
        return {"RecordMeasurement": self.record, "ListMeasurements": self.list}

    async def record(self, request: Any, context: grpc.aio.ServicerContext) -> inst_pb.RecordMeasurementResponse:
        call = CURRENT_CALL.get()
        caller = Caller(principal=call.principal, peer=call.peer)
        recorded = await self._service.record(_input(request), caller)
        response = inst_pb.RecordMeasurementResponse(
            measurement=to_message(recorded.measurement), replayed=recorded.replayed
        )
        response.tool_instance.MergeFromString(self._instance_bytes(recorded.instance))
        return response

    async def list(self, request: Any, context: grpc.aio.ServicerContext) -> inst_pb.ListMeasurementsResponse:
        call = CURRENT_CALL.get()
        result = await self._service.list(
            mapping.require_id(request.tool_instance_id, "tool_instance_id"),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=Caller(principal=call.principal, peer=call.peer),
        )
        response = inst_pb.ListMeasurementsResponse(next_page_token=result.next_page_token)
        response.measurements.extend(to_message(m) for m in result.items)
        return response


def _input(request: Any) -> MeasurementInput:
    problems: list[FieldViolation] = []
    instance_id = None
    try:
        instance_id = mapping.parse_id(request.tool_instance_id, "tool_instance_id", required=False)
    except ValueError as exc:
        problems.append(FieldViolation("tool_instance_id", str(exc)))
    measured_at = None
    if request.HasField("measured_at"):
        try:
            measured_at = mapping.timestamp_to_datetime(request.measured_at)
        except ValueError as exc:
            problems.append(FieldViolation("measured_at", str(exc)))
    if problems:
        raise InvalidArgument.of(problems)
    values: dict[str, dict[str, float]] = {}
    units: dict[str, str] = {}
    for symbol, measured in request.values.items():
        entry = {"value": measured.value}
        for bound in ("nominal", "min", "max"):
            if measured.HasField(bound):
                entry[bound] = getattr(measured, bound)
        values[symbol] = entry
        if measured.unit:
            units[symbol] = measured.unit
    return MeasurementInput(
        tool_instance_id=instance_id,
        serial_number=request.serial_number,
        measurement_id=request.measurement_id,
        station_id=request.station_id,
        operator=request.operator,
        measured_at=measured_at,
        values=values,
        units=units,
    )


def to_message(measurement: Versioned) -> inst_pb.Measurement:
    assert isinstance(measurement, ToolMeasurement)
    msg = inst_pb.Measurement(
        id=str(measurement.id),
        tool_instance_id=str(measurement.tool_instance_id),
        measurement_id=measurement.measurement_id,
        station_id=measurement.station_id,
        operator=measurement.operator,
        owner_id=str(measurement.owner_id) if measurement.owner_id else "",
    )
    if measurement.measured_at is not None:
        msg.measured_at.FromDatetime(measurement.measured_at)
    if measurement.created_at is not None:
        msg.created_at.FromDatetime(measurement.created_at)
    for symbol, entry in measurement.measurements.items():
        if isinstance(entry, dict) and isinstance(entry.get("value"), int | float):
            value = msg.values[symbol]
            value.value = float(entry["value"])
            for bound in ("nominal", "min", "max"):
                if isinstance(entry.get(bound), int | float):
                    setattr(value, bound, float(entry[bound]))
    problems = failures(measurement.measurements)
    msg.in_tolerance = not problems
    msg.out_of_tolerance.extend(problems)
    return msg
