"""A CNC simulator: an asyncua server with the OPC 40502 (cnc) and OPC 40501-1 (umati) address spaces for one
or many machines, each playing a timeline. It serves the demo and the collector tests.

Layout (browse names and namespace URIs as the specs give them, ../shared/DOMAIN.md §1):
- cnc: Objects/CncInterface/CncChannelList/<Channel>/{ToolId, ActProgramStatus, ActMainProgramName, ...} and
  CncSpindleList/<Spindle>/{ActSpeed, CmdSpeed, ActStatus, ActTurnDirection}; machine i is the channel and
  spindle pair `Channel<i>` / `Spindle<i>` (a multi-channel controller), so one server carries many machines.
- umati: Objects/Machines/<Machine>/{Monitoring/<Spindle>/IsRotating, Monitoring/MachineTool/...,
  Production/ActiveProgram/..., Equipment/Tools/<Tool>/{ControlIdentifier1, LastUsage, ..., ToolLife/<Entry>}}, the
  ToolLife entries (where a machine gives a tool some) counted as a controller would (SimToolLife).

Every write is stamped (SourceTimestamp) with the controller's clock, and the server's CurrentTime reads it: ours by
default; tests give it one they move themselves, so what the collector records follows from the steps, not from how
fast the test ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from asyncua import ua
from asyncua.common.node import Node
from asyncua.crypto.permission_rules import SimpleRoleRuleset, User, UserRole
from asyncua.server.internal_session import InternalSession
from asyncua.server.server import Server
from asyncua.server.user_managers import UserManager
from asyncua.ua.attribute_ids import AttributeIds

from agent.simulator import fast_values
from agent.simulator.timeline import Step

log = structlog.get_logger("smooth_edge.simulator")
# Each monitored item keeps a written scalar value by a cheap copy instead of copy.deepcopy (fast_values.py).
fast_values.install()
# The simulator serves an open endpoint on purpose; asyncua's warnings about that are noise here.
for _name in ("asyncua.server.server", "asyncua.server.address_space", "asyncua.server.internal_server"):
    logging.getLogger(_name).setLevel(logging.ERROR)

CNC_NS = "http://opcfoundation.org/UA/CNC"
SINUMERIK_NS = "SinumerikVarProvider"
MACHINERY_NS = "http://opcfoundation.org/UA/Machinery/"
MACHINE_TOOL_NS = "http://opcfoundation.org/UA/MachineTool/"

# OPC 40502 enumerations (DOMAIN.md §1.1)
SPINDLE_STOPPED, SPINDLE_IN_TARGET = 0, 1
PROGRAM_STOPPED, PROGRAM_RUNNING = 0, 1
# OPC 40501-1 §12.8 ToolLifeIndication (the ones the simulator counts) and the entries' browse names.
LIFE_TIME, LIFE_PARTS, LIFE_USAGES = 0, 1, 2
_LIFE_NAMES = {0: "Time", 1: "NumberOfParts", 2: "NumberOfUsages", 3: "FeedDistance", 4: "CuttingDistance"}
# EngineeringUnits (OPC 10000-8): UNECE codes, hours for Time, "one" for counts, millimetres for distances.
_LIFE_UNITS = {0: ("HUR", "h"), 1: ("C62", "one"), 2: ("C62", "one")}
UNECE_NS = "http://www.opcfoundation.org/UA/units/un/cefact"


@dataclass(frozen=True)
class SimToolLife:
    """A ToolLife entry (OPC 40501-1 §11.1 ToolLifeType) on a simulated umati tool, counted as a controller does:
    Time = hours the spindle turned with the tool active, NumberOfParts = parts made with it, NumberOfUsages = its
    loads into the spindle; up from `value`, or down when not `counting_up`. Other indications stay at `value`."""

    indication: int
    value: float = 0.0
    counting_up: bool = True
    start: float | None = None
    warning: float | None = None
    limit: float | None = None


@dataclass
class SimMachine:
    """One simulated machine: its name, its address-space flavour and its timeline."""

    name: str
    profile: str  # "cnc", "umati" or "sinumerik"
    steps: Iterable[Step]
    tools: int = 12  # umati: how many tools the magazine shows
    tool_life: dict[int, tuple[SimToolLife, ...]] = field(default_factory=dict)  # umati: T number -> its entries


@dataclass
class _LifeEntry:
    spec: SimToolLife
    node: Node
    value: float


@dataclass
class _Handles:
    values: dict[str, Node] = field(default_factory=dict)
    tools: dict[int, dict[str, Node]] = field(default_factory=dict)  # umati: T number -> its nodes
    parts: int = 0
    run_ms: float = 0.0  # umati OperationDuration: time with a program running
    running_since: datetime | None = None  # on the controller's clock: when the program started running
    life: dict[int, list[_LifeEntry]] = field(default_factory=dict)  # umati: T number -> its ToolLife entries
    active_tool: int = 0  # umati: the tool the controller counts life for (0 after an unload)
    rotating_since: datetime | None = None  # umati: on the controller's clock, while the spindle turns


@dataclass(frozen=True)
class SimSecurity:
    """Server certificate/key and accepted user names; None values mean an open (no security) endpoint."""

    certificate: Path | None = None
    private_key: Path | None = None
    users: dict[str, str] = field(default_factory=dict)


class _Users(UserManager):
    def __init__(self, users: dict[str, str]) -> None:
        self._users = users

    def get_user(
        self, iserver: Any, username: str | None = None, password: str | None = None, certificate: Any = None
    ) -> User | None:
        if username is None:
            return None if self._users else User(role=UserRole.User)
        if self._users.get(username) == password:
            return User(role=UserRole.User)
        return None


def _utc_now() -> datetime:
    return datetime.now(UTC)


class CncSimulator:
    """`async with CncSimulator(machines, endpoint) as sim:` serves and plays the timelines until the block ends.

    `clock` is the controller's clock (aware UTC datetimes): it stamps every value the simulator writes.
    """

    def __init__(
        self,
        machines: list[SimMachine],
        endpoint: str,
        *,
        security: SimSecurity | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.machines = machines
        self.endpoint = endpoint
        self._security = security
        self._clock = clock
        self._server: Server | None = None
        self._handles: dict[str, _Handles] = {}
        self._players: list[asyncio.Task[None]] = []
        self.started_at = 0.0

    async def __aenter__(self) -> CncSimulator:
        users = self._security.users if self._security else {}
        server = Server(user_manager=_Users(users)) if users else Server()
        await server.init()
        # The server's CurrentTime is the controller's clock too, read when asked (asyncua's own refreshes it once a
        # second from ours): the collector's keep-alive then reads the time its changes are stamped with.
        server.disable_clock(True)
        server.iserver.aspace.set_attribute_value_callback(
            ua.NodeId(ua.ObjectIds.Server_ServerStatus_CurrentTime),  # type: ignore[attr-defined,arg-type]
            AttributeIds.Value,
            self._current_time,
        )
        server.set_endpoint(self.endpoint)
        server.set_server_name("Smooth Edge CNC simulator")
        if self._security and self._security.certificate and self._security.private_key:
            await server.load_certificate(str(self._security.certificate))
            await server.load_private_key(str(self._security.private_key))
            server.set_security_policy(
                [ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt, ua.SecurityPolicyType.Basic256Sha256_Sign],
                permission_ruleset=SimpleRoleRuleset(),  # type: ignore[no-untyped-call]
            )
        if users:
            server.set_security_IDs(["Username"])
        cnc_ns = await server.register_namespace(CNC_NS)
        machinery_ns = await server.register_namespace(MACHINERY_NS)
        mt_ns = await server.register_namespace(MACHINE_TOOL_NS)
        sinumerik_ns = await server.register_namespace(SINUMERIK_NS)
        cnc_root: Node | None = None
        machines_folder: Node | None = None
        for index, machine in enumerate(self.machines, start=1):
            if machine.profile == "cnc":
                if cnc_root is None:
                    cnc_root = await server.nodes.objects.add_object(cnc_ns, "CncInterface")
                    for name in ("CncAxisList", "CncSpindleList", "CncChannelList"):
                        await cnc_root.add_object(cnc_ns, name)
                self._handles[machine.name] = await _build_cnc(cnc_root, cnc_ns, index)
            elif machine.profile == "umati":
                if machines_folder is None:
                    machines_folder = await server.nodes.objects.add_folder(machinery_ns, "Machines")
                self._handles[machine.name] = await _build_umati(machines_folder, mt_ns, machine)
            elif machine.profile == "sinumerik":
                self._handles[machine.name] = await _build_sinumerik(server.nodes.objects, sinumerik_ns, index)
            else:
                raise ValueError(f"simulated machine {machine.name}: profile must be cnc, umati or sinumerik")
        # Steps at time 0 are the state the controller is in when it comes up (before any client can look).
        remaining: dict[str, Iterator[Step]] = {}
        for machine in self.machines:
            steps = iter(machine.steps)
            first = next(steps, None)
            while first is not None and first.at_s <= 0:
                await self.apply(machine.name, first)
                first = next(steps, None)
            remaining[machine.name] = itertools.chain([first] if first else [], steps)
        await server.start()
        self._server = server
        self.started_at = time.monotonic()
        for machine in self.machines:
            task = asyncio.create_task(self._play(machine, remaining[machine.name]), name=f"sim-{machine.name}")
            self._players.append(task)
        log.info("simulator.started", endpoint=self.endpoint, machines=[m.name for m in self.machines])
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        for task in self._players:
            task.cancel()
        for task in self._players:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._players.clear()
        if self._server is not None:
            await self._server.stop()
            self._server = None
        log.info("simulator.stopped", endpoint=self.endpoint)

    def _current_time(self, nodeid: ua.NodeId, attribute: AttributeIds) -> ua.DataValue:
        now = self._clock()
        return ua.DataValue(ua.Variant(now, ua.VariantType.DateTime), SourceTimestamp=now, ServerTimestamp=now)  # type: ignore[arg-type]

    async def _play(self, machine: SimMachine, steps: Iterator[Step]) -> None:
        for step in steps:
            delay = self.started_at + step.at_s - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            await self.apply(machine.name, step)

    async def add_tool(self, machine_name: str, number: int) -> None:
        """umati: load one more tool (T `number`) into the machine's magazine while the server runs."""
        machine = next(m for m in self.machines if m.name == machine_name)
        await _add_umati_tool(self._handles[machine_name], number, machine.tool_life.get(number, ()))

    async def apply(self, machine_name: str, step: Step) -> None:
        """Set the machine's signals now (tests drive machines directly with this too)."""
        machine = next(m for m in self.machines if m.name == machine_name)
        h = self._handles[machine_name]
        now = self._clock()
        if machine.profile == "cnc":
            await _apply_cnc(h, step, now)
        elif machine.profile == "sinumerik":
            await _apply_sinumerik(h, step, now)
        else:
            await _apply_umati(h, step, now)


