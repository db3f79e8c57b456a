"""The audit log: one JSON line per control action and, when enabled, per `/v1` request.

Lines are written by one background thread, in order, so the event loop never waits on the disk;
a control action awaits its line before answering, so what an operator was told happened is on
disk. Every string passes through the owning daemon's Redactor first, so a secret of its config
(admin token, client key, backend token) never reaches the file. `reopen()` (on SIGHUP) starts a new file at the
same path after logrotate moved the old one. Nothing is sent anywhere: the file stays on the host.
Request lines wait in a bounded queue: past `MAX_QUEUED` lines not yet written (a disk that cannot
keep up) new request lines are dropped and counted as failures, so memory stays bounded; control
lines are never dropped.

A control line: `{"time", "kind": "control", "actor", "remote", "action", "target", "result", ...}`.
A request line: `{"time", "kind": "request", "key", "remote", "method", "path", "status",
"duration_seconds", "request_id", "model", "backend", "task", "prompt_tokens", "completion_tokens"[, "prompt"]}`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lmwatch.redaction import Redactor

log = logging.getLogger("lmwatch.audit")

FILE_MODE = 0o600
MAX_QUEUED = 10_000
"""Request lines queued but not written yet, past which new request lines are dropped."""
MAX_STRING_CHARS = 4096
"""Longest string a line carries (a caller-chosen path, a prompt message); the rest is cut."""
_SECRET_MARGIN = 512
"""Characters past the cut that are redacted with the rest: no secret is this long."""
REFUSAL_INTERVAL = 60.0
"""Refused `/admin` calls from one source: the first is written at once, the others of the interval
as one line with their count when it ends."""
MAX_REFUSAL_SOURCES = 1024
"""Sources counted apart per interval; past it the others share one `remote: "(other)"` line."""


def _clean(value: Any, redact: Callable[[str], str]) -> Any:
    """JSON-able `value` with every string redacted and cut (redacted first: no cut leaves half a secret)."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, redact) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    text = value if isinstance(value, str) else str(value)
    if len(text) <= MAX_STRING_CHARS:
        return redact(text)
    kept = redact(text[: MAX_STRING_CHARS + _SECRET_MARGIN])[:MAX_STRING_CHARS]  # a secret across the cut goes whole
    return f"{kept}...({len(text) - MAX_STRING_CHARS} more characters)"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Append-only JSON lines. Disabled (every call a no-op) until `configure()` gives it a path."""

    def __init__(self, redactor: Redactor) -> None:
        self.redactor = redactor
        """The secrets of the daemon that owns this log."""
        self.path: Path | None = None
        self.requests = False
        """Write request lines (`audit.requests`)."""
        self.prompts = False
        """Include prompt content in request lines (`audit.prompts`)."""
        self._file: IO[str] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._queued = 0
        """Lines handed to the writer thread (counted on the event loop only)."""
        self._done = 0
        """Lines the writer thread finished (counted there only; `_queued - _done` are waiting)."""
        self._write_failures = 0
        self._dropped = 0
        self._overflowing = False
        self._refusals: dict[str, dict[str, Any]] = {}
        """Per source: the refusals of this interval after its first (written when it ends)."""
        self._refusal_timer: asyncio.TimerHandle | None = None

    @property
    def failures(self) -> int:
        """Lines that could not be written (the disk is full, the directory vanished) or were dropped."""
        return self._write_failures + self._dropped

    @property
    def enabled(self) -> bool:
        return self._executor is not None and self.path is not None

    def configure(self, path: Path | None, requests: bool = False, prompts: bool = False) -> None:
        """Write to `path` (None: disabled). The file and its directory are created at the first
        line, so a daemon nobody administers leaves no file behind."""
        self.requests = path is not None and requests
        self.prompts = path is not None and prompts
        if path is None:
            self.path = None
            if self._executor is not None:
                self._executor.submit(self._swap, None)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lmwatch-audit")
        if path != self.path:
            self.path = path
            self._executor.submit(self._swap, None)

    def reopen(self) -> None:
        """Start a fresh file at the same path with the next line (logrotate moved the old one away)."""
        if self._executor is not None:
            self._executor.submit(self._swap, None)

    async def close(self) -> None:
        self.flush_refusals()
        executor, self._executor = self._executor, None
        if executor is None:
            return
        executor.submit(self._swap, None)
        await asyncio.to_thread(executor.shutdown, True)

    # --- writing ---------------------------------------------------------------------------------

    def record(self, entry: Mapping[str, Any]) -> Future[None] | None:
        """Queue one line (with `time` added); returns the future of its write, None when disabled."""
        if self._executor is None or self.path is None:
            return None
        line = json.dumps(
            _clean({"time": now_iso(), **entry}, self.redactor.redact), separators=(",", ":"), default=str
        )
        self._queued += 1
        return self._executor.submit(self._write, self.path, line)

    async def control(
        self,
        *,
        actor: str,
        action: str,
        target: str | None,
        result: str,
        remote: str | None = None,
        **detail: Any,
    ) -> None:
        """Write a control action's line and wait until it is on disk (or failed, which is logged)."""
        entry = {
            "kind": "control",
            "actor": actor,
            "remote": remote,
            "action": action,
            "target": target,
            "result": result,
            **detail,
        }
        future = self.record(entry)
        if future is not None:
            await asyncio.wrap_future(future)

    def refusal(self, remote: str | None, target: str, code: str | None) -> None:
        """A refused `/admin` call. Anyone can make these, as fast as they like: per source, the first
        of each REFUSAL_INTERVAL is written at once and the rest as one line with a count, so the
        log grows by at most MAX_REFUSAL_SOURCES + 1 lines of bounded size per interval."""
        if self._executor is None or self.path is None:
            return
        source = remote or "unknown"
        if source not in self._refusals and len(self._refusals) >= MAX_REFUSAL_SOURCES:
            source = "(other)"
        pending = self._refusals.get(source)
        if pending is None:
            self._refusals[source] = {"count": 0, "last_target": None, "code": code}
            self.record(_refused(source, target, code))
            if self._refusal_timer is None:
                loop = asyncio.get_running_loop()
                self._refusal_timer = loop.call_later(REFUSAL_INTERVAL, self.flush_refusals)
            return
        pending["count"] += 1
        pending["last_target"] = target
        pending["code"] = code

    def flush_refusals(self) -> None:
        """Write the counted refusals of the interval (at its end, and at close)."""
        if self._refusal_timer is not None:
            self._refusal_timer.cancel()
            self._refusal_timer = None
        pending, self._refusals = self._refusals, {}
        for source, seen in pending.items():
            if seen["count"]:
                self.record({**_refused(source, seen["last_target"], seen["code"]), "count": seen["count"]})

    def request(self, entry: Mapping[str, Any]) -> None:
        """Queue a request line (only when `audit.requests` is on); the prompt only with `audit.prompts`."""
        if not self.requests:
            return
        if self._queued - self._done >= MAX_QUEUED:
            if not self._overflowing:
                log.error("audit log %s cannot keep up: request lines are dropped until it does", self.path)
                self._overflowing = True
            self._dropped += 1
            return
        self._overflowing = False
        line = {"kind": "request", **{k: v for k, v in entry.items() if k != "prompt"}}
        if self.prompts and entry.get("prompt") is not None:
            line["prompt"] = entry["prompt"]
        self.record(line)

    async def flush(self) -> None:
        """Wait until every queued line is written (tests, shutdown)."""
        if self._executor is not None:
            await asyncio.wrap_future(self._executor.submit(lambda: None))

    # --- the writer thread -----------------------------------------------------------------------

    def _swap(self, handle: IO[str] | None) -> None:
        old, self._file = self._file, handle
        if old is not None:
            old.close()

    def _write(self, path: Path, line: str) -> None:
        """Append `line`, opening `path` (the path in force when the line was queued) if no file is open."""
        try:
            if self._file is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._file = _open(path)
            self._file.write(line + "\n")
            self._file.flush()
        except OSError as exc:
            self._write_failures += 1
            log.error("audit line not written to %s: %s", path, exc)
        finally:
            self._done += 1


def _refused(remote: str, target: str, code: str | None) -> dict[str, Any]:
    return {
        "kind": "control",
        "actor": "unauthenticated",
        "remote": remote,
        "action": "authenticate",
        "target": target,
        "result": "denied",
        "code": code,
    }


def _open(path: Path) -> IO[str]:
    """Append mode, created 0600 (an audit log says who did what; it is nobody else's business)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")
