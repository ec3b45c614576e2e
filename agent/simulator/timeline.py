"""What a simulated machine does over time: scripted steps or a seeded random shop-floor routine.

A timeline is plain data (no OPC UA here); the simulator server plays it onto its address space.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Step:
    """At `at_s` seconds after the start, set what is given (None = unchanged)."""

    at_s: float
    tool: int | None = None  # the T number in the spindle; 0 = no tool
    speed_rpm: float | None = None  # spindle speed; > 0 means rotating
    program: str | None = None
    program_running: bool | None = None
    parts: int = 0  # parts finished at this moment (added to the counter)
    operation_mode: int | None = None  # the profile's own code (cnc: MANUAL=0, MDA=1, AUTOMATIC=2)


def scripted(steps: list[Step]) -> list[Step]:
    """A script must be in time order; it is played once."""
    for before, after in itertools.pairwise(steps):
        if after.at_s < before.at_s:
            raise ValueError(f"timeline steps must be in time order ({after.at_s} after {before.at_s})")
    return steps


def random_routine(
    seed: int,
    *,
    tools: int = 12,
    change_every_s: tuple[float, float] = (4.0, 12.0),
    duration_s: float | None = None,
) -> Iterator[Step]:
    """An endless (or `duration_s` long) routine: load a tool, spin up, cut, stop, count a part, change tool."""
    rng = random.Random(seed)
    t = 0.0
    program = f"O{rng.randint(1000, 9999)}"
    yield Step(at_s=0.0, program=program, program_running=True)
    while duration_s is None or t < duration_s:
        tool = rng.randint(1, tools)
        stay = rng.uniform(*change_every_s)
        yield Step(at_s=t, tool=tool)
        yield Step(at_s=t + 0.2 * stay, speed_rpm=float(rng.choice([2500, 4000, 6000, 8000, 12000])))
        yield Step(at_s=t + 0.8 * stay, speed_rpm=0.0, parts=1 if rng.random() < 0.3 else 0)
        t += stay
        yield Step(at_s=t, tool=0)
        t += 0.5
