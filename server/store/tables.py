"""The database schema: one SQLAlchemy Core table per entity, portable across SQLite and PostgreSQL.

Alembic migrations are generated from and checked against this metadata (tests/store/test_migrations.py).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from server.domain.entities import (
    ChangeOperation,
    ToolAssembly,
    ToolInstance,
    ToolInstanceStatus,
    ToolItem,
    ToolMeasurement,
    ToolPreset,
    ToolSet,
    ToolType,
    ToolUsage,
    User,
    UserRole,
    Versioned,
)
from server.domain.schema import fields_of

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every engine (SQLite stores them naive, in UTC, sortable text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC datetimes")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, the text SQLAlchemy's DateTime stores ('YYYY-MM-DD HH:MM:SS.ffffff', UTC) made in one step:
        its two processors (this decorator's, then the dialect's %-format of a dict) cost a collector batch more
        than its datetimes' share (issue 11). tests/store/test_utc_datetime.py holds it to SQLAlchemy's text."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the store; use timezone-aware UTC datetimes")
            if value.tzinfo is not UTC:
                value = value.astimezone(UTC)
            return value.isoformat(" ", "microseconds")[:26]

        return process


JSON = sa.JSON().with_variant(JSONB(), "postgresql")
# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid); PostgreSQL wants BIGINT.
BigSerial = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _enum(enum_cls: type[Any], name: str) -> sa.Enum:
    return sa.Enum(enum_cls, name=name, native_enum=False, create_constraint=True, length=32)


def _versioned(name: str, cls: type[Versioned], *columns: sa.Column[Any] | sa.Index | sa.Constraint) -> sa.Table:
    """A versioned entity table: id, owner, timestamps and version around the entity's own columns."""
    return sa.Table(
        name,
        metadata,
        sa.Column("id", sa.Uuid(), primary_key=True),
        *columns,
        sa.Column("owner_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("version >= 1", name="version_positive"),
        *_text_limits(cls),
        # Lists walk pages in (created_at, id) order unless told otherwise: the first page reads 50 index entries
        # instead of sorting the table (issue 11).
        sa.Index(f"ix_{name}_created_at_id", "created_at", "id"),
    )


def _text(name: str, length: int, **kw: Any) -> sa.Column[str]:
    return sa.Column(name, sa.String(length), nullable=False, **kw)


def _field_text(name: str, **kw: Any) -> sa.Column[str]:
    """An entity's text field: TEXT, its limit is a CHECK from `_text_limits` (one place, one error on both engines:
    a VARCHAR(n) would refuse first on PostgreSQL, with a different error, and SQLite ignores n)."""
    return sa.Column(name, sa.Text(), nullable=False, **kw)


def _text_limits(cls: type[Versioned]) -> list[sa.CheckConstraint]:
    """The database's copy of the text limits declared on the entity (entities.py), generated from them (issue 9):
    each text field at most `max_len` characters, a required one not blank. length() counts characters and trim()
    strips spaces on SQLite and PostgreSQL alike. Migration 0004 added them. A changed limit needs a hand-written
    migration (autogenerate does not compare CHECK constraints; tests/store/test_check_constraints.py notices)."""
    out: list[sa.CheckConstraint] = []
    for f in fields_of(cls):
        if f.kind != "text":
            continue
        if f.max_len is None:
            raise TypeError(f"{cls.__name__}.{f.name}: a text field needs max_len (entities.text)")
        out.append(sa.CheckConstraint(f"length({f.name}) <= {f.max_len}", name=f"{f.name}_max_len"))
        if f.required:
            out.append(sa.CheckConstraint(f"length(trim({f.name})) > 0", name=f"{f.name}_not_blank"))
    return out


def _fk(
    name: str, target: str, *, nullable: bool = True, ondelete: str = "RESTRICT", index: bool = True
) -> sa.Column[Any]:
    return sa.Column(name, sa.Uuid(), sa.ForeignKey(f"{target}.id", ondelete=ondelete), nullable=nullable, index=index)


def _not_null_index(table: sa.Table, column: str) -> sa.Index:
    """An index of the rows where `column` is set. For a reference most rows leave empty (an instance names a tool
    item or an assembly): a search by a value uses it, and the planner's statistics are not skewed by the NULLs
    (a plain index with mostly NULL rows looks useless to SQLite after an ANALYZE, which then scans the table)."""
    where = sa.text(f"{column} IS NOT NULL")
    return sa.Index(f"ix_{table.name}_{column}", table.c[column], sqlite_where=where, postgresql_where=where)


def _tags() -> sa.Column[Any]:
    return sa.Column("tags", JSON, nullable=False)


# Indexes that migrations create on PostgreSQL only (0012: GIN on tags), which SQLAlchemy cannot declare for one
# dialect: the schema comparison (tests/store/test_migrations.py, alembic's autogenerate) leaves them out.
POSTGRES_ONLY_INDEXES = frozenset(
    f"ix_{t}_tags_gin" for t in ("tool_items", "tool_assemblies", "tool_instances", "tool_presets", "tool_sets")
)


def include_in_comparison(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic's `include_object`: everything but the PostgreSQL-only indexes found in the database."""
    return not (type_ == "index" and reflected and compare_to is None and name in POSTGRES_ONLY_INDEXES)


users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    # Stored lower-cased by the use cases, so this unique index is case-insensitive.
    _field_text("email"),
    _field_text("display_name"),
    sa.Column("role", _enum(UserRole, "user_role"), nullable=False),
    sa.Column("is_active", sa.Boolean(), nullable=False),
    sa.Column("owner_id", sa.Uuid(), nullable=True),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    *_text_limits(User),
    sa.Index("ix_users_email", "email", unique=True),
)

tool_items = _versioned(
    "tool_items",
    ToolItem,
    _field_text("name"),
    _field_text("description"),
    _field_text("manufacturer", index=True),
    _field_text("part_number", index=True),
    sa.Column("tool_type", _enum(ToolType, "tool_type"), nullable=False, index=True),
    sa.Column("geometry", JSON, nullable=False),
    _tags(),
    # Added by migration 0008: days from a measurement until the tool is due again (0: the global default).
    sa.Column("calibration_interval_days", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("tool_life", JSON, nullable=False, server_default=sa.text("'{}'")),  # migration 0009
    sa.CheckConstraint(
        "calibration_interval_days >= 0 AND calibration_interval_days <= 36500", name="calibration_interval_days_range"
    ),
)
# The common filtered lists, in their default order (issue 11).
sa.Index("ix_tool_items_tool_type_created_at_id", tool_items.c.tool_type, tool_items.c.created_at, tool_items.c.id)

tool_assemblies = _versioned(
    "tool_assemblies",
    ToolAssembly,
    _field_text("name"),
    _field_text("description"),
    _fk("holder_id", "tool_items"),
    _fk("cutter_id", "tool_items"),
    sa.Column("assembly_data", JSON, nullable=False),
    sa.Column("tool_life", JSON, nullable=False, server_default=sa.text("'{}'")),  # migration 0009
    _tags(),
    sa.CheckConstraint("holder_id IS NOT NULL OR cutter_id IS NOT NULL", name="has_item"),
)

tool_instances = _versioned(
    "tool_instances",
    ToolInstance,
    _fk("tool_item_id", "tool_items", index=False),  # indexed below, where set
    _fk("tool_assembly_id", "tool_assemblies", index=False),
    _field_text("serial_number"),
    sa.Column("status", _enum(ToolInstanceStatus, "tool_instance_status"), nullable=False, index=True),
    _field_text("status_reason", server_default=sa.text("''")),  # added by migration 0007
    sa.Column("measurements", JSON, nullable=False),
    sa.Column("purchase_date", sa.Date()),
    sa.Column("last_calibration", UtcDateTime()),
    sa.Column("calibration_due", sa.Date()),
    _tags(),
    sa.Column("tool_life", JSON, nullable=False, server_default=sa.text("'{}'")),  # migration 0009
    sa.Column("tool_life_state", JSON, nullable=False, server_default=sa.text("'{}'")),  # migration 0009
    # Kept by the store from tool_life_state as every row is written (not entity fields; migration 0010): the
    # level (toollife.UNLIMITED..EXPIRED) and the smallest remaining / limit, so the MES queries "least life
    # first" and "at or past prewarning" are index ranges (issue 13).
    sa.Column("life_level", sa.SmallInteger(), nullable=False, server_default=sa.text("1")),
    sa.Column("life_remaining", sa.Float(), nullable=False, server_default=sa.text("1.0")),
    sa.CheckConstraint("tool_item_id IS NOT NULL OR tool_assembly_id IS NOT NULL", name="has_item"),
    sa.Index("ix_tool_instances_serial_number", "serial_number", unique=True),
)
_not_null_index(tool_instances, "tool_item_id")  # migration 0011
_not_null_index(tool_instances, "tool_assembly_id")
# MES queries (issue 13): tool life, least life first; calibration due before a date, soonest first.
# The level rides along in the index: "at or past prewarning" is decided without reading the rows.
sa.Index(
    "ix_tool_instances_life_remaining_id_life_level",
    tool_instances.c.life_remaining,
    tool_instances.c.id,
    tool_instances.c.life_level,
)
sa.Index("ix_tool_instances_calibration_due_id", tool_instances.c.calibration_due, tool_instances.c.id)
sa.Index(
    "ix_tool_instances_status_created_at_id",
    tool_instances.c.status,
    tool_instances.c.created_at,
    tool_instances.c.id,
)

tool_presets = _versioned(
    "tool_presets",
    ToolPreset,
    _field_text("name"),
    _field_text("description"),
    sa.Column("tool_instance_id", sa.Uuid(), sa.ForeignKey("tool_instances.id", ondelete="RESTRICT"), nullable=False),
    _field_text("machine_id"),
    sa.Column("parameters", JSON, nullable=False),
    sa.Column("is_default", sa.Boolean(), nullable=False),
    _tags(),
    # Serves the data model's (tool_instance_id, machine_id) index and the tool_instance_id foreign key.
    sa.Index("ix_tool_presets_tool_instance_id_machine_id", "tool_instance_id", "machine_id"),
    sa.Index("ix_tool_presets_machine_id", "machine_id"),
    # At most one default preset per instance (the rulebook refuses a second one first, with its reason).
    sa.Index(
        "uq_tool_presets_default_per_instance",
        "tool_instance_id",
        unique=True,
        sqlite_where=sa.text("is_default"),
        postgresql_where=sa.text("is_default"),
    ),
)

tool_usages = _versioned(
    "tool_usages",
    ToolUsage,
    _fk("tool_instance_id", "tool_instances", nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime()),
    _field_text("machine_id"),
    _field_text("program_name"),
    _field_text("operator"),
    sa.Column("usage_metrics", JSON, nullable=False),
    sa.Column("wear_measurements", JSON, nullable=False),
    _field_text("notes"),
    sa.CheckConstraint("end_time IS NULL OR end_time >= start_time", name="end_after_start"),
    sa.Index("ix_tool_usages_machine_id_start_time", "machine_id", "start_time"),
    # The open usages (a few: one per spindle), for "is this tool in use, and where" (migration 0011).
    sa.Index(
        "ix_tool_usages_open_tool_instance_id",
        "tool_instance_id",
        sqlite_where=sa.text("end_time IS NULL"),
        postgresql_where=sa.text("end_time IS NULL"),
    ),
    sa.Index("ix_tool_usages_start_time", "start_time"),
    sa.Index("ix_tool_usages_tool_instance_id_start_time", "tool_instance_id", "start_time"),
)

tool_sets = _versioned(
    "tool_sets",
    ToolSet,
    _field_text("name"),
    _field_text("description"),
    sa.Column("is_global", sa.Boolean(), nullable=False),
    _tags(),
)

tool_set_instances = sa.Table(
    "tool_set_instances",
    metadata,
    sa.Column("tool_set_id", sa.Uuid(), sa.ForeignKey("tool_sets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "tool_instance_id",
        sa.Uuid(),
        sa.ForeignKey("tool_instances.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
    ),
)

tool_set_presets = sa.Table(
    "tool_set_presets",
    metadata,
    sa.Column("tool_set_id", sa.Uuid(), sa.ForeignKey("tool_sets.id", ondelete="CASCADE"), primary_key=True),
    sa.Column(
        "tool_preset_id",
        sa.Uuid(),
        sa.ForeignKey("tool_presets.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
    ),
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("user_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="RESTRICT"), nullable=False, index=True),
    # The short public part of the key, used to find the row; the secret is only stored hashed.
    sa.Column("key_id", sa.String(32), nullable=False),
    sa.Column("secret_hash", sa.String(128), nullable=False),
    _text("name", 200),
    sa.Column("scopes", JSON, nullable=False),
    sa.Column("expires_at", UtcDateTime()),
    sa.Column("last_used_at", UtcDateTime()),
    sa.Column("revoked_at", UtcDateTime()),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_api_keys_key_id", "key_id", unique=True),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("occurred_at", UtcDateTime(), nullable=False, index=True),
    sa.Column("actor_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="RESTRICT"), index=True),
    sa.Column("api_key_id", sa.Uuid(), sa.ForeignKey("api_keys.id", ondelete="RESTRICT"), index=True),
    sa.Column("action", sa.String(64), nullable=False),
    _text("entity_type", 32),
    _text("entity_id", 64),
    sa.Column("entity_version", sa.Integer()),
    sa.Column("before", JSON),
    sa.Column("after", JSON),
    _text("request_id", 100),
    _text("peer", 200),
    sa.Column("outcome", sa.String(32), nullable=False),
    sa.Column("detail", sa.Text(), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_entity_type_entity_id", "entity_type", "entity_id"),
    # Never reuse a sequence number, even after the last row was deleted (tampering stays visible).
    sqlite_autoincrement=True,
)

# The append-only change log: the version history of every entity and the replication outbox.
changes = sa.Table(
    "changes",
    metadata,
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    # Groups the changes of one local transaction (replication ships them together).
    sa.Column("tx_id", sa.Uuid(), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("operation", _enum(ChangeOperation, "change_operation"), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("actor_id", sa.Uuid()),
    _text("request_id", 100),
    sa.Column("change_time", UtcDateTime(), nullable=False),
    # Set on central for changes replicated from an edge (which edge, and its sequence there); NULL = made here.
    sa.Column("origin_id", sa.Uuid()),
    sa.Column("origin_seq", sa.BigInteger()),
    sa.Index("ix_changes_entity_id_seq", "entity_id", "seq"),
    # A sequence number is never reused for a different change (replication relies on it).
    sqlite_autoincrement=True,
)

# The head of the audit hash chain (one row): the next entry's sequence and prev_hash come from here, so a
# sequence is never reused and deleting the newest entries shows as a head that points past the log.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("seq", sa.BigInteger(), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)

# Idempotency keys (AIP-155), per caller: a retried mutation with a known request_id returns the first result.
request_log = sa.Table(
    "request_log",
    metadata,
    sa.Column("caller", sa.String(64), primary_key=True),  # the user id, or "system" for in-process callers
    sa.Column("request_id", sa.String(100), primary_key=True),
    sa.Column("method", sa.String(100), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# The OPC UA collector's tracker state per machine, saved with the usage rows it produced (one transaction).
collector_state = sa.Table(
    "collector_state",
    metadata,
    sa.Column("machine_id", sa.String(100), primary_key=True),
    sa.Column("state", JSON, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Tool stays whose T number had no ToolPreset on that machine: kept until a matching preset appears.
collector_unmatched = sa.Table(
    "collector_unmatched",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),  # the usage id it will get once attached
    sa.Column("machine_id", sa.String(100), nullable=False),
    sa.Column("tool_number", sa.Integer(), nullable=False),
    sa.Column("start_time", UtcDateTime(), nullable=False),
    sa.Column("end_time", UtcDateTime()),
    sa.Column("program_name", sa.String(200), nullable=False),
    sa.Column("usage_metrics", JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_collector_unmatched_machine_id_tool_number", "machine_id", "tool_number"),
)

# Replication bookkeeping of this store, key -> value (edge: its origin_id, the last sequence central acknowledged).
replication_state = sa.Table(
    "replication_state",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", JSON, nullable=False),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Central: per edge (origin), the last edge sequence applied; updated in the transaction that applies a batch.
sync_origins = sa.Table(
    "sync_origins",
    metadata,
    sa.Column("origin_id", sa.Uuid(), primary_key=True),
    sa.Column("last_seq", sa.BigInteger(), nullable=False),
    sa.Column("schema_version", sa.String(32), nullable=False),
    # The user whose sync key first pushed for this origin: no other key may act for it.
    sa.Column("owner_id", sa.Uuid()),
    sa.Column("updated_at", UtcDateTime(), nullable=False),
)

# Central: changes an edge sent that can never be applied (kept, reported back, never blocking what follows).
sync_rejections = sa.Table(
    "sync_rejections",
    metadata,
    sa.Column("origin_id", sa.Uuid(), primary_key=True),
    sa.Column("seq", sa.BigInteger(), primary_key=True),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("data", JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
)

# Central: conflicts decided (both sides changed an entity from the same base version), with every version kept.
sync_conflicts = sa.Table(
    "sync_conflicts",
    metadata,
    sa.Column("seq", BigSerial, primary_key=True, autoincrement=True),
    sa.Column("origin_id", sa.Uuid(), nullable=False),
    sa.Column("origin_seq", sa.BigInteger(), nullable=False),
    sa.Column("entity_type", sa.String(32), nullable=False),
    sa.Column("entity_id", sa.Uuid(), nullable=False),
    sa.Column("central_version", sa.Integer(), nullable=False),
    sa.Column("edge_version", sa.Integer(), nullable=False),
    sa.Column("winner", sa.String(16), nullable=False),  # CENTRAL, EDGE or MERGED
    sa.Column("resolved_version", sa.Integer(), nullable=False),
    sa.Column("central_data", JSON, nullable=False),
    sa.Column("edge_data", JSON, nullable=False),
    sa.Column("resolved_data", JSON, nullable=False),
    sa.Column("created_at", UtcDateTime(), nullable=False),
    sa.Index("ix_sync_conflicts_entity_id", "entity_id"),
    sqlite_autoincrement=True,
)

tool_measurements = _versioned(
    "tool_measurements",
    ToolMeasurement,
    sa.Column("tool_instance_id", sa.Uuid(), sa.ForeignKey("tool_instances.id", ondelete="RESTRICT"), nullable=False),
    _field_text("measurement_id", unique=True),
    _field_text("station_id"),
    _field_text("operator"),
    sa.Column("measured_at", UtcDateTime(), nullable=False),
    sa.Column("measurements", JSON, nullable=False),
    # An instance's measurements newest first (ListMeasurements) and those around a time (wear before/after).
    sa.Index("ix_tool_measurements_instance_measured_at_id", "tool_instance_id", "measured_at", "id"),
)

ENTITY_TABLES: dict[str, sa.Table] = {
    "user": users,
    "tool_item": tool_items,
    "tool_assembly": tool_assemblies,
    "tool_instance": tool_instances,
    "tool_preset": tool_presets,
    "tool_usage": tool_usages,
    "tool_set": tool_sets,
    "tool_measurement": tool_measurements,
}

# Membership tables of a ToolSet: entity field -> (table, member column).
MEMBER_TABLES: dict[str, tuple[sa.Table, str]] = {
    "tool_instance_ids": (tool_set_instances, "tool_instance_id"),
    "tool_preset_ids": (tool_set_presets, "tool_preset_id"),
}
