"""Controller profiles: where each signal lives in a controller's address space (../shared/DOMAIN.md §1).

A profile resolves, at every (re)connect, the nodes for the signals the tracker needs (namespace indices from
their URIs, never hard-coded):
- cnc: tool = CncChannelList/<ch>/ToolId, speed = CncSpindleList/<sp>/ActSpeed, program = ActMainProgramName,
  and where present spindle ActStatus (rotation), ActProgramStatus (cycles) and ActOperationMode;
- umati: tool = the Equipment/Tools/<t> whose LastUsage changed last (ControlIdentifier1 is its T number),
  rotating = Monitoring/<sp>/IsRotating, program = Production/ActiveProgram/Name (and State/CurrentState),
  operation mode and OperationCounters/OperationDuration under Monitoring/MachineTool,
  parts = Monitoring/MachineTool/(OperationCounters/)PartsProducedInLifetime, and each tool's ToolLife object
  (read when a usage of that tool closes, agent/collector/tool_life.py);
- sinumerik: /Channel/State/actTNumber, /Channel/Spindle/actSpeed, /Channel/ProgramInfo/progName,
  /Channel/State/actParts, with the suffix [u<channel>,1] ([u<channel>,<spindle>] for the speed) when a channel
  or spindle number is configured;
- custom: the NodeIds the configuration names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.uaerrors import UaError, UaStatusCodeError

from agent.config import MachineConfig

CNC_NS = "http://opcfoundation.org/UA/CNC"
MACHINERY_NS = "http://opcfoundation.org/UA/Machinery/"
MACHINE_TOOL_NS = "http://opcfoundation.org/UA/MachineTool/"
SINUMERIK_NS = "SinumerikVarProvider"


class ProfileError(Exception):
    """The controller's address space does not have what the profile needs; the message says what."""


@dataclass
class Signals:
    """Resolved nodes: signal name -> node; umati adds one LastUsage node per tool (T number -> node)."""

    nodes: dict[str, Node] = field(default_factory=dict)
    # umati: one entry per tool object (sister tools may share a T number): (T number, its LastUsage node).
    last_usage: list[tuple[int, Node]] = field(default_factory=list)
    # umati: each tool object's ToolLife object (None: the tool has none), in the order of `last_usage`.
    tool_life: list[Node | None] = field(default_factory=list)
    tools_folder: Node | None = None  # umati: Equipment/Tools, browsed again for tools loaded later
    tool_objects: set[Any] = field(default_factory=set)  # umati: the tool objects followed so far


async def _child(parent: Node, name: str, what: str, ns: int | None = None) -> Node:
    """The child whose browse name is `name`, in whatever namespace the server put it.

    With `ns`, one TranslateBrowsePath call is tried first (scanning every sibling's browse name is quadratic
    for a controller with hundreds of channels).
    """
    if ns is not None:
        try:
            return await parent.get_child(f"{ns}:{name}")
        except UaError:
            pass
    for child in await parent.get_children():
        if (await child.read_browse_name()).Name == name:
            return child
    raise ProfileError(f"{what}: no child named {name!r}")


async def _first_child(parent: Node, name: str, what: str, ns: int | None = None) -> Node:
    if name:
        return await _child(parent, name, what, ns)
    children = await parent.get_children()
    if not children:
        raise ProfileError(f"{what}: empty")
    return children[0]


async def _path(root: Node, names: list[str], what: str) -> Node:
    node = root
    for name in names:
        node = await _child(node, name, f"{what} ({'/'.join(names)})")
    return node


async def _namespace(client: Client, uri: str) -> int:
    try:
        return int(await client.get_namespace_index(uri))
    except (ValueError, UaError) as exc:
        raise ProfileError(f"the server has no namespace {uri!r}; is this the right profile?") from exc


async def resolve(client: Client, config: MachineConfig) -> Signals:
    """The profile's nodes on this server, found afresh (NodeIds may change after a controller update)."""
    resolver = {"cnc": _cnc, "umati": _umati, "sinumerik": _sinumerik, "custom": _custom}[config.profile]
    return await resolver(client, config)


