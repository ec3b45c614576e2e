"""Alembic migrations of the Smooth Edge store (one history for SQLite and PostgreSQL)."""
