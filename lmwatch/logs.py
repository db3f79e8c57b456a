"""Logging: human-readable lines by default, JSON lines on request, secrets always redacted.

Structured context goes in `extra={...}` (event, backend, model, ...); the JSON format writes it as
fields, the text format relies on the message saying it. The redaction filter replaces every known secret (backend
tokens, cloud keys, admin token) wherever it appears in a message, an argument or a traceback.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import quote

REDACTED = "***"
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
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class RedactingFilter(logging.Filter):
    """Replaces secrets in the final message; attached to the handler so every logger is covered."""

    secrets: ClassVar[set[str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
            record.exc_text = None
        record.msg = redact(message)
        record.args = None
        for key, value in _context(record).items():
            if isinstance(value, str):
                setattr(record, key, redact(value))
        return True


_USERINFO = re.compile(r"(?<=://)[^@\s'\"<>]+@")
"""`user:password@` after a scheme: a URL that was never accepted has no registered password."""


def redact(text: str) -> str:
    """`text` without any registered secret and without URL userinfo."""
    for secret in RedactingFilter.secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "@" in text:
        text = _USERINFO.sub(REDACTED + "@", text)
    return text


def secret_forms(secret: str) -> Iterator[str]:
    """The ways a secret can be echoed: as read, percent-encoded (in a URL) and base64-encoded
    (inside `Basic ...`), the last without its `=` padding so a trimmed echo matches too."""
    yield secret
    yield quote(secret, safe="")
    yield base64.b64encode(secret.encode()).decode("ascii").rstrip("=")


def basic_credentials(user: str, password: str) -> str:
    """The base64 part of the `Basic` header lmwatch sends for `user:password@` in a URL."""
    return base64.b64encode(f"{user}:{password}".encode("latin-1", "replace")).decode("ascii").rstrip("=")


def register_secrets(secrets: Iterable[str]) -> None:
    """Add secrets to redact, in every form they can be echoed (called the moment a secret is read;
    strings under 6 characters are ignored: they would redact ordinary words)."""
    RedactingFilter.secrets.update(form for s in secrets if len(s) >= 6 for form in secret_forms(s) if len(form) >= 6)


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
