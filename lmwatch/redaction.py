"""The secrets one running config can reach, and text with every one of them replaced by `***`.

A `Redactor` belongs to whoever owns a config: the daemon (`ConfigHolder.redactor`, given to the
log filter, the audit log, the control plane and the HTTP edge), a backend client (its own URL
password and token), a CLI command that loads a config without a daemon. Nothing is process-wide:
two daemons in one process redact their own secrets, and a reload replaces the set, so a removed
client key or backend stops costing a scan of every line.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from urllib.parse import quote

REDACTED = "***"
MIN_REDACTED_CHARS = 6
"""Shorter strings would redact ordinary words."""

_USERINFO = re.compile(r"(?<=://)[^@\s'\"<>]+@")
"""`user:password@` after a scheme: a URL that was never accepted has no known password."""


def strip_userinfo(text: str) -> str:
    """`text` without URL userinfo: what can be redacted before any secret is known (a config
    being parsed, an error raised far from its owner)."""
    return _USERINFO.sub(REDACTED + "@", text) if "@" in text else text


def secret_forms(secret: str) -> Iterator[str]:
    """The ways a secret can be echoed: as read, percent-encoded (in a URL) and base64-encoded
    (inside `Basic ...`), the last without its `=` padding so a trimmed echo matches too."""
    yield secret
    yield quote(secret, safe="")
    yield base64.b64encode(secret.encode()).decode("ascii").rstrip("=")


def basic_credentials(user: str, password: str) -> str:
    """The base64 part of the `Basic` header lmwatch sends for `user:password@` in a URL."""
    return base64.b64encode(f"{user}:{password}".encode("latin-1", "replace")).decode("ascii").rstrip("=")


def _forms(secrets: Iterable[str]) -> frozenset[str]:
    long_enough = (s for s in secrets if len(s) >= MIN_REDACTED_CHARS)
    return frozenset(form for s in long_enough for form in secret_forms(s) if len(form) >= MIN_REDACTED_CHARS)


class Redactor:
    """The secrets of the running config and those learnt since (a rotated token, a backend added
    at runtime), in every form `secret_forms` makes.

    `replace()` (a config applied) starts a new set and keeps the previous one for one more
    generation: a request still running on the old config may echo an old secret after the reload.
    The sets are frozen and swapped whole (never mutated in place), so a line redacted in a thread
    while the event loop learns a secret sees one set or the other."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._current = _forms(secrets)
        self._previous: frozenset[str] = frozenset()
        self._longest_first = self._order()

    def _order(self) -> tuple[str, ...]:
        """Longest first: a secret inside another's form is replaced after the longer one."""
        return tuple(sorted(self._current | self._previous, key=len, reverse=True))

    def add(self, secrets: Iterable[str]) -> None:
        """Learn more secrets of the running config (called the moment a secret is read)."""
        new = _forms(secrets) - self._current
        if new:
            self._current |= new
            self._longest_first = self._order()

    def replace(self, secrets: Iterable[str]) -> None:
        """The secrets of a newly applied config; the previous config's are kept one generation."""
        self._previous, self._current = self._current, _forms(secrets)
        self._longest_first = self._order()

    def __contains__(self, text: object) -> bool:
        return text in self._current or text in self._previous

    def redact(self, text: str) -> str:
        """`text` without any known secret and without URL userinfo."""
        for secret in self._longest_first:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return strip_userinfo(text)
