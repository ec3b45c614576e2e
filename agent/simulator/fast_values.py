"""A cheaper copy of a written value for each monitored item of the simulator's asyncua server.

On every write, asyncua's server deep-copies the DataValue once for each monitored item of the variable
(`MonitoredItemValues.set_current_datavalue`), so that what it keeps cannot change if the writer later changes its
value in place. copy.deepcopy of a scalar DataValue took about 90 us on a slow box: with 200 simulated machines that
was a sixth of a simulator process's CPU, taken from the agent the collector benchmark measures on the same two
cores (issue 11). A DataValue whose parts are all immutable (a scalar Variant of bool, int, float, str, bytes or
datetime, timestamps, picoseconds, a StatusCode) needs only its two containers and its StatusCode copied: this
does that, the same fields into new objects, and leaves every other value (arrays, structures, extension objects) to
deepcopy as before. `install()` puts it in place of asyncua's method (asyncua is pinned to 2.1.x in pyproject.toml);
the simulator's processes run no other asyncua server.
"""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any

from asyncua import ua
from asyncua.server.monitored_item_service import MonitoredItemValues

_IMMUTABLE = frozenset({bool, int, float, str, bytes, datetime, type(None)})
_DATA_VALUE_SLOTS = ua.DataValue.__slots__
_VARIANT_SLOTS = ua.Variant.__slots__
_PLAIN_SLOTS = tuple(name for name in _DATA_VALUE_SLOTS if name not in ("Value", "StatusCode"))  # times, encoding
_new = object.__new__


def copied(value: Any) -> Any:
    """A copy of `value` that shares nothing mutable with it: new containers for an all-immutable scalar DataValue,
    copy.deepcopy for anything else."""
    variant = getattr(value, "Value", None)
    if (
        type(value) is not ua.DataValue
        or type(variant) is not ua.Variant
        or variant.is_array
        or variant.Dimensions is not None
        or type(variant.Value) not in _IMMUTABLE
        or type(value.StatusCode) not in (ua.StatusCode, type(None))
        or any(type(getattr(value, name)) not in _IMMUTABLE for name in _PLAIN_SLOTS)
    ):
        return copy.deepcopy(value)
    out = _new(ua.DataValue)
    for name in _DATA_VALUE_SLOTS:
        object.__setattr__(out, name, getattr(value, name))
    inner = _new(ua.Variant)
    for name in _VARIANT_SLOTS:
        object.__setattr__(inner, name, getattr(variant, name))
    out.Value = inner
    if value.StatusCode is not None:
        out.StatusCode = copy.copy(value.StatusCode)
    return out


def _set_current_datavalue(self: MonitoredItemValues, cur_val: ua.DataValue) -> None:
    self.old_dvalue = self.current_dvalue
    self.current_dvalue = copied(cur_val)


def install() -> None:
    """asyncua's server keeps each monitored item's value through `copied` (idempotent)."""
    MonitoredItemValues.set_current_datavalue = _set_current_datavalue  # type: ignore[method-assign]
