"""text limits as CHECK constraints

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28

The database enforces the entity text limits itself (issue 9; SQLite ignores VARCHAR(n)): every entity text column
becomes TEXT with CHECK (length(col) <= max_len), and a required one CHECK (length(trim(col)) > 0), which replaces
its `col <> ''` check of 0001. server/store/tables.py generates the same constraints from the entity fields; the
limits are written out here as they are at this revision, so this migration means the same thing forever.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from server.domain.errors import FailedPrecondition

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (column, max_len, required) of each entity text field (server/domain/entities.py at this revision).
TEXT_FIELDS: dict[str, tuple[tuple[str, int, bool], ...]] = {
    "users": (("email", 254, True), ("display_name", 200, False)),
    "tool_items": (
        ("name", 200, True),
        ("description", 2000, False),
        ("manufacturer", 200, False),
        ("part_number", 100, False),
    ),
    "tool_assemblies": (("name", 200, True), ("description", 2000, False)),
    "tool_instances": (("serial_number", 100, True),),
    "tool_presets": (("name", 200, True), ("description", 2000, False), ("machine_id", 100, True)),
    "tool_usages": (
        ("machine_id", 100, False),
        ("program_name", 200, False),
        ("operator", 200, False),
        ("notes", 10000, False),
    ),
    "tool_sets": (("name", 200, True), ("description", 2000, False)),
}
# Columns that were TEXT already before this revision; the others were VARCHAR(max_len).
WERE_TEXT = {("tool_usages", "notes")}


def _checks(table: str) -> list[tuple[str, str, str, str]]:
    """(column, constraint name, condition, what a row breaking it is) of every text limit of `table`."""
    out = []
    for column, max_len, required in TEXT_FIELDS[table]:
        out.append((column, f"ck_{table}_{column}_max_len", f"length({column}) <= {max_len}", f"longer than {max_len}"))
        if required:
            out.append((column, f"ck_{table}_{column}_not_blank", f"length(trim({column})) > 0", "blank"))
    return out


def _old_type(table: str, column: str, max_len: int) -> sa.types.TypeEngine[str]:
    return sa.Text() if (table, column) in WERE_TEXT else sa.String(length=max_len)


def upgrade() -> None:
    _refuse_rows_beyond_the_limits()
    _sqlite_foreign_keys_off()
    for table, fields in TEXT_FIELDS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column, max_len, required in fields:
                if required:
                    batch_op.drop_constraint(op.f(f"ck_{table}_{column}_not_empty"), type_="check")
                if (table, column) not in WERE_TEXT:
                    batch_op.alter_column(
                        column,
                        existing_type=_old_type(table, column, max_len),
                        type_=sa.Text(),
                        existing_nullable=False,
                    )
            for _, name, condition, _ in _checks(table):
                batch_op.create_check_constraint(op.f(name), condition)
    _sqlite_foreign_keys_intact()


def downgrade() -> None:
    _sqlite_foreign_keys_off()
    for table, fields in TEXT_FIELDS.items():
        with op.batch_alter_table(table, schema=None) as batch_op:
            for _, name, _, _ in _checks(table):
                batch_op.drop_constraint(op.f(name), type_="check")
            for column, max_len, required in fields:
                if (table, column) not in WERE_TEXT:
                    batch_op.alter_column(
                        column,
                        existing_type=sa.Text(),
                        type_=_old_type(table, column, max_len),
                        existing_nullable=False,
                    )
                if required:
                    batch_op.create_check_constraint(op.f(f"ck_{table}_{column}_not_empty"), f"{column} <> ''")
    _sqlite_foreign_keys_intact()


def _refuse_rows_beyond_the_limits() -> None:
    """Name every row that breaks a limit, rather than let the first ALTER fail on an unnamed one. The API and the
    replication apply have refused such values all along, so this should find nothing."""
    conn = op.get_bind()
    problems: list[str] = []
    for table in TEXT_FIELDS:
        checks = _checks(table)
        counts = conn.execute(
            sa.text(
                "SELECT "
                + ", ".join(f"coalesce(sum(CASE WHEN {check[2]} THEN 0 ELSE 1 END), 0)" for check in checks)
                + f" FROM {table}"
            )
        ).one()
        for (column, _, condition, what), count in zip(checks, counts, strict=True):
            if count:
                found = conn.execute(sa.text(f"SELECT id FROM {table} WHERE NOT ({condition}) LIMIT 3"))
                ids = ", ".join(map(str, found.scalars()))
                problems.append(f"{table}.{column}: {count} row(s) {what} (e.g. id {ids})")
    if problems:
        raise FailedPrecondition(
            "cannot add the text limits of schema revision 0004, rows break them: "
            + "; ".join(problems)
            + ". Correct or delete those rows, then migrate again.",
            reason="ROWS_BREAK_TEXT_LIMITS",
        )


def _sqlite_foreign_keys_off() -> None:
    """SQLite adds a constraint by rebuilding the table (batch mode: copy, DROP, rename). With foreign keys on, the
    DROP first deletes every row, which cascades to tool set members and fails on RESTRICT, so they are switched
    off as SQLite's ALTER TABLE procedure prescribes. The pragma is ignored inside a transaction: end the one
    Alembic opened for this migration (nothing written yet) and open another, which still holds all of this
    migration and its version stamp. The connection is detached from the pool, so it is closed after the
    migration instead of serving with foreign keys off."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite" or not conn.exec_driver_sql("PRAGMA foreign_keys").scalar():
        return
    conn.detach()
    conn.exec_driver_sql("COMMIT")
    conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_foreign_keys_intact() -> None:
    """The rebuilt tables hold the rows they held: no reference may dangle (checked while foreign keys are off)."""
    conn = op.get_bind()
    if conn.dialect.name != "sqlite":
        return
    dangling = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
    if dangling:
        raise RuntimeError(f"rebuilding the tables left {len(dangling)} dangling references, e.g. {dangling[0]}")
