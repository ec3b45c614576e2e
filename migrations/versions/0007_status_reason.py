"""status reason: ToolInstance.status_reason, why the status is what it is (issue 12, the status lifecycle).
TEXT NOT NULL DEFAULT '' with its length limit as a CHECK, added in place on both engines (no table rebuild:
SQLite and PostgreSQL both take a column with a default and a CHECK in ALTER TABLE ADD COLUMN).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MAX_LEN = 500  # server/domain/entities.py at this revision


def upgrade() -> None:
    op.execute(
        "ALTER TABLE tool_instances ADD COLUMN status_reason TEXT NOT NULL DEFAULT '' "
        f"CONSTRAINT ck_tool_instances_status_reason_max_len CHECK (length(status_reason) <= {MAX_LEN})"
    )


def downgrade() -> None:
    # In place on both engines (SQLite >= 3.35): the column's own CHECK goes with it; no table rebuild.
    op.execute("ALTER TABLE tool_instances DROP COLUMN status_reason")