async def _var(parent: Node, ns: int, name: str, value: Any, vtype: ua.VariantType) -> Node:
    return await parent.add_variable(ns, name, ua.Variant(value, vtype))


async def _write(node: Node, value: Any, vtype: ua.VariantType, when: datetime) -> None:
    """Set a variable as the controller does: straight into its own address space (no client write, so no access
    checks), and only when the value changes. A SourceTimestamp says when the value last changed (OPC UA Part 4,
    DataValue), so writing the same value again must not move it; and asyncua copies the value for every
    monitored item on each write, which made unchanged writes most of the simulator's CPU with 200 machines."""
    session = node.session
    assert isinstance(session, InternalSession), "simulator nodes are the server's own"
    aspace = session.iserver.aspace
    current = aspace.read_attribute_value(node.nodeid, AttributeIds.Value)
    variant = current.Value
    if (
        variant is not None
        and variant.VariantType == vtype
        and type(variant.Value) is type(value)
        and variant.Value == value
        and (current.StatusCode is None or current.StatusCode.is_good())
    ):
        return
    dv = ua.DataValue(ua.Variant(value, vtype), SourceTimestamp=when, ServerTimestamp=when)  # type: ignore[arg-type]
    status = await aspace.write_attribute_value(node.nodeid, AttributeIds.Value, dv)
    status.check()


