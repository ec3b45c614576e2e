"""measurements: every presetter measurement kept (ToolMeasurement, issue 12), listed per instance newest first,
one row per measurement id; and ToolItem.calibration_interval_days (0: the global default of 365 days).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tool_measurements",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tool_instance_id", sa.Uuid(), nullable=False),
        sa.Column("measurement_id", sa.Text(), nullable=False),
        sa.Column("station_id", sa.Text(), nullable=False),
        sa.Column("operator", sa.Text(), nullable=False),
        sa.Column("measured_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("measurements", sa.JSON().with_variant(postgresql.JSONB(), "postgresql"), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("length(measurement_id) <= 100", name=op.f("ck_tool_measurements_measurement_id_max_len")),
        sa.CheckConstraint(
            "length(trim(measurement_id)) > 0", name=op.f("ck_tool_measurements_measurement_id_not_blank")
        ),
        sa.CheckConstraint("length(station_id) <= 100", name=op.f("ck_tool_measurements_station_id_max_len")),
        sa.CheckConstraint("length(operator) <= 200", name=op.f("ck_tool_measurements_operator_max_len")),
        sa.CheckConstraint("version >= 1", name=op.f("ck_tool_measurements_version_positive")),
        sa.ForeignKeyConstraint(
            ["tool_instance_id"],
            ["tool_instances.id"],
            name=op.f("fk_tool_measurements_tool_instance_id_tool_instances"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_tool_measurements_owner_id_users"), ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tool_measurements")),
        sa.UniqueConstraint("measurement_id", name=op.f("uq_tool_measurements_measurement_id")),
    )
    op.create_index(
        "ix_tool_measurements_instance_measured_at_id",
        "tool_measurements",
        ["tool_instance_id", "measured_at", "id"],
    )
    op.create_index("ix_tool_measurements_owner_id", "tool_measurements", ["owner_id"])
    op.create_index("ix_tool_measurements_created_at_id", "tool_measurements", ["created_at", "id"])
    op.execute(
        "ALTER TABLE tool_items ADD COLUMN calibration_interval_days INTEGER NOT NULL DEFAULT 0 "
        "CONSTRAINT ck_tool_items_calibration_interval_days_range "
        "CHECK (calibration_interval_days >= 0 AND calibration_interval_days <= 36500)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE tool_items DROP COLUMN calibration_interval_days")
    op.drop_table("tool_measurements")
