"""Thin servicer for CollectorService: per-machine status of the OPC UA collector."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from smooth.core.v1 import collector_pb2, collector_pb2_grpc

from server.domain.collector import MachineStatus

StatusSource = Callable[[], Awaitable[list[MachineStatus]]]


def status_to_proto(status: MachineStatus) -> collector_pb2.MachineStatus:
    msg = collector_pb2.MachineStatus(
        machine_id=status.machine_id,
        endpoint=status.endpoint,
        profile=status.profile,
        connected=status.connected,
        last_error=status.last_error,
        open_tool_number=status.open_tool_number,
        open_usage_id=str(status.open_usage_id or ""),
        failed_attempts=status.failed_attempts,
        open_tool_status=status.open_tool_status,
    )
    if status.last_data_at is not None:
        msg.last_data_time.FromDatetime(status.last_data_at)
    if status.open_since is not None:
        msg.open_since.FromDatetime(status.open_since)
    for tool in status.unmatched:
        item = msg.unmatched.add(tool_number=tool.tool_number, intervals=tool.intervals)
        item.first_seen.FromDatetime(tool.first_seen)
        item.last_seen.FromDatetime(tool.last_seen)
    return msg


class CollectorServicer(collector_pb2_grpc.CollectorServiceServicer):  # type: ignore[misc]
    def __init__(self, statuses: StatusSource) -> None:
        self._statuses = statuses

    async def ListMachineStatuses(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> collector_pb2.ListMachineStatusesResponse:
        return collector_pb2.ListMachineStatusesResponse(machines=[status_to_proto(s) for s in await self._statuses()])


def add_collector_servicer(server: grpc.aio.Server, statuses: StatusSource) -> str:
    collector_pb2_grpc.add_CollectorServiceServicer_to_server(CollectorServicer(statuses), server)
    return str(collector_pb2.DESCRIPTOR.services_by_name["CollectorService"].full_name)
