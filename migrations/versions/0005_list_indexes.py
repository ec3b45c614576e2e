"""list indexes: the default page order (created_at, id) of every versioned table, and the common filtered lists
in their order (tool items by type, instances by status, usages by instance and start time), so a first page
reads about 50 index entries instead of sorting the table (issue 11). Plain CREATE INDEX on both engines: no
table is rebuilt.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("ix_tool_items_created_at_id", "tool_items", ("created_at", "id")),
    ("ix_tool_items_tool_type_created_at_id", "tool_items", ("tool_type", "created_at", "id")),
    ("ix_tool_assemblies_created_at_id", "tool_assemblies", ("created_at", "id")),
    ("ix_tool_instances_created_at_id", "tool_instances", ("created_at", "id")),
    ("ix_tool_instances_status_created_at_id", "tool_instances", ("status", "created_at", "id")),
    ("ix_tool_presets_created_at_id", "tool_presets", ("created_at", "id")),
    ("ix_tool_usages_created_at_id", "tool_usages", ("created_at", "id")),
    ("ix_tool_usages_tool_instance_id_start_time", "tool_usages", ("tool_instance_id", "start_time")),
    ("ix_tool_sets_created_at_id", "tool_sets", ("created_at", "id")),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, list(columns), unique=False)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
