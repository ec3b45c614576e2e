"""`smooth-edge usage tail`: follow ToolUsage records as they are opened and closed (through the gRPC API)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import grpc
from smooth.core.v1 import tool_usage_pb2, tool_usage_pb2_grpc

from agent.grpc_client import authorized_channel


def describe(usage: tool_usage_pb2.ToolUsage) -> str:
    metrics = dict(usage.usage_metrics)
    tool = int(metrics.get("tool_number", 0))
    start = usage.start_time.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S")
    if not usage.HasField("end_time"):
        return f"{usage.machine_id:<10} T{tool:<3} in spindle since {start}   usage {usage.id}"
    end = usage.end_time.ToDatetime(tzinfo=UTC).strftime("%H:%M:%S")
    parts = f", {int(metrics['parts'])} parts" if "parts" in metrics else ""
    # umati reports rotation, not speed: its usages have no max_speed_rpm, and none is shown.
    speed = f", max {metrics['max_speed_rpm']:.0f} rpm" if "max_speed_rpm" in metrics else ""
    flag = "  (interrupted: not all of it was observed)" if metrics.get("interrupted") else ""
    return (
        f"{usage.machine_id:<10} T{tool:<3} {start}-{end}  in spindle {metrics.get('time_in_spindle_s', 0):.1f} s, "
        f"running {metrics.get('spindle_runtime_s', 0):.1f} s{speed}{parts}{flag}"
    )


async def tail(
    channel: grpc.aio.Channel,
    *,
    machine_id: str = "",
    since: datetime | None = None,
    poll_s: float = 1.0,
    out: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
    only: Callable[[tool_usage_pb2.ToolUsage], bool] | None = None,
) -> None:
    """Print every usage created or changed after `since` (default: now) that `only` accepts, until `stop` is
    set."""
    stub = tool_usage_pb2_grpc.ToolUsageServiceStub(channel)
    seen: dict[str, int] = {}
    since = since or datetime.now(UTC)
    while stop is None or not stop.is_set():
        flt = f'updated_at >= "{since.isoformat()}"' + (f' AND machine_id = "{machine_id}"' if machine_id else "")
        token = ""
        while True:
            page = await stub.ListToolUsages(
                tool_usage_pb2.ListToolUsagesRequest(filter=flt, order_by="updated_at", page_size=200, page_token=token)
            )
            for usage in page.tool_usages:
                if seen.get(usage.id) != usage.version:
                    seen[usage.id] = usage.version
                    if only is None or only(usage):
                        out(describe(usage))
            token = page.next_page_token
            if not token:
                break
        if stop is None:
            await asyncio.sleep(poll_s)
        else:
            try:
                await asyncio.wait_for(stop.wait(), timeout=poll_s)
            except TimeoutError:
                pass


async def run_tail(target: str, key: str, machine_id: str) -> None:
    async with authorized_channel(target, key) as channel:
        await tail(channel, machine_id=machine_id)
