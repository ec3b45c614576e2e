"""tool life: limits with a prewarning per counter on tool items, assemblies and instances (`tool_life`, each
overriding the one before per counter), and each instance's `tool_life_state` (used, remaining, crossings),
maintained as usages close (issue 12). JSON columns NOT NULL DEFAULT '{}', added in place on both engines.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = (
    ("tool_items", "tool_life"),
    ("tool_assemblies", "tool_life"),
    ("tool_instances", "tool_life"),
    ("tool_instances", "tool_life_state"),
)


def upgrade() -> None:
    json_type = "JSONB" if op.get_bind().dialect.name == "postgresql" else "JSON"
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ADD COLUMN {column} {json_type} NOT NULL DEFAULT '{{}}'")


def downgrade() -> None:
    for table, column in reversed(COLUMNS):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
