"""Structured JSON logs: one object per line, machine ``Log`` actions included.

Every line has ``ts``, ``level``, ``logger`` and ``message``; the fields a machine
put on its ``Log`` action, and the context the shell adds (user, replica), are
merged in as top-level keys.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from model.core import Log

__all__ = ["JsonFormatter", "configure", "log_action"]

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR, "critical": logging.CRITICAL}
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object; extra attributes become keys."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a JSON line."""
        line: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO") -> None:
    """Send the ``sselab`` loggers to stderr as JSON lines at ``level``."""
    root = logging.getLogger("sselab")
    if not any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False
    logging.Formatter.converter = time.gmtime


def log_action(logger: logging.Logger, action: Log, **context: Any) -> None:
    """Write a machine's ``Log`` action with the shell's context."""
    fields = {f"f_{k}" if k in _STANDARD else k: v for k, v in action.fields}
    logger.log(_LEVELS.get(action.level, logging.INFO), action.message,
               extra={**context, **fields})
