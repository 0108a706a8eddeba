"""structlog, configured once: console lines on a terminal, JSON lines otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

import msgspec
import structlog

_encoder = msgspec.json.Encoder()


def escape_line_breaks(_logger: Any, _name: str, event: dict[str, Any]) -> dict[str, Any]:
    """No value may start a new log line: CR and LF in strings are written escaped."""
    for key, value in event.items():
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            event[key] = value.replace("\r", "\\r").replace("\n", "\\n")
    return event


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    json_lines = (not sys.stderr.isatty()) if json_lines is None else json_lines
    renderer = (
        structlog.processors.JSONRenderer(serializer=lambda obj, **_: _encoder.encode(obj).decode())
        if json_lines
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info if json_lines else structlog.dev.set_exc_info,
            escape_line_breaks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
