"""The controller's own tool life (umati): a tool's ToolLife entries read as `x-controller_life_*` usage metrics.

OPC 40501-1 §8.5.4 gives a ToolType an optional `ToolLife` object whose variables (`<ToolLifeEntry>`, §11.1
ToolLifeType) hold a figure with the properties `Indication` (§12.8 ToolLifeIndication), `IsCountingUp`,
`EngineeringUnits` and optionally `StartValue`, `WarningValue`, `LimitValue`. Keys (README "Tool life"):
`x-controller_life_<kind>` the value, `..._limit`, `..._warning`, `..._start`, `..._up` (counting up) and, where the
controller names one, `..._unit`; time (hours in the spec) is stored in seconds with the suffix `_s` last.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.node import Node
from asyncua.ua.attribute_ids import AttributeIds

# §12.8 ToolLifeIndication -> the kind in the key. Time is given in hours (decimal); parts and usages are counts;
# distances and wear lengths in the unit the entry's EngineeringUnits names (mm, m, km; µm for wear).
KINDS = {
    0: "time",
    1: "parts",
    2: "usages",
    3: "feed_distance",
    4: "cutting_distance",
    5: "length",
    6: "diameter",
    7: "other",
}
PREFIX = "x-controller_life_"
_PROPERTIES = ("Indication", "IsCountingUp", "StartValue", "WarningValue", "LimitValue", "EngineeringUnits")
_LIMITS = (("StartValue", "_start"), ("WarningValue", "_warning"), ("LimitValue", "_limit"))
UNIT_MAX_LEN = 256  # common.json `extension`: a string value holds at most 256 characters


@dataclass(frozen=True, slots=True)
class Entry:
    """One ToolLife entry: its value node and the property nodes it has (browse name -> node)."""

    name: str
    value: Node
    properties: dict[str, Node]


async def entries(tool_life: Node) -> list[Entry]:
    """The entries under a tool's ToolLife object, in browse-name order (the first of a kind wins)."""
    found: list[Entry] = []
    for child in await tool_life.get_children(nodeclassmask=ua.NodeClass.Variable):
        properties = {str((await p.read_browse_name()).Name): p for p in await child.get_properties()}
        name = str((await child.read_browse_name()).Name)
        found.append(Entry(name, child, {k: v for k, v in properties.items() if k in _PROPERTIES}))
    return sorted(found, key=lambda e: e.name)


async def read(client: Client, found: list[Entry]) -> dict[str, Any]:
    """Every entry's value and properties in one Read request, as usage metrics."""
    nodes: list[Node] = []
    for entry in found:
        nodes += [entry.value, *entry.properties.values()]
    if not nodes:
        return {}
    values = await client.read_attributes(nodes, AttributeIds.Value)
    readings: list[dict[str, Any]] = []
    position = 0
    for entry in found:
        names = ["", *entry.properties]
        chunk = values[position : position + len(names)]
        position += len(names)
        readings.append({name: _good(dv) for name, dv in zip(names, chunk, strict=True)})
    return metrics(readings)


def _good(dv: ua.DataValue) -> Any:
    """A value whose status is good, else None (a property the controller cannot give now is left out)."""
    if dv.StatusCode is not None and not dv.StatusCode.is_good():
        return None
    return dv.Value.Value if dv.Value is not None else None


def metrics(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Entries read (property name -> value, "" the entry's own value) as `x-controller_life_*` keys.

    Total for whatever the controller sends (untrusted input): an entry whose value is not a finite number is left
    out, as is any property that does not fit; an unknown or missing Indication counts as "other".
    """
    out: dict[str, Any] = {}
    kinds: set[str] = set()
    for reading in readings:
        value = _finite(reading.get(""))
        if value is None:
            continue
        kind = KINDS.get(_indication(reading.get("Indication")), "other")
        if kind in kinds:
            continue  # the spec has every entry of a tool show the same progress: one per kind is enough
        kinds.add(kind)
        scale, unit = (3600, "_s") if kind == "time" else (1, "")
        out[f"{PREFIX}{kind}{unit}"] = _scaled(value, scale)
        for prop, suffix in _LIMITS:
            limit = _finite(reading.get(prop))
            if limit is not None:
                out[f"{PREFIX}{kind}{suffix}{unit}"] = _scaled(limit, scale)
        counting_up = reading.get("IsCountingUp")
        if isinstance(counting_up, bool):
            out[f"{PREFIX}{kind}_up"] = counting_up
        eu_name = _unit_name(reading.get("EngineeringUnits"))
        if eu_name and kind != "time":
            out[f"{PREFIX}{kind}_unit"] = eu_name[:UNIT_MAX_LEN]
    return out


def _finite(value: Any) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _scaled(value: float | int, scale: int) -> float | int:
    return round(value * scale, 3) if scale != 1 else value


def _indication(value: Any) -> int:
    """An Int32 or an enum member (asyncua may give either); -1 for anything else."""
    if isinstance(value, bool):
        return -1
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return -1


def _unit_name(value: Any) -> str:
    """EUInformation's DisplayName (e.g. "mm"), else its Description; "" when there is none."""
    for field in ("DisplayName", "Description"):
        text = getattr(getattr(value, field, None), "Text", None)
        if isinstance(text, str) and text.strip():
            return text.strip()
    return ""
