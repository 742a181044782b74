"""Logging for the daemon: structlog, human-readable on a terminal, JSON under systemd; secrets redacted.

Both `structlog.get_logger()` and the standard library's `logging` (paho, our stages) go through one
handler, so every line gets the same format and the same redaction. The rule for callers: one line per
state change (camera connected, broker lost, config reloaded), never one per frame at INFO.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, TextIO

import structlog

from nvr.redact import redact_text

# Keys whose values are secrets wherever they appear in a log event.
SECRET_KEYS = frozenset(
    {"password", "passwd", "pass", "secret", "token", "api_key", "credentials", "authorization"}
)
REDACTED = "***"
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def _redact_value(key: str, value: Any) -> Any:
    if key.lower() in SECRET_KEYS or key.lower().endswith("_password"):
        return REDACTED if value else value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {k: _redact_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(key, v) for v in value]
    if isinstance(value, BaseException):
        return redact_text(str(value))
    return value


EventDict = MutableMapping[str, Any]


def redact_processor(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: redact every field (the message too), whatever its depth."""
    for key in list(event_dict):
        event_dict[key] = _redact_value(key, event_dict[key])
    return event_dict


def _redact_exception(_logger: Any, _method: str, event_dict: EventDict) -> EventDict:
    # Runs after format_exc_info: tracebacks can quote URLs from exception messages.
    if isinstance(event_dict.get("exception"), str):
        event_dict["exception"] = redact_text(event_dict["exception"])
    return event_dict


def wants_json(format_: str, stream: TextIO) -> bool:
    """auto: JSON under systemd (JOURNAL_STREAM is set) or when not on a terminal; console on a terminal."""
    if format_ != "auto":
        return format_ == "json"
    if os.environ.get("JOURNAL_STREAM"):
        return True
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def configure_logging(level: str = "info", format_: str = "auto", stream: TextIO | None = None) -> None:
    """Route structlog and stdlib logging through one redacting renderer on `stream` (stderr)."""
    out = stream if stream is not None else sys.stderr
    as_json = wants_json(format_, out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    renderer: Any
    if as_json:
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
        exception_steps: list[Any] = [structlog.processors.format_exc_info, _redact_exception]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=out.isatty() if hasattr(out, "isatty") else False)
        exception_steps = []
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *exception_steps, renderer],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS.get(level, logging.INFO))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def set_level(level: str) -> None:
    """Change the level on a reload."""
    logging.getLogger().setLevel(LEVELS.get(level, logging.INFO))
