"""On PostgreSQL, a GIN index of the tags of every kind that has them: a List filtered by tag (`tags:"carbide"`,
the store's `tags @> '["carbide"]'`) finds its rows through the index instead of reading every row's tags (issue
11). jsonb_path_ops: the smaller GIN operator class, and it serves `@>`, the only operator the store uses on tags.
SQLite has no index that can serve its tag filter (json_each), so nothing changes there. The index is declared
only here, not in server/store/tables.py (SQLAlchemy cannot declare an index for one dialect):
`POSTGRES_ONLY_INDEXES` there tells the schema comparison to expect it.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("tool_items", "tool_assemblies", "tool_instances", "tool_presets", "tool_sets")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"CREATE INDEX ix_{table}_tags_gin ON {table} USING gin (tags jsonb_path_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in TABLES:
        op.execute(f"DROP INDEX ix_{table}_tags_gin")
