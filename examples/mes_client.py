"""A short MES client of Smooth Edge (issue 13): lists the tools due for calibration, then follows the change
stream, printing the tool events, and resumes where it stopped after its own restart or the server's.

    python examples/mes_client.py --target 127.0.0.1:50051 --key "$SMOOTH_EDGE_KEY" --cursor-file mes.cursor

The cursor of every change (and bookmark) received is saved (atomically) to --cursor-file; a restarted client
resumes after it, so nothing is missed and nothing is seen twice. A cursor the server no longer accepts
(CURSOR_EXPIRED) means: reread (here: the calibration list again), then watch from now. Needs only grpcio and
the generated code of protos/ (`pip install -e .` in this repository, or protoc in your own language).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from datetime import date
from pathlib import Path

import grpc
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from google.type import date_pb2
from grpc_status import rpc_status
from smooth.core.v1 import mes_pb2, mes_pb2_grpc

RETRY_S = (0.5, 1, 2, 5, 10)


def reason_of(err: grpc.aio.AioRpcError) -> str:
    status = rpc_status.from_call(err)
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


async def list_due(channel: grpc.aio.Channel, metadata: list[tuple[str, str]], before: date) -> None:
    stub = mes_pb2_grpc.ToolQueryServiceStub(channel)
    token, count = "", 0
    while True:
        page = await stub.ListCalibrationDue(
            mes_pb2.ListCalibrationDueRequest(
                due_before=date_pb2.Date(year=before.year, month=before.month, day=before.day), page_token=token
            ),
            metadata=metadata,
        )
        for tool in page.instances:
            due = tool.calibration_due
            machines = ", ".join(tool.machine_ids) or "not loaded"
            print(f"due {due.year:04d}-{due.month:02d}-{due.day:02d}  {tool.serial_number}  ({machines})", flush=True)
            count += 1
        token = page.next_page_token
        if not token:
            break
    print(f"{count} tool(s) due for calibration before {before.isoformat()}", flush=True)


def describe(change: mes_pb2.ChangeEvent) -> list[str]:
    operation = change.operation  # CHANGE_OPERATION_CREATE = 1, UPDATE = 2, DELETE = 3
    verb = {1: "created", 2: "updated", 3: "deleted"}.get(operation, "changed")
    lines = [f"#{change.sequence} {change.entity_type} {change.entity_id} {verb} (v{change.version})"]
    for event in change.events:
        name = mes_pb2.ToolEventType.Name(event.type).removeprefix("TOOL_EVENT_TYPE_")
        where = f" on {event.machine_id}" if event.machine_id else ""
        extra = f" {', '.join(event.counters)}" if event.counters else ""
        why = f" ({event.reason})" if event.reason else ""
        lines.append(f"#{change.sequence}   {name} tool {event.tool_instance_id}{where}{extra}{why}")
    return lines


def load(path: Path) -> str:
    return path.read_text().strip() if path.exists() else ""


def forget(path: Path) -> None:
    path.unlink(missing_ok=True)


def save(path: Path, cursor: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(cursor)
    os.replace(temporary, path)  # a crash leaves the old cursor or the new one, never half of one


async def follow(args: argparse.Namespace) -> int:
    metadata = [("authorization", f"Bearer {args.key}")] if args.key else []
    cursor_file = Path(args.cursor_file)
    seen = 0
    attempt = 0
    async with grpc.aio.insecure_channel(args.target) as channel:
        await list_due(channel, metadata, args.due_before)
        stub = mes_pb2_grpc.ChangeStreamServiceStub(channel)
        while True:
            cursor = load(cursor_file)
            request = mes_pb2.WatchChangesRequest(
                cursor=cursor,
                machine_id=args.machine,
                entity_types=args.entity_type,
                bookmark_interval=duration_pb2.Duration(seconds=5),
            )
            print(f"watching from {'the saved cursor' if cursor else 'now'}", flush=True)
            try:
                async for message in stub.WatchChanges(request, metadata=metadata):
                    attempt = 0
                    # A message carries the changes that were ready (or a bookmark); each change has its own
                    # cursor, so the client can stop after any of them and resume right after it.
                    for change in message.changes:
                        for line in describe(change):
                            print(line, flush=True)
                        seen += 1
                        save(cursor_file, change.cursor)
                        if args.max_changes and seen >= args.max_changes:
                            return 0
                    save(cursor_file, message.cursor)
            except grpc.aio.AioRpcError as err:
                if reason_of(err) == "CURSOR_EXPIRED":
                    print(f"cursor refused: {err.details()}; rereading, then watching from now", flush=True)
                    await list_due(channel, metadata, args.due_before)
                    forget(cursor_file)
                    continue
                if err.code() not in (
                    grpc.StatusCode.UNAVAILABLE,
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                ):
                    print(f"stopping: {err.code().name}: {err.details()}", file=sys.stderr, flush=True)
                    return 1
                pause = RETRY_S[min(attempt, len(RETRY_S) - 1)]
                attempt += 1
                print(f"stream ended ({err.code().name}: {err.details()}); resuming in {pause:g} s", flush=True)
                await asyncio.sleep(pause)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--target", default="127.0.0.1:50051", help="HOST:PORT of the agent or central")
    parser.add_argument("--key", default=os.environ.get("SMOOTH_EDGE_KEY", ""), help="API key (read scope)")
    parser.add_argument("--cursor-file", default="mes.cursor", help="where the stream position is kept")
    parser.add_argument("--due-before", type=date.fromisoformat, default=date.today(), help="YYYY-MM-DD")
    parser.add_argument("--machine", default="", help="only this machine's changes")
    parser.add_argument("--entity-type", action="append", default=[], help="only these kinds (repeatable)")
    parser.add_argument("--max-changes", type=int, default=0, help="exit after this many changes (0: never)")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(follow(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
