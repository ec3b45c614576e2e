"""Structured logging set-up (structlog): JSON lines or a console renderer for people, on stderr or appended to a
file (`[logging]` of the configuration)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TextIO

import structlog


def configure_logging(level: str = "INFO", *, json_lines: bool = True, file: Path | None = None) -> None:
    """`file`: append there (line-buffered, so `tail -f` sees each line at once) instead of stderr."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}; use DEBUG, INFO, WARNING or ERROR")
    stream: TextIO = sys.stderr if file is None else file.open("a", encoding="utf-8", buffering=1)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # Libraries that log through the standard library (alembic, asyncua) go to the same place at WARNING and up.
    logging.basicConfig(
        level=max(numeric, logging.WARNING),
        stream=stream,
        format="%(asctime)s %(name)s %(levelname)s %(message)s" if file else "%(name)s %(levelname)s %(message)s",
    )
