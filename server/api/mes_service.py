"""ToolQueryService and ChangeStreamService (issue 13): requests parsed into the use cases' inputs, results
mapped to messages. The stream writes each message with a deadline: a client that stops reading is told
SLOW_CONSUMER and resumes from its cursor, instead of holding the server's memory."""

from __future__ import annotations

import asyncio
import math
from collections import OrderedDict
from datetime import date, datetime
from typing import Any

import grpc
from smooth.core.v1 import common_pb2, mes_pb2, mes_pb2_grpc
from smooth.core.v1 import tool_instance_pb2 as inst_pb

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.api.services import length_delimited, serialize_response
from server.domain.entities import ToolInstance, ToolInstanceStatus
from server.domain.errors import FieldViolation, InvalidArgument, ResourceExhausted
from server.domain.events import ToolEvent
from server.domain.mes import InstanceScope, UsageFilter, UsageGrouping, UsageTotals
from server.usecases import change_stream as cs
from server.usecases.entities import Caller
from server.usecases.mes import MesService, ToolLife

_LEVELS = {
    mes_pb2.TOOL_LIFE_LEVEL_UNSPECIFIED: 2,
    mes_pb2.TOOL_LIFE_LEVEL_UNLIMITED: 1,
    mes_pb2.TOOL_LIFE_LEVEL_OK: 2,
    mes_pb2.TOOL_LIFE_LEVEL_PREWARNING: 3,
    mes_pb2.TOOL_LIFE_LEVEL_EXPIRED: 4,
}
_GROUPS = {
    mes_pb2.USAGE_GROUPING_MACHINE: UsageGrouping.MACHINE,
    mes_pb2.USAGE_GROUPING_PROGRAM: UsageGrouping.PROGRAM,
    mes_pb2.USAGE_GROUPING_OPERATOR: UsageGrouping.OPERATOR,
    mes_pb2.USAGE_GROUPING_TOOL_INSTANCE: UsageGrouping.TOOL_INSTANCE,
    mes_pb2.USAGE_GROUPING_TOOL_ITEM: UsageGrouping.TOOL_ITEM,
}


def _status(status: ToolInstanceStatus | str) -> int:
    name = status.value if isinstance(status, ToolInstanceStatus) else status
    return int(inst_pb.ToolInstanceStatus.Value(f"TOOL_INSTANCE_STATUS_{name}")) if name else 0


def _date(target: Any, value: date | None) -> None:
    if value is not None:
        target.year, target.month, target.day = value.year, value.month, value.day


def _time(target: Any, value: datetime | None) -> None:
    if value is not None:
        target.FromDatetime(value)


def _optional_id(request: Any, name: str) -> Any:
    try:
        return mapping.parse_id(getattr(request, name), name, required=False)
    except ValueError as exc:
        raise InvalidArgument.of([FieldViolation(name, str(exc))]) from None


def _scope(request: Any) -> InstanceScope:
    return InstanceScope(machine_id=request.machine_id or None, tool_item_id=_optional_id(request, "tool_item_id"))


def _required_date(request: Any, name: str) -> date:
    if not request.HasField(name):
        raise InvalidArgument.of([FieldViolation(name, "required: a calendar date")])
    try:
        return mapping.date_from_proto(getattr(request, name))
    except ValueError as exc:
        raise InvalidArgument.of([FieldViolation(name, str(exc))]) from None


def _required_time(request: Any, name: str) -> datetime:
    if not request.HasField(name):
        raise InvalidArgument.of([FieldViolation(name, "required: a timestamp")])
    try:
        return mapping.timestamp_to_datetime(getattr(request, name))
    except ValueError as exc:
        raise InvalidArgument.of([FieldViolation(name, str(exc))]) from None


def _caller() -> Caller:
    call = CURRENT_CALL.get()
    return Caller(principal=call.principal, peer=call.peer)


