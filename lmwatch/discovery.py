"""Where backends come from: the config file, backend files (Prometheus file_sd style), and runtime.

`BackendSources` merges the three into the one list the watcher polls:
- static: `backends:` of the config file in force;
- files: every file matched by a `backend_files` pattern, each a YAML list of backend entries with
  the schema of `backends:` (validated the same way; problems read `[1].url: ...`);
- runtime: added with `POST /admin/backends`; `DELETE /admin/backends/{name}` hides any backend.
Runtime changes are ephemeral: a reload (SIGHUP, `POST /admin/reload`) or a restart goes back to
what the files say.

`FileDiscovery` checks the files every `backend_files_interval` seconds (stat, then read only the
ones whose mtime, size or inode changed; no inotify, no extra dependency). A file that cannot be
read, parsed or validated is reported (an error log line when it turns bad, `/status`, `/admin/backends`
and `lmwatch_backend_file_valid{file}`) while the last valid version of it stays in force; a file
that was never valid contributes nothing; a deleted file's backends go away. A file naming a backend
that the config, the runtime or an earlier file (in path order) already has is an error for that
file as a whole, and it contributes nothing until the clash is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import ValidationError

from lmwatch.config import BackendConfig, validation_problems
from lmwatch.scheduling import quiet_when_cancelled

log = logging.getLogger("lmwatch.discovery")

JOB_ID = "discovery:backend_files"
MAX_FILE_BYTES = 1024 * 1024


@dataclass
class BackendFile:
    """What is known about one matched file."""

    path: str
    signature: tuple[int, int, int] | None = None
    """(mtime_ns, size, inode) when last read."""
    good: tuple[BackendConfig, ...] | None = None
    """The last valid contents (None: never valid)."""
    problems: tuple[str, ...] = ()
    """Why the current contents are not used (empty when they are)."""
    clash: str = ""
    """Set when its names clash with another source (the file is then not used at all)."""

    @property
    def valid(self) -> bool:
        return not self.problems and not self.clash

    def document(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "valid": self.valid,
            "problems": [*self.problems, *([self.clash] if self.clash else [])],
            "backends": [b.name for b in self.good or ()] if not self.clash else [],
        }


@dataclass
class BackendSources:
    """The three sources of backends and their merge. Runs on the event loop only."""

    static: tuple[BackendConfig, ...] = ()
    files: dict[str, BackendFile] = field(default_factory=dict)
    runtime: dict[str, BackendConfig] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)
    origins: dict[str, str] = field(default_factory=dict)
    """Backend name -> `config`, `runtime` or `file:<path>`, as of the last merge."""

    def effective(self) -> list[BackendConfig]:
        """Static, then files in path order, then runtime; also marks clashing files."""
        out: list[BackendConfig] = []
        origins: dict[str, str] = {}
        hidden = self.removed | set(self.runtime)
        for backend in self.static:
            if backend.name not in hidden:
                out.append(backend)
                origins[backend.name] = "config"
        reserved = {b.name for b in self.static} | set(self.runtime)
        for path in sorted(self.files):
            file = self.files[path]
            file.clash = ""
            entries = file.good or ()
            clashes = sorted({b.name for b in entries if b.name in reserved})
            if clashes:
                owners = ", ".join(
                    f"{n} ({origins.get(n) or ('runtime' if n in self.runtime else 'config')})" for n in clashes
                )
                file.clash = f"backend name(s) already in use: {owners}; this file is ignored until that changes"
                continue
            for backend in entries:
                reserved.add(backend.name)
                if backend.name not in hidden:
                    out.append(backend)
                    origins[backend.name] = f"file:{path}"
        for name, backend in self.runtime.items():
            out.append(backend)
            origins[name] = "runtime"
        self.origins = origins
        return out

    def reset_runtime(self) -> None:
        self.runtime.clear()
        self.removed.clear()


def parse_backend_file(text: str) -> tuple[tuple[BackendConfig, ...], list[str]]:
    """A backend file's entries, or the `[i].key: message` problems that make it unusable."""
    try:
        raw = yaml.safe_load(text) if text.strip() else []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        return (), [f"{where}invalid YAML: {getattr(exc, 'problem', None) or exc}"]
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        return (), [
            f"(top level): must be a list of backend entries (like `backends:` in the config), got {type(raw).__name__}"
        ]
    entries: list[BackendConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        try:
            backend = BackendConfig.model_validate(item)
        except ValidationError as exc:
            problems += validation_problems(exc, (i,))
            continue
        if backend.name in seen:
            problems.append(f"[{i}].name: backend name {backend.name!r} is used twice in this file")
        seen.add(backend.name)
        entries.append(backend)
    return (tuple(entries), []) if not problems else ((), problems)


@dataclass(frozen=True)
class _Read:
    signature: tuple[int, int, int]
    entries: tuple[BackendConfig, ...]
    problems: tuple[str, ...]


class FileDiscovery:
    """Watches `backend_files` and updates `sources.files`; calls `on_change` when backends changed."""

    def __init__(self, sources: BackendSources, scheduler: AsyncIOScheduler, on_change: Callable[[], None]) -> None:
        self._sources = sources
        self._scheduler = scheduler
        self._on_change = on_change
        self.patterns: tuple[str, ...] = ()
        self.interval = 5.0
        self._lock = asyncio.Lock()

    def configure(self, patterns: Sequence[str], interval: float, base: Path | None) -> None:
        """Set the patterns (relative ones are relative to the config file's directory)."""
        root = base or Path.cwd()
        self.patterns = tuple(str(root / os.path.expanduser(p)) for p in patterns)
        self.interval = interval

    def schedule(self) -> None:
        self.unschedule()
        if not self.patterns:
            return
        self._scheduler.add_job(
            quiet_when_cancelled(self.scan),
            "interval",
            seconds=self.interval,
            id=JOB_ID,
            name="backend files",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now().astimezone() + timedelta(seconds=self.interval),
        )

    def unschedule(self) -> None:
        with contextlib.suppress(JobLookupError):
            self._scheduler.remove_job(JOB_ID)

    async def scan(self, notify: bool = True) -> bool:
        """Check every file now; True when the merged backends may have changed."""
        async with self._lock:
            known = {path: f.signature for path, f in self._sources.files.items()}
            reads = await asyncio.to_thread(_scan, self.patterns, known)
            changed = self._merge(reads)
        if changed and notify:
            self._on_change()
        return changed

    def _merge(self, reads: dict[str, _Read | None]) -> bool:
        files = self._sources.files
        changed = False
        for path in list(files):
            if path not in reads:
                log.info("backend file %s is gone; its backends are removed", path)
                del files[path]
                changed = True
        for path, read in reads.items():
            if read is None:  # unchanged since the last read
                continue
            file = files.setdefault(path, BackendFile(path))
            was_valid = file.signature is None or not file.problems
            file.signature = read.signature
            if read.problems:
                if read.problems != file.problems:
                    kept = "its last valid version stays in force" if file.good is not None else "it is ignored"
                    for problem in read.problems:
                        log.error(
                            "backend file %s: %s", path, problem, extra={"event": "backend_file_invalid", "file": path}
                        )
                    log.error("backend file %s has %d problem(s); %s", path, len(read.problems), kept)
                file.problems = read.problems
                continue
            if not was_valid:
                log.info("backend file %s is valid again", path, extra={"event": "backend_file_valid", "file": path})
            file.problems = ()
            if file.good != read.entries:
                file.good = read.entries
                changed = True
        return changed


def _scan(patterns: Sequence[str], known: dict[str, tuple[int, int, int] | None]) -> dict[str, _Read | None]:
    """In a thread: expand the patterns, stat every match, read the new or changed ones."""
    out: dict[str, _Read | None] = {}
    for pattern in patterns:
        for path in sorted(glob.glob(pattern)):
            if path in out:
                continue
            try:
                st = os.stat(path)
            except OSError:
                continue  # vanished between glob and stat: gone
            if not stat.S_ISREG(st.st_mode):
                continue
            signature = (st.st_mtime_ns, st.st_size, st.st_ino)
            if known.get(path) == signature:
                out[path] = None
                continue
            if st.st_size > MAX_FILE_BYTES:
                out[path] = _Read(signature, (), (f"(file): larger than {MAX_FILE_BYTES} bytes",))
                continue
            try:
                text = Path(path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                out[path] = _Read(signature, (), (f"(file): cannot read: {getattr(exc, 'strerror', None) or exc}",))
                continue
            entries, problems = parse_backend_file(text)
            out[path] = _Read(signature, entries, tuple(problems))
    return out