async def _cnc(client: Client, config: MachineConfig) -> Signals:
    ns = await _namespace(client, CNC_NS)
    root = await _child(client.nodes.objects, "CncInterface", "Objects", ns)
    channels = await _child(root, "CncChannelList", "CncInterface", ns)
    spindles = await _child(root, "CncSpindleList", "CncInterface", ns)
    channel = await _first_child(channels, config.channel, "CncChannelList", ns)
    spindle = await _first_child(spindles, config.spindle, "CncSpindleList", ns)
    nodes = {
        "tool": await _child(channel, "ToolId", "channel", ns),
        "program": await _child(channel, "ActMainProgramName", "channel", ns),
        "speed": await _child(spindle, "ActSpeed", "spindle", ns),
    }
    # Optional in practice (a controller may leave them out): followed when present.
    for signal, parent, name in (
        ("spindle_status", spindle, "ActStatus"),
        ("program_status", channel, "ActProgramStatus"),
        ("operation_mode", channel, "ActOperationMode"),
    ):
        try:
            nodes[signal] = await _child(parent, name, signal, ns)
        except ProfileError:
            pass
    return Signals(nodes=nodes)


async def _umati(client: Client, config: MachineConfig) -> Signals:
    await _namespace(client, MACHINE_TOOL_NS)
    machines = await _child(client.nodes.objects, "Machines", "Objects")
    machine = await _umati_machine(machines, config.machine)
    monitoring = await _child(machine, "Monitoring", "machine")
    spindle = await _first_child(monitoring, config.spindle or "Spindle1", "Monitoring")
    nodes = {"rotating": await _child(spindle, "IsRotating", "spindle")}
    for signal, path in (
        ("program", ["Production", "ActiveProgram", "Name"]),
        ("program_status", ["Production", "ActiveProgram", "State", "CurrentState"]),
        ("operation_mode", ["Monitoring", "MachineTool", "OperationMode"]),
        ("operation_counter", ["Monitoring", "MachineTool", "OperationCounters", "OperationDuration"]),
    ):
        try:
            nodes[signal] = await _path(machine, path, "machine")
        except ProfileError:
            pass  # optional in the spec
    for path in (
        ["Monitoring", "MachineTool", "OperationCounters", "PartsProducedInLifetime"],
        ["Monitoring", "MachineTool", "PartsProducedInLifetime"],
    ):
        try:
            nodes["parts"] = await _path(machine, path, "machine")
            break
        except ProfileError:
            continue
    tools = await _path(machine, ["Equipment", "Tools"], "machine")
    found = await umati_tools(tools, set())
    if not found:
        raise ProfileError("Equipment/Tools has no tool with ControlIdentifier1 and LastUsage")
    # Browsed again while connected (tools_folder): tools loaded into the magazine later are followed too.
    return Signals(
        nodes=nodes,
        last_usage=[(tool.number, tool.last_usage) for tool in found],
        tool_life=[tool.tool_life for tool in found],
        tools_folder=tools,
        tool_objects={tool.object_id for tool in found},
    )


async def _umati_machine(machines: Node, name: str) -> Node:
    """The configured machine, or the only one under Objects/Machines (agent/config.py: `machine`)."""
    if name:
        return await _child(machines, name, "Machines")
    children = await machines.get_children()
    if len(children) == 1:
        return children[0]
    names = sorted([str((await child.read_browse_name()).Name) for child in children])
    if not names:
        raise ProfileError("Objects/Machines is empty")
    raise ProfileError(f"Objects/Machines has {len(names)} machines ({', '.join(names)}): name one with machine = ...")


@dataclass(frozen=True, slots=True)
class UmatiTool:
    """A tool under Equipment/Tools: its object's NodeId, T number (ControlIdentifier1), LastUsage and ToolLife."""

    object_id: Any
    number: int
    last_usage: Node
    tool_life: Node | None


async def umati_tools(tools: Node, known: set[Any]) -> list[UmatiTool]:
    """The tools under Equipment/Tools with ControlIdentifier1 and LastUsage whose objects are not in `known`."""
    found: list[UmatiTool] = []
    for tool in await tools.get_children():
        if tool.nodeid in known:
            continue
        names: dict[str, Node] = {str((await c.read_browse_name()).Name): c for c in await tool.get_children()}
        if "ControlIdentifier1" in names and "LastUsage" in names:
            number = whole_number(
                f"{tool.nodeid.to_string()}/ControlIdentifier1", await names["ControlIdentifier1"].read_value()
            )
            found.append(UmatiTool(tool.nodeid, number, names["LastUsage"], names.get("ToolLife")))
    return found