async def _build_cnc(root: Node, ns: int, index: int) -> _Handles:
    channels = await root.get_child(f"{ns}:CncChannelList")
    spindles = await root.get_child(f"{ns}:CncSpindleList")
    channel = await channels.add_object(ns, f"Channel{index}")
    spindle = await spindles.add_object(ns, f"Spindle{index}")
    h = _Handles()
    V = ua.VariantType
    h.values["ToolId"] = await _var(channel, ns, "ToolId", 0, V.UInt32)
    h.values["ActStatus"] = await _var(channel, ns, "ActStatus", 2, V.Int32)  # Reset
    h.values["ActProgramStatus"] = await _var(channel, ns, "ActProgramStatus", PROGRAM_STOPPED, V.Int32)
    h.values["ActOperationMode"] = await _var(channel, ns, "ActOperationMode", 2, V.Int32)  # Automatic
    h.values["ActMainProgramName"] = await _var(channel, ns, "ActMainProgramName", "", V.String)
    h.values["ActProgramName"] = await _var(channel, ns, "ActProgramName", "", V.String)
    h.values["ActSpeed"] = await _var(spindle, ns, "ActSpeed", 0.0, V.Double)
    h.values["CmdSpeed"] = await _var(spindle, ns, "CmdSpeed", 0.0, V.Double)
    h.values["ActOverride"] = await _var(spindle, ns, "ActOverride", 100.0, V.Double)
    h.values["SpindleActStatus"] = await _var(spindle, ns, "ActStatus", SPINDLE_STOPPED, V.Int32)
    h.values["ActTurnDirection"] = await _var(spindle, ns, "ActTurnDirection", 0, V.Int32)
    return h


