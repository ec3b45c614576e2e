"""default preset: at most one ToolPreset per ToolInstance has is_default (issue 12), as a partial unique index on
both engines. Databases that already hold two defaults for one instance are refused with the rows named: which
one stays the default is the shop's decision, not the migration's.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "uq_tool_presets_default_per_instance"


def upgrade() -> None:
    doubled = (
        op.get_bind()
        .execute(
            sa.text(
                "SELECT tool_instance_id, COUNT(*) FROM tool_presets WHERE is_default "
                "GROUP BY tool_instance_id HAVING COUNT(*) > 1 ORDER BY tool_instance_id LIMIT 20"
            )
        )
        .all()
    )
    if doubled:
        listed = ", ".join(f"{row[0]} ({row[1]} defaults)" for row in doubled)
        raise RuntimeError(
            "cannot add the one-default-preset-per-instance rule: these tool instances have several presets "
            f"with is_default set: {listed}. Clear is_default on all but one preset of each (UpdateToolPreset), "
            "then run `smooth-edge migrate` again."
        )
    op.create_index(
        INDEX,
        "tool_presets",
        ["tool_instance_id"],
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="tool_presets")
