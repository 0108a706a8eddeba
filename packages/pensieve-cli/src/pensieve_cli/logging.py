"""structlog, configured once: console lines on a terminal, JSON lines otherwise
(PENSIEVE_LOG_FORMAT=console|json overrides the choice). Logging never raises, and no
renderer prints a traceback's locals (they hold request headers: the API key)."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Any, TextIO

import msgspec
import structlog
from structlog.typing import EventDict

from pensieve_core.errors import ConfigError

_encoder = msgspec.json.Encoder()
FORMATS = ("console", "json")


def escape_line_breaks(_logger: Any, _name: str, event: EventDict) -> EventDict:
    """No value may start a new log line: CR and LF in strings are written escaped."""
    for key, value in event.items():
        if isinstance(value, str) and ("\n" in value or "\r" in value):
            event[key] = value.replace("\r", "\\r").replace("\n", "\\n")
    return event


class SafeLogger:
    """Writes lines to a file, and goes quiet once the file is gone: a log line on a closed
    pipe (`pensieve start | tee log`, then Ctrl-C) must never stop a shutdown."""

    def __init__(self, file: TextIO) -> None:
        self._file = file
        self._lock = threading.Lock()
        self.broken = False

    def msg(self, message: str) -> None:
        if self.broken:
            return
        with self._lock:
            try:
                self._file.write(message + "\n")
                self._file.flush()
            except (OSError, ValueError):  # EPIPE, EBADF, or "I/O operation on closed file"
                self.broken = True

    log = debug = info = warn = warning = error = err = critical = exception = fatal = failure = msg


class SafeLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._logger = SafeLogger(file)

    def __call__(self, *_args: Any) -> SafeLogger:
        return self._logger


def wants_json(stream: TextIO) -> bool:
    chosen = os.environ.get("PENSIEVE_LOG_FORMAT", "").strip().lower()
    if chosen and chosen not in FORMATS:
        raise ConfigError(f"PENSIEVE_LOG_FORMAT must be console or json, got {chosen!r}")
    return chosen == "json" if chosen else not stream.isatty()


def configure_logging(level: str = "info", *, json_lines: bool | None = None) -> None:
    stream = sys.stderr
    json_lines = wants_json(stream) if json_lines is None else json_lines
    renderer = (
        structlog.processors.JSONRenderer(serializer=lambda obj, **_: _encoder.encode(obj).decode())
        if json_lines
        # plain_traceback: Rich's and better-exceptions' tracebacks print every frame's locals.
        else structlog.dev.ConsoleRenderer(colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # format_exc_info writes Python's own traceback text: frames and lines, no locals.
            structlog.processors.format_exc_info if json_lines else structlog.dev.set_exc_info,
            escape_line_breaks,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelNamesMapping()[level.upper()]),
        logger_factory=SafeLoggerFactory(stream),
        cache_logger_on_first_use=True,
    )