async def _apply_cnc(h: _Handles, step: Step, now: datetime) -> None:
    V = ua.VariantType
    if step.program is not None:
        await _write(h.values["ActMainProgramName"], step.program, V.String, now)
        await _write(h.values["ActProgramName"], step.program, V.String, now)
    if step.program_running is not None:
        await _write(
            h.values["ActProgramStatus"], PROGRAM_RUNNING if step.program_running else PROGRAM_STOPPED, V.Int32, now
        )
        await _write(h.values["ActStatus"], 0 if step.program_running else 2, V.Int32, now)
    if step.operation_mode is not None:
        await _write(h.values["ActOperationMode"], step.operation_mode, V.Int32, now)
    if step.tool is not None:
        await _write(h.values["ToolId"], step.tool, V.UInt32, now)
    if step.speed_rpm is not None:
        await _write(h.values["CmdSpeed"], step.speed_rpm, V.Double, now)
        await _write(h.values["ActSpeed"], step.speed_rpm, V.Double, now)
        await _write(
            h.values["SpindleActStatus"], SPINDLE_IN_TARGET if step.speed_rpm > 0 else SPINDLE_STOPPED, V.Int32, now
        )
        await _write(h.values["ActTurnDirection"], 1 if step.speed_rpm > 0 else 0, V.Int32, now)


