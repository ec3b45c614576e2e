"""The rulebook: every rule about an entity kind beyond its own fields, declared once beside the registry.

Unique keys, the roles a reference must play, which side owns what (DESIGN decision 7), the entity-level
checks and the parent-before-child order. `server/usecases/rulebook.py` enforces it for every writer: the API,
the collector, central's push apply, the edge's pull apply and the resync (STYLE 14).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from server.domain.entities import ToolItem, ToolPreset, ToolSet, ToolType, User, Versioned
from server.domain.errors import FieldViolation
from server.domain.registry import KIND_BY_CLASS, KINDS
from server.domain.schema import fields_of

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def tool_number_of(preset: ToolPreset) -> int | None:
    """The T number a preset gives its tool on its machine (`parameters.tool_number`), if any."""
    value = preset.parameters.get("tool_number")
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass(frozen=True, slots=True)
class UniqueKey:
    """No two entities of a kind share `key(entity)` (None: the entity has no such key)."""

    column: str  # the stored column that narrows the candidates (an equal key implies an equal column)
    field: str  # the field a violation names
    reason: str  # ErrorInfo reason of the refusal
    key: Callable[[Versioned], Hashable | None]
    describe: Callable[[Versioned], str]  # "serial number 'SN-1'"
    detail: str  # the violation's description


@dataclass(frozen=True, slots=True)
class Role:
    """A reference field whose target must be of a certain type: checked when the reference is written and when
    the target changes while it is referenced."""

    field: str
    fits: Callable[[Versioned], bool]
    needs: str  # what the target must be, for messages


@dataclass(frozen=True, slots=True)
class Rules:
    unique: tuple[UniqueKey, ...] = ()
    roles: tuple[Role, ...] = ()
    checks: tuple[Callable[[Versioned], list[FieldViolation]], ...] = ()  # entity-level rules (no I/O)
    edge_owned: bool = False  # the whole entity is the edge's (a conflict keeps the edge's version)
    edge_fields: frozenset[str] = field(default_factory=frozenset)  # fields the edge owns in a central entity
    # The canonical form every writer stores (before the checks): e.g. e-mails in lower case, so keys that
    # differ only in spelling collide.
    normalize: Callable[[Versioned], Versioned] | None = None


def _tool_type(item: Versioned) -> ToolType | None:
    return item.tool_type if isinstance(item, ToolItem) else None


def _lower_email(user: Versioned) -> Versioned:
    assert isinstance(user, User)
    email = user.email.strip().lower()
    return user if email == user.email else dataclasses.replace(user, email=email)


def _sorted_members(tool_set: Versioned) -> Versioned:
    """A tool set's members are sets: kept in id order, as the store returns them (so an answer built from what was
    written equals one read back)."""
    assert isinstance(tool_set, ToolSet)
    instances, presets = sorted(tool_set.tool_instance_ids), sorted(tool_set.tool_preset_ids)
    if instances == tool_set.tool_instance_ids and presets == tool_set.tool_preset_ids:
        return tool_set
    return dataclasses.replace(tool_set, tool_instance_ids=instances, tool_preset_ids=presets)


def _email_rule(user: Versioned) -> list[FieldViolation]:
    assert isinstance(user, User)
    email = user.email
    if email != email.strip().lower() or (email and not EMAIL.match(email)):
        return [FieldViolation("email", "not an e-mail address (name@domain.tld, lower case)")]
    return []


def _calibration_interval_rule(item: Versioned) -> list[FieldViolation]:
    days = getattr(item, "calibration_interval_days", 0)
    if isinstance(days, bool) or not isinstance(days, int) or not 0 <= days <= 36500:
        return [FieldViolation("calibration_interval_days", "must be 0 (the default, 365) to 36500 days")]
    return []


RULES: dict[str, Rules] = {
    "user": Rules(
        unique=(
            UniqueKey(
                "email",
                "email",
                "EMAIL_TAKEN",
                key=lambda u: getattr(u, "email", None) or None,
                describe=lambda u: f"e-mail {getattr(u, 'email', '')!r}",
                detail="already used by another user",
            ),
        ),
        checks=(_email_rule,),
        normalize=_lower_email,
    ),
    "tool_item": Rules(checks=(_calibration_interval_rule,)),
    "tool_assembly": Rules(
        roles=(
            Role("holder_id", lambda item: _tool_type(item) == ToolType.HOLDER, "a ToolItem of type HOLDER"),
            Role("cutter_id", lambda item: _tool_type(item) != ToolType.HOLDER, "a cutting tool, not a HOLDER"),
        )
    ),
    "tool_instance": Rules(
        unique=(
            UniqueKey(
                "serial_number",
                "serial_number",
                "SERIAL_NUMBER_TAKEN",
                key=lambda i: getattr(i, "serial_number", None) or None,
                describe=lambda i: f"serial number {getattr(i, 'serial_number', '')!r}",
                detail="already used by another ToolInstance",
            ),
        ),
        # Measurements of a physical tool are taken where it is (presetters, collectors): the edge's.
        edge_fields=frozenset({"measurements", "last_calibration", "calibration_due", "status", "status_reason"}),
    ),
    "tool_preset": Rules(
        unique=(
            UniqueKey(
                "machine_id",
                "parameters.tool_number",
                "TOOL_NUMBER_TAKEN",
                key=lambda p: (
                    None
                    if not isinstance(p, ToolPreset) or tool_number_of(p) is None
                    else (p.machine_id, tool_number_of(p))
                ),
                describe=lambda p: (
                    f"T{tool_number_of(p)} on {p.machine_id!r}" if isinstance(p, ToolPreset) else "T number"
                ),
                detail="already used on this machine: a machine cannot have two tools under one T number",
            ),
            # is_default: the setup a presetter or MES uses for this instance on a machine that has no preset
            # of its own for it — so there is at most one (README, "Default presets").
            UniqueKey(
                "tool_instance_id",
                "is_default",
                "DEFAULT_PRESET_TAKEN",
                key=lambda p: p.tool_instance_id if isinstance(p, ToolPreset) and p.is_default else None,
                describe=lambda p: f"the default preset of ToolInstance {getattr(p, 'tool_instance_id', '')}",
                detail="another preset is already this instance's default: clear its is_default first",
            ),
        ),
    ),
    "tool_usage": Rules(edge_owned=True),
    "tool_set": Rules(normalize=_sorted_members),
    # Taken where the tool is (a presetter beside the machines): the edge's, never changed after.
    "tool_measurement": Rules(
        unique=(
            UniqueKey(
                "measurement_id",
                "measurement_id",
                "MEASUREMENT_ID_TAKEN",
                key=lambda m: getattr(m, "measurement_id", None) or None,
                describe=lambda m: f"measurement id {getattr(m, 'measurement_id', '')!r}",
                detail="already recorded: a new measurement needs a new id",
            ),
        ),
        edge_owned=True,
    ),
}
assert set(RULES) == set(KINDS), "every entity kind has its row in the rulebook"


def normalized(entity: Versioned) -> Versioned:
    """The entity in the canonical form its kind stores."""
    rule = RULES[KIND_BY_CLASS[type(entity)].name].normalize
    return entity if rule is None else rule(entity)


def referrers(target: str) -> list[tuple[str, Role]]:
    """(kind, role) of every role reference that points at entities of `target`."""
    out: list[tuple[str, Role]] = []
    for name, rules in RULES.items():
        for role in rules.roles:
            info = next(f for f in fields_of(KINDS[name].cls) if f.name == role.field)
            if info.ref == target:
                out.append((name, role))
    return out


def _parent_first_order() -> tuple[str, ...]:
    """Kinds ordered so that every kind comes after the kinds its references point at (owner_id included)."""
    deps = {
        name: {f.ref for f in fields_of(kind.cls) if f.ref is not None and f.ref != name}
        for name, kind in KINDS.items()
    }
    order: list[str] = []
    while len(order) < len(deps):
        ready = [n for n in deps if n not in order and deps[n] <= set(order)]
        if not ready:
            raise RuntimeError(f"reference cycle among {sorted(set(deps) - set(order))}")
        order.extend(sorted(ready, key=list(KINDS).index))
    return tuple(order)


# Parents before children: a batch or a snapshot applies in this order so references resolve; deletes go
# in the reverse order.
PARENT_FIRST: tuple[str, ...] = _parent_first_order()
