"""MES queries (issue 13): each instance's tool life level and smallest remaining fraction, kept by the store
from tool_life_state as rows are written, indexed (remaining, id, level) for "least life first" and "at or past
prewarning"; calibration_due indexed with the id for "due before a date" pages (replacing its single-column
index). Existing rows get their values from their tool_life_state here, by the same rule as the store.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNLIMITED, OK, PREWARNING, EXPIRED = 1, 2, 3, 4


def _summary(state: Any) -> tuple[int, float]:
    # The rule of server/domain/toollife.summary as of this revision (a migration does not import the code it
    # outlives).
    if isinstance(state, str):
        state = json.loads(state)
    remaining = state.get("remaining") if isinstance(state, dict) else None
    if not isinstance(remaining, dict) or not remaining:
        return UNLIMITED, 1.0
    used = state.get("used") if isinstance(state.get("used"), dict) else {}
    fraction = 1.0
    for counter, left in remaining.items():
        spent = used.get(counter, 0.0)
        if isinstance(left, int | float) and isinstance(spent, int | float):
            limit = float(spent) + float(left)
            fraction = min(fraction, float(left) / limit if limit > 0 else 0.0)
    level = OK
    if any(c in remaining for c in state.get("reached_at") or {}):
        level = EXPIRED
    elif any(c in remaining for c in state.get("prewarned_at") or {}):
        level = PREWARNING
    return level, round(fraction, 6)


def upgrade() -> None:
    # In place on both engines (a batch rebuild of tool_instances on SQLite would trip its foreign keys).
    real = "DOUBLE PRECISION" if op.get_bind().dialect.name == "postgresql" else "FLOAT"
    op.execute("ALTER TABLE tool_instances ADD COLUMN life_level SMALLINT NOT NULL DEFAULT 1")
    op.execute(f"ALTER TABLE tool_instances ADD COLUMN life_remaining {real} NOT NULL DEFAULT 1.0")
    bind = op.get_bind()
    rows = bind.execute(sa.text("SELECT id, tool_life_state FROM tool_instances")).all()
    updates = []
    for row_id, state in rows:
        level, fraction = _summary(state)
        if (level, fraction) != (UNLIMITED, 1.0):
            updates.append({"i": row_id, "l": level, "r": fraction})
    if updates:
        bind.execute(sa.text("UPDATE tool_instances SET life_level = :l, life_remaining = :r WHERE id = :i"), updates)
    op.drop_index("ix_tool_instances_calibration_due", table_name="tool_instances")
    op.create_index("ix_tool_instances_calibration_due_id", "tool_instances", ["calibration_due", "id"])
    op.create_index(
        "ix_tool_instances_life_remaining_id_life_level", "tool_instances", ["life_remaining", "id", "life_level"]
    )


def downgrade() -> None:
    op.drop_index("ix_tool_instances_life_remaining_id_life_level", table_name="tool_instances")
    op.drop_index("ix_tool_instances_calibration_due_id", table_name="tool_instances")
    op.create_index("ix_tool_instances_calibration_due", "tool_instances", ["calibration_due"])
    op.execute("ALTER TABLE tool_instances DROP COLUMN life_remaining")
    op.execute("ALTER TABLE tool_instances DROP COLUMN life_level")
