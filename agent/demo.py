"""`smooth-edge demo`: serve a SQLite store filled with a small sample shop, written through the public gRPC API,
with simulated CNC mills whose tool usage is printed for people as it is recorded (the logs go to a file).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

import grpc
import structlog
from google.protobuf import field_mask_pb2, struct_pb2
from smooth.core.v1 import (
    tool_assembly_pb2,
    tool_assembly_pb2_grpc,
    tool_instance_pb2,
    tool_instance_pb2_grpc,
    tool_item_pb2,
    tool_item_pb2_grpc,
    tool_preset_pb2,
    tool_preset_pb2_grpc,
    tool_set_pb2,
    tool_set_pb2_grpc,
    tool_usage_pb2,
    tool_usage_pb2_grpc,
)

from agent.config import CollectorConfig, MachineConfig
from agent.grpc_client import authorized_channel
from agent.logs import configure_logging
from agent.runtime import ServeOptions, serve
from agent.simulator.server import CncSimulator, SimMachine
from agent.simulator.timeline import random_routine
from agent.usage_tail import tail
from server.api.server import GrpcServer
from server.domain.entities import UserRole
from server.usecases.app import UseCases
from server.usecases.entities import Caller

log = structlog.get_logger("smooth_edge.demo")
DEMO_ADMIN = "admin@demo.local"
DEMO_MACHINES = ("MILL-01", "MILL-02")


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


async def seed(channel: grpc.aio.Channel) -> dict[str, int]:
    """Write the sample shop; returns how many entities of each kind were created (0s if already seeded)."""
    items = tool_item_pb2_grpc.ToolItemServiceStub(channel)
    if (await items.ListToolItems(tool_item_pb2.ListToolItemsRequest(page_size=1))).tool_items:
        log.info("demo.already_seeded")
        return {}
    assemblies = tool_assembly_pb2_grpc.ToolAssemblyServiceStub(channel)
    instances = tool_instance_pb2_grpc.ToolInstanceServiceStub(channel)
    presets = tool_preset_pb2_grpc.ToolPresetServiceStub(channel)
    usages = tool_usage_pb2_grpc.ToolUsageServiceStub(channel)
    sets = tool_set_pb2_grpc.ToolSetServiceStub(channel)
    counts = dict.fromkeys(("items", "assemblies", "instances", "presets", "usages", "sets"), 0)

    holder = await items.CreateToolItem(
        tool_item_pb2.CreateToolItemRequest(
            tool_item=tool_item_pb2.ToolItem(
                name="HSK-A63 shrink-fit chuck 12 mm",
                manufacturer="Haimer",
                part_number="A63.140.12",
                tool_type=tool_item_pb2.TOOL_TYPE_HOLDER,
                geometry=_struct({"CCMS": "HSK63A", "DCONMS": 63, "OAL": 100}),
                tags=["shrink-fit"],
            )
        )
    )
    cutters: list[tuple[str, int, dict[str, Any]]] = [
        ("Solid carbide drill 8.5", tool_item_pb2.TOOL_TYPE_DRILL, {"DC": 8.5, "SIG": 140, "OAL": 103}),
        ("End mill 12 mm 4F", tool_item_pb2.TOOL_TYPE_END_MILL, {"DC": 12, "NOF": 4, "OAL": 83, "LU": 36}),
        ("Ball nose 6 mm", tool_item_pb2.TOOL_TYPE_BALL_END_MILL, {"DC": 6, "NOF": 2, "RE": 3, "OAL": 57}),
    ]
    counts["items"] = 1
    machines = ["MILL-01", "MILL-02"]
    instance_ids: list[str] = []
    preset_ids: list[str] = []
    t0 = datetime.now(UTC) - timedelta(hours=2)
    for n, (name, tool_type, geometry) in enumerate(cutters, start=1):
        item = await items.CreateToolItem(
            tool_item_pb2.CreateToolItemRequest(
                tool_item=tool_item_pb2.ToolItem(
                    name=name,
                    manufacturer="Sandvik Coromant",
                    part_number=f"DEMO-{n:03d}",
                    tool_type=tool_type,
                    geometry=_struct(geometry),
                    tags=["carbide"],
                )
            )
        )
        assembly = await assemblies.CreateToolAssembly(
            tool_assembly_pb2.CreateToolAssemblyRequest(
                tool_assembly=tool_assembly_pb2.ToolAssembly(
                    name=f"{name} in HSK63",
                    holder_id=holder.id,
                    cutter_id=item.id,
                    assembly_data=_struct({"gauge_length": 140.0 + n, "coolant": "THROUGH_SPINDLE"}),
                )
            )
        )
        counts["items"] += 1
        counts["assemblies"] += 1
        for machine_no, machine in enumerate(machines, start=1):
            instance = await instances.CreateToolInstance(
                tool_instance_pb2.CreateToolInstanceRequest(
                    tool_instance=tool_instance_pb2.ToolInstance(
                        tool_item_id=item.id,
                        tool_assembly_id=assembly.id,
                        serial_number=f"SN-{n:02d}-{machine_no:02d}",
                        status=tool_instance_pb2.TOOL_INSTANCE_STATUS_AVAILABLE,
                        measurements=_struct({"LF": {"value": 140.0 + n + 0.012, "nominal": 140.0 + n}}),
                    )
                )
            )
            preset = await presets.CreateToolPreset(
                tool_preset_pb2.CreateToolPresetRequest(
                    tool_preset=tool_preset_pb2.ToolPreset(
                        name=f"T{n} on {machine}",
                        tool_instance_id=instance.id,
                        machine_id=machine,
                        parameters=_struct({"tool_number": n, "pocket": n, "length_offset": 140.0 + n}),
                        is_default=True,
                    )
                )
            )
            usage = tool_usage_pb2.ToolUsage(
                tool_instance_id=instance.id,
                machine_id=machine,
                program_name="O1001",
                operator="demo",
                usage_metrics=_struct(
                    {
                        "time_in_spindle_s": 600,
                        "spindle_runtime_s": 540,
                        "parts": 3,
                        "tool_number": n,
                        "source": "MANUAL",
                    }
                ),
            )
            usage.start_time.FromDatetime(t0 + timedelta(minutes=15 * n))
            usage.end_time.FromDatetime(t0 + timedelta(minutes=15 * n + 10))
            await usages.CreateToolUsage(tool_usage_pb2.CreateToolUsageRequest(tool_usage=usage))
            instance_ids.append(instance.id)
            preset_ids.append(preset.id)
            counts["instances"] += 1
            counts["presets"] += 1
            counts["usages"] += 1
    job = await sets.CreateToolSet(
        tool_set_pb2.CreateToolSetRequest(
            tool_set=tool_set_pb2.ToolSet(
                name="Job 4711 bracket",
                is_global=True,
                tool_instance_ids=instance_ids[::2],
                tool_preset_ids=preset_ids[::2],
            )
        )
    )
    counts["sets"] = 1
    # One update through a field mask, so the history (ListRevisions) shows two versions.
    job.description = "Bracket, 2 setups"
    await sets.UpdateToolSet(
        tool_set_pb2.UpdateToolSetRequest(tool_set=job, update_mask=field_mask_pb2.FieldMask(paths=["description"]))
    )
    return counts


async def demo_key(use_cases: UseCases) -> tuple[str, bool]:
    """An admin key for the demo: the first run creates the admin; later runs mint a fresh key for it."""
    existing = await use_cases.users.list(
        page_size=1, page_token="", filter_text=f'email = "{DEMO_ADMIN}"', order_by=""
    )
    if existing.items:
        _, secret = await use_cases.api_keys.create(
            user_id=existing.items[0].id, name="demo", scopes=["admin"], expires_at=None, caller=Caller(peer="demo")
        )
        return secret, False
    _, _, secret = await use_cases.api_keys.bootstrap(email=DEMO_ADMIN, role=UserRole.ADMIN, display_name="Demo admin")
    return secret, True


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def demo_machines(endpoint: str) -> tuple[list[SimMachine], CollectorConfig]:
    """Two simulated mills using T1..T4; the seed has presets for T1..T3 only, so T4 shows as unmatched."""
    machines, configs = [], []
    for index, name in enumerate(DEMO_MACHINES, start=1):
        routine = random_routine(index, tools=4, change_every_s=(2.0, 5.0))
        machines.append(SimMachine(name, "cnc", routine))
        configs.append(
            MachineConfig(
                machine_id=name,
                endpoint=endpoint,
                profile="cnc",
                channel=f"Channel{index}",
                spindle=f"Spindle{index}",
                publishing_interval_ms=100,
                watchdog_s=5,
                reconnect_max_s=5,
                operator="demo",
            )
        )
    return machines, CollectorConfig(tuple(configs))


def default_log_file(db: str) -> Path:
    """The demo's log file: beside its SQLite file (`smooth-edge-demo.db` -> `smooth-edge-demo.log`)."""
    if "://" in db:  # a database URL: no file to sit beside
        return Path("smooth-edge-demo.log")
    return Path(db).with_suffix(".log")