def _life(found: ToolLife) -> mes_pb2.ToolLife:
    i = found.instance
    msg = mes_pb2.ToolLife(
        tool_instance_id=str(i.id),
        serial_number=i.serial_number,
        tool_item_id=str(i.tool_item_id or ""),
        tool_assembly_id=str(i.tool_assembly_id or ""),
        status=_status(i.status),
        level=found.level,
        remaining_fraction=found.remaining_fraction,
        machine_ids=found.machine_ids,
    )
    for c in found.counters:
        counter = msg.counters.add(
            counter=c.counter,
            limit=c.limit,
            direction="DOWN" if c.down else "UP",
            used=c.used,
            remaining=c.remaining,
        )
        if c.prewarning is not None:
            counter.prewarning = c.prewarning
        _time(counter.prewarned_at, c.prewarned_at)
        _time(counter.reached_at, c.reached_at)
    return msg


def _totals(totals: UsageTotals) -> mes_pb2.UsageTotals:
    msg = mes_pb2.UsageTotals(
        usages=totals.usages,
        open_usages=totals.open_usages,
        time_in_spindle_s=totals.time_in_spindle_s,
        spindle_runtime_s=totals.spindle_runtime_s,
        cycles=totals.cycles,
        parts=totals.parts,
    )
    _time(msg.first_start_time, totals.first_start)
    _time(msg.last_start_time, totals.last_start)
    return msg


def _instance_fields(instance: ToolInstance) -> dict[str, Any]:
    return {
        "tool_instance_id": str(instance.id),
        "serial_number": instance.serial_number,
        "tool_item_id": str(instance.tool_item_id or ""),
        "tool_assembly_id": str(instance.tool_assembly_id or ""),
        "status": _status(instance.status),
    }