async def _build_umati(machines: Node, ns: int, machine: SimMachine) -> _Handles:
    V = ua.VariantType
    root = await machines.add_object(ns, machine.name)
    monitoring = await root.add_object(ns, "Monitoring")
    spindle = await monitoring.add_object(ns, "Spindle1")
    channel = await monitoring.add_object(ns, "Channel1")
    machine_tool = await monitoring.add_object(ns, "MachineTool")
    counters = await machine_tool.add_object(ns, "OperationCounters")
    production = await root.add_object(ns, "Production")
    program = await production.add_object(ns, "ActiveProgram")
    state = await program.add_object(ns, "State")
    equipment = await root.add_object(ns, "Equipment")
    tools = await equipment.add_object(ns, "Tools")
    h = _Handles()
    h.values["Tools"] = tools
    h.values["IsRotating"] = await _var(spindle, ns, "IsRotating", False, V.Boolean)
    h.values["Override"] = await _var(spindle, ns, "Override", 100.0, V.Double)
    h.values["ChannelState"] = await _var(channel, ns, "ChannelState", 2, V.Int32)
    h.values["OperationMode"] = await _var(machine_tool, ns, "OperationMode", 1, V.Int32)
    h.values["PowerOnDuration"] = await _var(counters, ns, "PowerOnDuration", 0.0, V.Double)
    h.values["OperationDuration"] = await _var(counters, ns, "OperationDuration", 0.0, V.Double)
    h.values["PartsProducedInLifetime"] = await _var(counters, ns, "PartsProducedInLifetime", 0, V.UInt64)
    h.values["ProgramName"] = await _var(program, ns, "Name", "", V.String)
    h.values["CurrentState"] = await state.add_variable(ns, "CurrentState", ua.LocalizedText("Ended"))
    for t in range(1, machine.tools + 1):
        await _add_umati_tool(h, t, machine.tool_life.get(t, ()))
    return h


async def _add_umati_tool(h: _Handles, number: int, life: tuple[SimToolLife, ...]) -> None:
    V = ua.VariantType
    tools = h.values["Tools"]
    ns = tools.nodeid.NamespaceIndex
    tool = await tools.add_object(ns, f"Tool{number}")
    h.tools[number] = {
        "ControlIdentifier1": await _var(tool, ns, "ControlIdentifier1", number, V.UInt32),
        "LastUsage": await _var(tool, ns, "LastUsage", datetime(2000, 1, 1, tzinfo=UTC), V.DateTime),
        "Name": await _var(tool, ns, "Name", f"T{number}", V.String),
    }
    if not life:
        return
    folder = await tool.add_object(ns, "ToolLife")
    h.life[number] = []
    for spec in life:
        name = _LIFE_NAMES.get(spec.indication, f"Other{spec.indication}")
        entry = await _var(folder, ns, name, spec.value, V.Double)
        await entry.add_property(ns, "Indication", ua.Variant(spec.indication, V.Int32))
        await entry.add_property(ns, "IsCountingUp", ua.Variant(spec.counting_up, V.Boolean))
        for name, limit in (("StartValue", spec.start), ("WarningValue", spec.warning), ("LimitValue", spec.limit)):
            if limit is not None:
                await entry.add_property(ns, name, ua.Variant(limit, V.Double))
        code, unit = _LIFE_UNITS.get(spec.indication, ("MMT", "mm"))
        eu = ua.EUInformation(
            NamespaceUri=UNECE_NS,
            UnitId=int.from_bytes(code.encode(), "big"),  # OPC 10000-8: the UNECE code's characters as one integer
            DisplayName=ua.LocalizedText(unit),
            Description=ua.LocalizedText(unit),
        )
        await entry.add_property(0, "EngineeringUnits", ua.Variant(eu, V.ExtensionObject))
        h.life[number].append(_LifeEntry(spec, entry, spec.value))


async def _count_life(h: _Handles, step: Step, now: datetime) -> None:
    """Before the step: the active tool's turning time up to now; then its load or the parts it made."""
    if h.rotating_since is not None and h.active_tool:
        await _add_life(h, h.active_tool, LIFE_TIME, (now - h.rotating_since).total_seconds() / 3600, now)
    if step.tool is not None and step.tool != h.active_tool:
        h.active_tool = step.tool
        await _add_life(h, step.tool, LIFE_USAGES, 1, now)
    if step.speed_rpm is not None:
        h.rotating_since = now if step.speed_rpm > 0 else None
    elif h.rotating_since is not None:
        h.rotating_since = now  # counted up to now above
    if step.parts and h.active_tool:
        await _add_life(h, h.active_tool, LIFE_PARTS, step.parts, now)


