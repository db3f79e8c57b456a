"""Logging: human-readable lines by default, JSON lines on request, secrets always redacted.

Structured context goes in `extra={...}` (event, backend, model, ...); the JSON format writes it as
fields, the text format relies on the message saying it. The redaction filter replaces every secret its Redactor
knows (backend tokens, cloud keys, admin token, client keys) wherever it appears in a message, an argument or a
traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from lmwatch.redaction import Redactor

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_context(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # its own field, so a log search on `message` is not a traceback search
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str)


class RedactingFilter(logging.Filter):
    """Replaces the secrets its Redactor knows in the final message and the traceback (kept as the
    record's `exc_text`, which both formats write after it); attached to the handler so every logger
    is covered."""

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self.redactor.redact
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in _context(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


def setup_logging(redactor: Redactor, level: str = "info", fmt: str = "text") -> None:
    """Log to stderr through `redactor`: the one of the daemon (or command) that owns the config."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter(redactor))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
