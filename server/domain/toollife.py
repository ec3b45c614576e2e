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