class _EchoToTerminal:
    """A structlog processor: events at `level` and above are also shown on the terminal, readably."""

    def __init__(self, terminal: TextIO, level: int = logging.WARNING) -> None:
        self._terminal = terminal
        self._level = level
        self._render = structlog.dev.ConsoleRenderer(colors=False)

    def __call__(self, logger: Any, method_name: str, event_dict: Any) -> Any:
        if logging.getLevelName(str(event_dict.get("level", "info")).upper()) >= self._level:
            print(self._render(logger, method_name, dict(event_dict)), file=self._terminal, flush=True)
        return event_dict


def route_logs_to_file(path: Path, level: str) -> Path:
    """Send the agent's JSON log lines (one per RPC, the collector's events) to `path`, appending, and show only
    warnings and errors on the terminal, so the demo's own lines stay readable (issue 14, item 7)."""
    configure_logging(level, json_lines=True)
    stream = path.open("a", encoding="utf-8", buffering=1)  # line-buffered: `tail -f` sees each line at once
    processors = list(structlog.get_config()["processors"])
    structlog.configure(
        processors=[*processors[:-1], _EchoToTerminal(sys.stderr), processors[-1]],
        logger_factory=structlog.PrintLoggerFactory(file=stream),
    )
    # Libraries logging through the standard library (alembic, asyncua): the file as well as the terminal.
    to_file = logging.StreamHandler(stream)
    to_file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.getLogger().addHandler(to_file)
    return path.resolve()


