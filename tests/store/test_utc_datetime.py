"""UtcDateTime's own SQLite bind processor writes exactly the text SQLAlchemy's DateTime would (its decorator's
processor, then the SQLite dialect's format): the store's ORDER BY and range filters compare that text, so a
different spelling of the same instant would sort wrong against rows already stored."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from server.store.tables import UtcDateTime


def _sqlalchemy_text(value: datetime) -> str:
    """What SQLAlchemy itself sends SQLite for `value`: naive UTC through the dialect's DateTime processor."""
    dialect = sqlite.dialect()
    process = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    return str(process(value.astimezone(UTC).replace(tzinfo=None)))


def _values() -> list[datetime]:
    rng = random.Random(11)
    zones = [UTC, timezone(timedelta(0)), timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
    fixed = [
        datetime(2026, 12, 2, 10, 0, 0, tzinfo=UTC),  # no microseconds: still written with six digits
        datetime(1, 1, 2, 0, 0, 0, 1, tzinfo=UTC),  # a year below 1000: four digits
        datetime(9999, 12, 31, 12, 59, 59, 999999, tzinfo=timezone(timedelta(hours=-1))),
    ]
    spread = [
        datetime(2, 1, 1, tzinfo=UTC)
        + timedelta(seconds=rng.uniform(0, 9990 * 365 * 86400), microseconds=rng.choice([0, rng.randrange(10**6)]))
        for _ in range(5000)
    ]
    return fixed + [v.astimezone(rng.choice(zones)) for v in spread]


def test_sqlite_text_is_sqlalchemys() -> None:
    process = UtcDateTime().bind_processor(sqlite.dialect())
    assert process is not None and process(None) is None
    for value in _values():
        assert process(value) == _sqlalchemy_text(value), value


def test_naive_datetimes_are_refused_and_other_engines_keep_sqlalchemys_processing() -> None:
    process = UtcDateTime().bind_processor(sqlite.dialect())
    assert process is not None
    with pytest.raises(ValueError, match="naive datetime"):
        process(datetime(2026, 1, 1))
    pg = postgresql.dialect()
    pg_process = UtcDateTime().bind_processor(pg)
    value = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    out = pg_process(value) if pg_process is not None else value
    assert out == value and out.utcoffset() == timedelta(0)


def test_stored_text_sorts_and_reads_back() -> None:
    engine = sa.create_engine("sqlite://")
    table = sa.Table("t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("at", UtcDateTime()))
    values = _values()[:500]
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(table.insert(), [{"id": i, "at": v} for i, v in enumerate(values)])
        texts = [r[0] for r in conn.exec_driver_sql("SELECT at FROM t ORDER BY id")]
        ordered = [r[0] for r in conn.execute(sa.select(table.c.at).order_by(table.c.at))]
    assert texts == [_sqlalchemy_text(v) for v in values]
    assert ordered == sorted(v.astimezone(UTC) for v in values)