async def _add_life(h: _Handles, number: int, indication: int, amount: float, now: datetime) -> None:
    for entry in h.life.get(number, []):
        if entry.spec.indication == indication and amount:
            entry.value += amount if entry.spec.counting_up else -amount
            await _write(entry.node, entry.value, ua.VariantType.Double, now)


async def _apply_umati(h: _Handles, step: Step, now: datetime) -> None:
    V = ua.VariantType
    await _count_life(h, step, now)
    # OperationDuration (ms, never reset) counts time with a program running; it is written at every step.
    if h.running_since is not None:
        h.run_ms += max(0.0, (now - h.running_since).total_seconds()) * 1000
        h.running_since = now
    if step.program_running is not None:
        h.running_since = now if step.program_running else None
    await _write(h.values["OperationDuration"], h.run_ms, V.Double, now)
    if step.operation_mode is not None:
        await _write(h.values["OperationMode"], step.operation_mode, V.Int32, now)
    if step.program is not None:
        await _write(h.values["ProgramName"], step.program, V.String, now)
    if step.program_running is not None:
        text = ua.LocalizedText("Running" if step.program_running else "Ended")
        await h.values["CurrentState"].write_value(
            ua.DataValue(ua.Variant(text, V.LocalizedText), SourceTimestamp=now)  # type: ignore[arg-type]
        )
        await _write(h.values["ChannelState"], 0 if step.program_running else 2, V.Int32, now)
    if step.tool:  # the active tool is the one whose LastUsage changed last; T0 (unload) shows nothing here
        await _write(h.tools[step.tool]["LastUsage"], now, V.DateTime, now)
    if step.speed_rpm is not None:
        await _write(h.values["IsRotating"], step.speed_rpm > 0, V.Boolean, now)
    if step.parts:
        h.parts += step.parts
        await _write(h.values["PartsProducedInLifetime"], h.parts, V.UInt64, now)


async def _build_sinumerik(objects: Node, ns: int, channel: int) -> _Handles:
    """SINUMERIK-style variables: string NodeIds `/Channel/...[u<channel>,1]` in the vendor namespace, and
    `/Channel/Spindle/actSpeed[u<channel>,2]`, a counter-spindle at half the main spindle's speed."""
    V = ua.VariantType
    folder = await objects.add_folder(ns, f"Sinumerik{channel}")
    h = _Handles()
    for key, path, value, vtype in (
        ("tool", "/Channel/State/actTNumber", 0, V.Int32),
        ("speed", "/Channel/Spindle/actSpeed", 0.0, V.Double),
        ("program", "/Channel/ProgramInfo/progName", "", V.String),
        ("parts", "/Channel/State/actParts", 0, V.Int32),
    ):
        node_id = ua.NodeId(f"{path}[u{channel},1]", ns)  # type: ignore[arg-type]
        h.values[key] = await folder.add_variable(node_id, path.rsplit("/", 1)[1], ua.Variant(value, vtype))
    # A counter-spindle (spindle 2 of the channel) that turns at half the main spindle's speed.
    node_id = ua.NodeId(f"/Channel/Spindle/actSpeed[u{channel},2]", ns)  # type: ignore[arg-type]
    h.values["speed2"] = await folder.add_variable(node_id, "actSpeed2", ua.Variant(0.0, V.Double))
    return h


async def _apply_sinumerik(h: _Handles, step: Step, now: datetime) -> None:
    V = ua.VariantType
    if step.program is not None:
        await _write(h.values["program"], step.program, V.String, now)
    if step.tool is not None:
        await _write(h.values["tool"], step.tool, V.Int32, now)
    if step.speed_rpm is not None:
        await _write(h.values["speed"], step.speed_rpm, V.Double, now)
        await _write(h.values["speed2"], step.speed_rpm / 2, V.Double, now)
    if step.parts:
        h.parts += step.parts
        await _write(h.values["parts"], h.parts, V.Int32, now)