class ToolQueryServicer(mes_pb2_grpc.ToolQueryServiceServicer):  # type: ignore[misc]
    def __init__(self, service: MesService) -> None:
        self._service = service

    async def ListToolLife(self, request: Any, context: grpc.aio.ServicerContext) -> mes_pb2.ListToolLifeResponse:
        if request.min_level not in _LEVELS:
            raise InvalidArgument.of([FieldViolation("min_level", "not a ToolLifeLevel")])
        page = await self._service.tool_life(
            _scope(request), _LEVELS[request.min_level], page_size=request.page_size, page_token=request.page_token
        )
        return mes_pb2.ListToolLifeResponse(
            tool_lives=[_life(t) for t in page.items], next_page_token=page.next_page_token
        )

    async def ListCalibrationDue(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> mes_pb2.ListCalibrationDueResponse:
        before = _required_date(request, "due_before")
        page = await self._service.calibration_due(
            _scope(request), before, page_size=request.page_size, page_token=request.page_token
        )
        response = mes_pb2.ListCalibrationDueResponse(next_page_token=page.next_page_token)
        for due in page.items:
            msg = response.instances.add(**_instance_fields(due.instance), machine_ids=due.machine_ids)
            _date(msg.calibration_due, due.instance.calibration_due)
            _time(msg.last_calibration, due.instance.last_calibration)
        return response

    async def SummarizeUsage(self, request: Any, context: grpc.aio.ServicerContext) -> mes_pb2.SummarizeUsageResponse:
        problems = []
        if request.group_by not in _GROUPS:
            problems.append(
                FieldViolation("group_by", "required: MACHINE, PROGRAM, OPERATOR, TOOL_INSTANCE or TOOL_ITEM")
            )
        for name in ("start_time", "end_time"):
            if not request.HasField(name):
                problems.append(FieldViolation(name, "required: a timestamp"))
        if problems:
            raise InvalidArgument.of(problems)
        instance = _optional_id(request, "tool_instance_id")
        flt = UsageFilter(
            start=_required_time(request, "start_time"),
            end=_required_time(request, "end_time"),
            machine_id=request.machine_id,
            program_name=request.program_name,
            operator=request.operator,
            tool_instance_id=instance,
        )
        summary = await self._service.summarize_usage(
            flt, _GROUPS[request.group_by], page_size=request.page_size, page_token=request.page_token
        )
        return mes_pb2.SummarizeUsageResponse(
            groups=[mes_pb2.UsageGroup(key=key, totals=_totals(t)) for key, t in summary.groups],
            totals=_totals(summary.totals),
            next_page_token=summary.next_page_token,
        )

    async def CheckJobReadiness(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> mes_pb2.CheckJobReadinessResponse:
        tool_set_id = mapping.require_id(request.tool_set_id, "tool_set_id")
        on_date = _required_date(request, "on_date") if request.HasField("on_date") else None
        result = await self._service.job_readiness(
            tool_set_id,
            request.machine_id,
            parts=request.parts,
            minutes=request.minutes,
            max_replacements=request.max_replacements,
            on_date=on_date,
            caller=_caller(),
        )
        response = mes_pb2.CheckJobReadinessResponse(ready=result.ready)
        for tool in result.tools:
            msg = response.tools.add(
                **_instance_fields(tool.instance),
                tool_preset_id=str(tool.preset_id or ""),
                ready=tool.ready,
                remaining_fraction=tool.remaining_fraction,
            )
            for issue, text in tool.problems:
                msg.problems.add(issue=mes_pb2.ReadinessIssue.Value(f"READINESS_ISSUE_{issue}"), message=text)
            for r in tool.replacements:
                replacement = msg.replacements.add(
                    tool_instance_id=str(r.instance.id),
                    serial_number=r.instance.serial_number,
                    remaining_fraction=r.remaining_fraction,
                    on_machine=r.on_machine,
                )
                _date(replacement.calibration_due, r.instance.calibration_due)
        return response


def _event(event: ToolEvent) -> mes_pb2.ToolEvent:
    return mes_pb2.ToolEvent(
        type=mes_pb2.ToolEventType.Value(f"TOOL_EVENT_TYPE_{event.type.value}"),
        tool_instance_id=event.tool_instance_id,
        machine_id=event.machine_id,
        from_status=_status(event.from_status),
        to_status=_status(event.to_status),
        reason=event.reason,
        counters=list(event.counters),
    )


def change_event(item: cs.StreamItem) -> mes_pb2.ChangeEvent:
    change = item.change
    assert change is not None
    msg = mes_pb2.ChangeEvent(
        sequence=change.sequence,
        entity_type=change.entity_type,
        entity_id=str(change.entity_id),
        version=change.version,
        operation=common_pb2.ChangeOperation.Value(f"CHANGE_OPERATION_{change.operation.value}"),
        actor_id=str(change.actor_id or ""),
        request_id=change.request_id,
        cursor=item.cursor,
    )
    msg.change_time.FromDatetime(change.change_time)
    msg.entity.update(change.snapshot)
    msg.events.extend(_event(e) for e in item.events)
    return msg


ENCODED_KEPT = 4096
MESSAGE_BYTES = 1 << 20  # a message's changes stay under this (clients' default limit is 4 MiB)
_CHANGES = mes_pb2.WatchChangesResponse.DESCRIPTOR.fields_by_name["changes"].number
_CURSOR = mes_pb2.WatchChangesResponse.DESCRIPTOR.fields_by_name["cursor"].number


class EncodedChanges:
    """The stream's messages as bytes. Each change is encoded once for every watcher it goes to (its content and
    cursor are the same for all of them; the newest ENCODED_KEPT are kept) and a message is its changes' bytes one
    after another, as the wire format allows for a repeated field."""

    def __init__(self, kept: int = ENCODED_KEPT, message_bytes: int = MESSAGE_BYTES) -> None:
        self._kept = kept
        self._message_bytes = message_bytes
        self._cache: OrderedDict[tuple[int, Any, int], bytes] = OrderedDict()

    def messages(self, batch: list[cs.StreamItem]) -> list[tuple[bytes, str]]:
        """(message bytes, its cursor) for a batch: one message, or several when the changes are large."""
        if batch[0].change is None:
            (bookmark,) = batch
            response = mes_pb2.WatchChangesResponse(cursor=bookmark.cursor)
            response.bookmark.sequence = bookmark.sequence
            return [(response.SerializeToString(), bookmark.cursor)]
        out: list[tuple[bytes, str]] = []
        parts: list[bytes] = []
        size, cursor = 0, ""
        for item in batch:
            field = length_delimited(_CHANGES, self._change(item))
            if parts and size + len(field) > self._message_bytes:
                out.append((b"".join([*parts, length_delimited(_CURSOR, cursor.encode())]), cursor))
                parts, size = [], 0
            parts.append(field)
            size += len(field)
            cursor = item.cursor
        out.append((b"".join([*parts, length_delimited(_CURSOR, cursor.encode())]), cursor))
        return out

    def _change(self, item: cs.StreamItem) -> bytes:
        change = item.change
        assert change is not None
        key = (change.sequence, change.entity_id, change.version)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = change_event(item).SerializeToString()
            if len(self._cache) > self._kept:
                self._cache.popitem(last=False)
        return found


class ChangeStreamServicer(mes_pb2_grpc.ChangeStreamServiceServicer):  # type: ignore[misc]
    def __init__(self, stream: cs.ChangeStream, stall_timeout_s: float = 30.0) -> None:
        self._stream = stream
        self._stall_timeout_s = stall_timeout_s
        self._encoded = EncodedChanges()

    async def WatchChanges(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        flt, bookmark_s = _watch_input(request)
        after = await self._stream.start(request.cursor)
        items = self._stream.watch(flt, after, CURRENT_CALL.get().principal, bookmark_s=bookmark_s)
        try:
            async for batch in items:
                for message, cursor in self._encoded.messages(batch):
                    try:
                        async with asyncio.timeout(self._stall_timeout_s):
                            await context.write(message)
                    except TimeoutError:
                        raise ResourceExhausted(
                            f"the client read nothing for {self._stall_timeout_s:g} s; reconnect with the last "
                            "cursor received (nothing is lost)",
                            reason="SLOW_CONSUMER",
                            metadata={"cursor": cursor},
                        ) from None
        finally:
            await items.aclose()


def _watch_input(request: Any) -> tuple[cs.WatchFilter, float]:
    problems: list[FieldViolation] = []
    kinds: tuple[str, ...] = ()
    try:
        kinds = cs.valid_kinds(list(request.entity_types))
    except InvalidArgument as exc:
        problems.extend(exc.violations)
    instance = None
    try:
        instance = mapping.parse_id(request.tool_instance_id, "tool_instance_id", required=False)
    except ValueError as exc:
        problems.append(FieldViolation("tool_instance_id", str(exc)))
    bookmark_s = cs.DEFAULT_BOOKMARK_S
    if request.HasField("bookmark_interval"):
        d = request.bookmark_interval
        bookmark_s = d.seconds + d.nanos / 1e9
        if not (math.isfinite(bookmark_s) and cs.MIN_BOOKMARK_S <= bookmark_s <= cs.MAX_BOOKMARK_S):
            problems.append(
                FieldViolation(
                    "bookmark_interval", f"must be between {cs.MIN_BOOKMARK_S:g} s and {cs.MAX_BOOKMARK_S:g} s"
                )
            )
    if len(request.machine_id) > 100:
        problems.append(FieldViolation("machine_id", "at most 100 characters"))
    if problems:
        raise InvalidArgument.of(problems)
    return cs.WatchFilter(kinds, request.machine_id, instance), bookmark_s


def add_mes_servicers(
    server: grpc.aio.Server, service: MesService, stream: cs.ChangeStream, stall_timeout_s: float = 30.0
) -> list[str]:
    mes_pb2_grpc.add_ToolQueryServiceServicer_to_server(ToolQueryServicer(service), server)
    services = mes_pb2.DESCRIPTOR.services_by_name
    # Registered by hand for the serializer: the stream writes each change's bytes, encoded once (EncodedChanges).
    watch = grpc.unary_stream_rpc_method_handler(
        ChangeStreamServicer(stream, stall_timeout_s).WatchChanges,
        request_deserializer=mes_pb2.WatchChangesRequest.FromString,
        response_serializer=serialize_response,
    )
    name = services["ChangeStreamService"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, {"WatchChanges": watch}),))
    return [services["ToolQueryService"].full_name, services["ChangeStreamService"].full_name]
