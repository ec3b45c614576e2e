"""An instance names a tool item or an assembly, so each of the two reference columns is empty in many rows: their
indexes become partial (rows where the column is set). A search by a value uses them as before, and after an
ANALYZE SQLite no longer judges an index of mostly NULL rows useless and scans the table (the MES query "at or past
prewarning, one tool item" walked 100k rows). And an index of the open usages (end_time NULL: one per spindle at
most), for "is this tool in use, and where" (job readiness read every usage of each tool).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("tool_item_id", "tool_assembly_id")


OPEN = "ix_tool_usages_open_tool_instance_id"


def upgrade() -> None:
    for column in COLUMNS:
        name = f"ix_tool_instances_{column}"
        where = sa.text(f"{column} IS NOT NULL")
        op.drop_index(name, table_name="tool_instances")
        op.create_index(name, "tool_instances", [column], sqlite_where=where, postgresql_where=where)
    open_ = sa.text("end_time IS NULL")
    op.create_index(OPEN, "tool_usages", ["tool_instance_id"], sqlite_where=open_, postgresql_where=open_)


def downgrade() -> None:
    op.drop_index(OPEN, table_name="tool_usages")
    for column in COLUMNS:
        name = f"ix_tool_instances_{column}"
        op.drop_index(name, table_name="tool_instances")
        op.create_index(name, "tool_instances", [column])