def _sinumerik_id(index: int, path: str, channel: str, item: str = "") -> str:
    """`[u<channel>,<index>]` selects the channel and, for spindle variables, the spindle; none = the defaults."""
    suffix = f"[u{channel or 1},{item or 1}]" if channel or item else ""
    return f"ns={index};s={path}{suffix}"


async def _sinumerik(client: Client, config: MachineConfig) -> Signals:
    index = await _namespace(client, config.namespace or SINUMERIK_NS)
    paths = {
        "tool": ("/Channel/State/actTNumber", ""),
        "speed": ("/Channel/Spindle/actSpeed", config.spindle),
        "program": ("/Channel/ProgramInfo/progName", ""),
        "parts": ("/Channel/State/actParts", ""),
    }
    nodes = {
        name: client.get_node(_sinumerik_id(index, path, config.channel, item)) for name, (path, item) in paths.items()
    }
    await _check_readable(nodes)
    return Signals(nodes=nodes)


async def _custom(client: Client, config: MachineConfig) -> Signals:
    nodes: dict[str, Node] = {}
    for signal, text in config.nodes.items():
        if text.startswith("nsu="):
            uri, _, rest = text[4:].partition(";")
            text = f"ns={await _namespace(client, uri)};{rest}"
        try:
            nodes[signal] = client.get_node(text)
        except (ValueError, UaError) as exc:
            raise ProfileError(f"nodes.{signal}: {text!r} is not a NodeId") from exc
    await _check_readable(nodes)
    return Signals(nodes=nodes)


async def _check_readable(nodes: dict[str, Node]) -> None:
    for signal, node in nodes.items():
        try:
            await node.read_data_value()
        except UaStatusCodeError as exc:
            raise ProfileError(f"{signal}: {node.nodeid.to_string()} cannot be read ({exc})") from exc


# --- values as controllers report them ---------------------------------------------------------------------------
# Controller values are untrusted input: each reading below is total (a defined result for every type and value) or
# raises ProfileError, which says what does not fit and is retried like any other mismatch of the address space.
# (A ValueError escaping from here would stop the machine's session as a bug.)

_BAD_NUMBER = (TypeError, ValueError, OverflowError)  # int(nan) is a ValueError, int(inf) an OverflowError


def whole_number(signal: str, value: Any) -> int:
    """A T number or a part counter: any numeric type (fractions dropped) or digits in a string; None is 0."""
    if value is None:
        return 0
    try:
        number = int(value)
    except _BAD_NUMBER as exc:
        raise ProfileError(f"{signal}: {value!r} is not a whole number") from exc
    if number < 0:
        raise ProfileError(f"{signal}: {number} is negative")
    return number


# Operation modes by profile (DOMAIN.md §1.1 ActOperationMode, §1.2 OperationMode), as usage metrics name them.
_MODES = {
    "cnc": {0: "MANUAL", 1: "MDA", 2: "AUTOMATIC"},
    "umati": {0: "MANUAL", 1: "AUTOMATIC", 2: "SETUP"},
}
CNC_SPINDLE_TURNING = frozenset({1, 2, 3})  # InTargetArea, Accelerating, Decelerating (Stopped=0, Parked=4)
CNC_PROGRAM_RUNNING = 1


def operation_mode(profile: str, value: Any) -> str:
    try:
        return _MODES.get(profile, {}).get(int(value), "OTHER")
    except _BAD_NUMBER:
        return "OTHER"


def program_running(value: Any) -> bool:
    """cnc ActProgramStatus (Running=1) or umati CurrentState (LocalizedText "Running")."""
    text = getattr(value, "Text", value)
    if isinstance(text, str):
        return text.strip().lower() == "running"
    try:
        return int(value) == CNC_PROGRAM_RUNNING
    except _BAD_NUMBER:
        return False


def spindle_turning(value: Any) -> bool:
    try:
        return int(value) in CNC_SPINDLE_TURNING
    except _BAD_NUMBER:
        return False


def to_number(value: Any) -> float:
    """A speed or a counter: 0.0 for what is not a finite number (a NaN would reach the usage's metrics)."""
    try:
        number = float(value)
    except _BAD_NUMBER:
        return 0.0
    return number if math.isfinite(number) else 0.0
