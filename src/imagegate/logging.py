"""structlog setup: readable lines on a terminal, JSON lines everywhere else."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import orjson
import structlog


def configure(level: str = "info", json: bool | None = None, *, pid: bool = False) -> None:
    """``pid``: name the process on every line (one of `--processes N`)."""
    if json is None:
        json = not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        *([_add_pid] if pid else []),
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]
    if json:  # orjson straight to bytes: a line per request must stay cheap
        processors.append(structlog.processors.JSONRenderer(serializer=orjson.dumps))
        factory: Any = structlog.BytesLoggerFactory(file=sys.stderr.buffer)
    else:
        processors.append(structlog.dev.ConsoleRenderer())
        factory = structlog.PrintLoggerFactory(file=sys.stderr)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )


def _add_pid(_logger: Any, _method: str, event: Any) -> Any:
    event["pid"] = os.getpid()
    return event