def _summary(counts: dict[str, int]) -> str:
    if not counts:
        return "the sample shop is already in the store"
    names = {"items": ("tool item", "tool items"), "assemblies": ("assembly", "assemblies")}
    names |= {"instances": ("tool instance", "tool instances"), "presets": ("preset", "presets")}
    names |= {"usages": ("past usage", "past usages"), "sets": ("tool set", "tool sets")}
    return "wrote the sample shop: " + ", ".join(
        f"{n} {names.get(kind, (kind, kind))[n != 1]}" for kind, n in counts.items()
    )


async def run_demo(
    db: str,
    listen: str,
    *,
    exit_after_seed: bool = False,
    duration_s: float = 0,
    with_cnc: bool = True,
    log_file: Path | None = None,
    log_level: str = "INFO",
) -> None:
    """Serve the demo shop; with `with_cnc`, simulated mills run and their tool usage is printed as recorded.

    With `log_file` the structured logs go there and only warnings and errors reach the terminal."""
    if log_file is not None:
        where = route_logs_to_file(log_file, log_level)
        print(
            f"Smooth Edge demo: logs (JSON lines, one per RPC) go to {where}; warnings and errors show here too.",
            flush=True,
        )
    stop = asyncio.Event()
    tail_task: asyncio.Task[None] | None = None
    endpoint = f"opc.tcp://127.0.0.1:{_free_port()}/smooth-demo/"
    machines, collector = demo_machines(endpoint) if with_cnc else ([], CollectorConfig())

    async def on_ready(server: GrpcServer, use_cases: UseCases) -> None:
        nonlocal tail_task
        address = f"{listen.rsplit(':', 1)[0]}:{server.port}"
        secret, _ = await demo_key(use_cases)
        started = datetime.now(UTC)
        channel = authorized_channel(f"127.0.0.1:{server.port}", secret)
        counts = await seed(channel)
        log.info("demo.seeded", created=counts, db=db)
        print(
            f"Serving gRPC on {address}, store {db}; {_summary(counts)}.\n"
            f"Admin API key ({DEMO_ADMIN}), shown once: {secret}\n"
            f"Try: grpcurl -plaintext -H 'authorization: Bearer {secret}' {address} "
            "smooth.core.v1.CollectorService/ListMachineStatuses   |   Ctrl-C stops.",
            flush=True,
        )
        if with_cnc:
            print(f"Simulated CNCs {', '.join(DEMO_MACHINES)} on {endpoint}; tool usage as it is recorded:", flush=True)
            tail_task = asyncio.create_task(_tail_then_close(channel, started, stop), name="demo-tail")
        else:
            await channel.close()
        if exit_after_seed:
            stop.set()
        elif duration_s > 0:
            asyncio.get_running_loop().call_later(duration_s, stop.set)

    options = ServeOptions(db, listen, auto_migrate=True, collector=collector)
    async with contextlib.AsyncExitStack() as stack:
        if machines:
            await stack.enter_async_context(CncSimulator(machines, endpoint))
        await serve(options, on_ready=on_ready, stop=stop)
    if tail_task is not None:
        await tail_task
    print(f"Stopped. The store stays in {db}; run the demo again to go on with it.", flush=True)


async def _tail_then_close(channel: grpc.aio.Channel, since: datetime, stop: asyncio.Event) -> None:
    def recorded_now(usage: tool_usage_pb2.ToolUsage) -> bool:
        # The sample shop's past usages ended hours ago: only what the collector records is shown.
        return not usage.HasField("end_time") or usage.end_time.ToDatetime(tzinfo=UTC) >= since

    try:
        await tail(
            channel, since=since, poll_s=0.5, stop=stop, out=lambda line: print(line, flush=True), only=recorded_now
        )
    except grpc.aio.AioRpcError:
        pass  # the server is stopping
    finally:
        await channel.close()
