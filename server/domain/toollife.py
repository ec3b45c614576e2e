"""Tool life (issue 12, item 3; DOMAIN.md 2.3): limits with a prewarning per counter, counting up or down,
configured on the tool item and overridden per counter by the assembly and then the instance; what an instance
has used is added up as its usages close (never by scanning them), with the remaining life.

A limit counting UP warns when what is used reaches `prewarning` and is reached at `limit`; one counting DOWN
shows what remains (`limit` - used), warns when that falls to `prewarning` and is reached at 0. Both report
`remaining` = limit - used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

COUNTERS = ("time_in_spindle_s", "spindle_runtime_s", "cycles", "parts", "usages")


@dataclass(frozen=True, slots=True)
class Limit:
    counter: str
    limit: float
    prewarning: float | None
    down: bool

    def warns(self, used: float) -> bool:
        if self.prewarning is None:
            return False
        return self.limit - used <= self.prewarning if self.down else used >= self.prewarning

    def reached(self, used: float) -> bool:
        return used >= self.limit


def effective(*policies: Mapping[str, Any]) -> dict[str, Limit]:
    """The limits in force: each later policy (assembly, then instance) replaces an earlier one's counter, and
    a counter set to null there removes it."""
    merged: dict[str, Any] = {}
    for policy in policies:
        merged.update(policy)
    out: dict[str, Limit] = {}
    for counter in COUNTERS:
        spec = merged.get(counter)
        if isinstance(spec, Mapping) and isinstance(spec.get("limit"), int | float):
            prewarning = spec.get("prewarning")
            out[counter] = Limit(
                counter,
                float(spec["limit"]),
                float(prewarning) if isinstance(prewarning, int | float) else None,
                spec.get("direction") == "DOWN",
            )
    return out


def consumed(usage_metrics: Mapping[str, Any]) -> dict[str, float]:
    """What one closed usage adds to each counter."""
    out = {"usages": 1.0}
    for counter in COUNTERS[:-1]:
        value = usage_metrics.get(counter)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            out[counter] = float(value)
    return out


@dataclass(frozen=True, slots=True)
class Outcome:
    state: dict[str, Any]  # the new tool_life_state
    prewarned: list[str]  # counters whose prewarning was crossed now
    reached: list[str]  # counters whose limit was reached now


def account(state: Mapping[str, Any], limits: Mapping[str, Limit], added: Mapping[str, float], at: str) -> Outcome:
    """The state after adding `added` to what is used; the prewarnings and limits crossed by it (each once)."""
    used = {c: float(v) for c, v in dict(state.get("used", {})).items()}
    for counter, amount in added.items():
        used[counter] = round(used.get(counter, 0.0) + amount, 6)
    prewarned_at = dict(state.get("prewarned_at", {}))
    reached_at = dict(state.get("reached_at", {}))
    prewarned, reached = [], []
    for counter, limit in limits.items():
        value = used.get(counter, 0.0)
        if limit.warns(value) and counter not in prewarned_at:
            prewarned_at[counter] = at
            prewarned.append(counter)
        if limit.reached(value) and counter not in reached_at:
            reached_at[counter] = at
            reached.append(counter)
    new = {
        **{k: v for k, v in state.items() if k not in ("used", "remaining", "prewarned_at", "reached_at")},
        "used": used,
        "remaining": remaining(limits, used),
    }
    if prewarned_at:
        new["prewarned_at"] = prewarned_at
    if reached_at:
        new["reached_at"] = reached_at
    return Outcome(new, prewarned, reached)


def remaining(limits: Mapping[str, Limit], used: Mapping[str, float]) -> dict[str, float]:
    return {c: round(limit.limit - used.get(c, 0.0), 6) for c, limit in limits.items()}


def reset(
    state: Mapping[str, Any], limits: Mapping[str, Limit], counters: list[str], at: str, reason: str
) -> dict[str, Any]:
    """The state after a reset (a regrind): the named counters (all when none) start from zero again."""
    chosen = counters or list(COUNTERS)
    used = {c: v for c, v in dict(state.get("used", {})).items() if c not in chosen}
    prewarned_at = {c: v for c, v in dict(state.get("prewarned_at", {})).items() if c not in chosen}
    reached_at = {c: v for c, v in dict(state.get("reached_at", {})).items() if c not in chosen}
    new: dict[str, Any] = {"used": used, "remaining": remaining(limits, used), "reset_at": at, "reset_reason": reason}
    if prewarned_at:
        new["prewarned_at"] = prewarned_at
    if reached_at:
        new["reached_at"] = reached_at
    return new


def describe(limits: Mapping[str, Limit], state: Mapping[str, Any], counters: list[str]) -> str:
    used = state.get("used", {})
    return "; ".join(f"{c} {used.get(c, 0):g} of {limits[c].limit:g}" for c in counters)


# How far an instance is through its life (the values of the API's ToolLifeLevel; the store keeps them in
# tool_instances.life_level so "at or past prewarning" is an index range).
UNLIMITED, OK, PREWARNING, EXPIRED = 1, 2, 3, 4


def summary(state: Mapping[str, Any]) -> tuple[int, float]:
    """(level, remaining fraction) of a tool_life_state: the worst counter. The fraction is the smallest
    remaining / limit (each limit is used + remaining), 1.0 without limits; the level comes from the limits
    counted (`remaining`) and the prewarnings and limits reached since the last reset."""
    remaining_by = state.get("remaining")
    if not isinstance(remaining_by, Mapping) or not remaining_by:
        return UNLIMITED, 1.0
    used_by = state.get("used")
    used_by = used_by if isinstance(used_by, Mapping) else {}
    fraction = 1.0
    for counter, left in remaining_by.items():
        used = used_by.get(counter, 0.0)
        if not _number(left) or not _number(used):
            continue
        limit = float(used) + float(left)
        fraction = min(fraction, float(left) / limit if limit > 0 else 0.0)
    level = OK
    if _counters_at(state, "reached_at", remaining_by):
        level = EXPIRED
    elif _counters_at(state, "prewarned_at", remaining_by):
        level = PREWARNING
    return level, round(fraction, 6)


def _counters_at(state: Mapping[str, Any], key: str, counted: Mapping[str, Any]) -> bool:
    marks = state.get(key)
    return isinstance(marks, Mapping) and any(c in counted for c in marks)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def needs(parts: float, minutes: float) -> dict[str, float]:
    """What a job of `parts` parts and `minutes` minutes consumes of each counter it names."""
    out: dict[str, float] = {}
    if parts > 0:
        out["parts"] = parts
    if minutes > 0:
        out["time_in_spindle_s"] = out["spindle_runtime_s"] = minutes * 60.0
    return out


def shortfalls(limits: Mapping[str, Limit], state: Mapping[str, Any], job: Mapping[str, float]) -> list[str]:
    """The counters that cannot take the job: at their limit already, or with less remaining than it needs."""
    used = state.get("used", {})
    out = []
    for counter, limit in limits.items():
        left = limit.limit - float(used.get(counter, 0.0))
        if left <= 0 or left < job.get(counter, 0.0):
            out.append(counter)
    return out


def fraction(limits: Mapping[str, Limit], state: Mapping[str, Any]) -> float:
    """The smallest remaining / limit over the counters under `limits` (1.0 without any)."""
    used = state.get("used", {})
    out = 1.0
    for name, limit in limits.items():
        left = limit.limit - float(used.get(name, 0.0))
        out = min(out, left / limit.limit if limit.limit > 0 else 0.0)
    return round(out, 6)


def level(limits: Mapping[str, Limit], used: Mapping[str, Any]) -> int:
    """The level under `limits` of what is used (UNLIMITED without limits)."""
    if not limits:
        return UNLIMITED
    if any(limit.reached(float(used.get(c, 0.0))) for c, limit in limits.items()):
        return EXPIRED
    if any(limit.warns(float(used.get(c, 0.0))) for c, limit in limits.items()):
        return PREWARNING
    return OK
