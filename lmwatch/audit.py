"""The audit log: one JSON line per control action and, when enabled, per `/v1` request.

Lines are written by one background thread, in order, so the event loop never waits on the disk;
a control action awaits its line before answering, so what an operator was told happened is on
disk. Every string passes through the log redaction first, so a registered secret (admin token,
client key, backend token) never reaches the file. `reopen()` (on SIGHUP) starts a new file at the
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
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from lmwatch.logs import redact

log = logging.getLogger("lmwatch.audit")

FILE_MODE = 0o600
MAX_QUEUED = 10_000
"""Request lines queued but not written yet, past which new request lines are dropped."""


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class AuditLog:
    """Append-only JSON lines. Disabled (every call a no-op) until `configure()` gives it a path."""

    def __init__(self) -> None:
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
        line = json.dumps(_clean({"time": now_iso(), **entry}), separators=(",", ":"), default=str)
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


def _open(path: Path) -> IO[str]:
    """Append mode, created 0600 (an audit log says who did what; it is nobody else's business)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
    return os.fdopen(fd, "a", encoding="utf-8")
