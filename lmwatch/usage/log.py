"""The usage log: requests added up per second and group on the request path (a dict update, no
I/O), written in batches by one worker thread, and read back for reports (`lmwatch usage`,
`GET /admin/usage`).

Never the prompt: a row is one second, one group (client key name, backend, model, task, route,
API, status, cache result, local or cloud) and its sums: requests, tokens in and out, latency, time
to first token and the cloud cost avoided. Every report is a sum or a mean, so the sums answer it
exactly, and a busy proxy writes a few rows a second instead of one per request (a row per request
cost a worker thread's CPU and 100 bytes of disk for each, 80 GB a day at 10,000 requests/s). Rows
older than `usage.retention_days` are deleted at start and hourly. A write that fails (a full disk,
a locked file) is counted and logged once per failure spell; requests never wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import astuple, dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter

log = logging.getLogger("lmwatch.usage")

QUEUE_ROWS = 10_000
"""Rows (second and group) that may wait for the writer; past it a request of a new group is not
recorded (and counted), never delayed. Groups already waiting go on adding up."""
PRUNE_EVERY = 3600.0
BATCH_SECONDS = 0.2
"""How long the writer waits after a row for more, so a busy proxy commits a few times a second."""
GROUPS = {
    "model": "model",
    "backend": "backend",
    "key": "key_name",
    "task": "task",
    "day": "date(time, 'unixepoch')",
}
"""`--by` choices -> the SQL expression rows are grouped by."""


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `12h`, `7d`, `2w` -> seconds; ValueError says what is accepted."""
    unit = _UNITS.get(text[-1:].lower())
    try:
        value = float(text[:-1]) if unit else float("nan")
    except ValueError:
        value = float("nan")
    if unit is None or not value > 0:
        raise ValueError(f"since must be a number and a unit (s, m, h, d, w), like 7d (got {text!r})")
    return value * unit


Group = tuple[str, str, str, str, str, str, str, str, bool]
"""What a row adds requests up by: key name, backend, model, task, route, API, status, cache, local
(a plain tuple, made once per request)."""
GROUP_COLUMNS = ("key_name", "backend", "model", "task", "route", "api", "code", "cache", "local")
SUM_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "latency_seconds",
    "ttft_seconds",
    "ttft_requests",
    "cost_avoided_dollars",
)
"""A row's sums; `ttft_seconds` adds up the `ttft_requests` that had a first token."""
_COLUMNS = ("time", *GROUP_COLUMNS, *SUM_COLUMNS)
Row = tuple[Any, ...]
"""A row in `_COLUMNS` order: the second (an integer), the group, its sums."""


@dataclass(frozen=True)
class TaskUsage:
    """Sums over the requests of one task to one backend and model (added up over instances)."""

    requests: int
    failed: int
    latency_seconds: float
    ttft_seconds: float
    ttft_samples: int
    completion_tokens: int

    def __add__(self, other: TaskUsage) -> TaskUsage:
        return TaskUsage(*(a + b for a, b in zip(astuple(self), astuple(other), strict=True)))

    def document(self) -> dict[str, Any]:
        n = self.requests
        return {
            "requests": n,
            "failed": self.failed,
            "mean_latency_seconds": round(self.latency_seconds / n, 6) if n else None,
            "mean_ttft_seconds": round(self.ttft_seconds / self.ttft_samples, 6) if self.ttft_samples else None,
            "completion_tokens_per_second": (
                round(self.completion_tokens / self.latency_seconds, 3) if self.latency_seconds > 0 else None
            ),
        }


_CHUNKS = tuple(2**i for i in range(9, -1, -1))
"""Rows per INSERT statement: 512 (8,704 parameters, under SQLite's 32,766), then the rest by halves."""
_INSERT = {n: "INSERT INTO usage VALUES " + ",".join([f"({','.join('?' * len(_COLUMNS))})"] * n) for n in _CHUNKS}
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS usage ({", ".join(_COLUMNS)});
CREATE INDEX IF NOT EXISTS usage_time ON usage (time);
"""
_FROM_ROWS_PER_REQUEST = """
INSERT INTO usage SELECT CAST(time AS INTEGER), key_name, backend, model, task, route, api, code, cache, local,
    1, prompt_tokens, completion_tokens, latency_seconds, COALESCE(ttft_seconds, 0.0), ttft_seconds IS NOT NULL,
    cost_avoided_dollars FROM requests;
DROP TABLE requests;
"""
"""A file written by lmwatch before rows were sums (table `requests`, one row per request): its rows move."""


class UsageLog:
    def __init__(self, failures: Counter, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lmwatch-usage")
        self._db: sqlite3.Connection | None = None  # only in the worker thread
        self._path: Path | None = None
        self._retention = 0.0
        self._seconds: dict[int, dict[Group, list[Any]]] = {}
        """Sums waiting for the writer, per second and group (updated on the loop, taken whole by the writer)."""
        self._second = -1
        self._groups: dict[Group, list[Any]] = {}
        """The current second's groups (`self._seconds[self._second]`)."""
        self._rows = 0
        """Rows (second and group) waiting."""
        self._recorded = 0
        self._settled = 0
        """Requests recorded, and requests written or failed, so far: `flush` waits for the one to reach
        the other."""
        self._flushes: list[tuple[int, asyncio.Future[None]]] = []
        self._pending: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._pruned = 0.0
        self._failing = False
        self._closed = False
        self.failures = failures

    @property
    def path(self) -> Path | None:
        return self._path

    def configure(self, path: Path | None, retention_days: float) -> None:
        """Write to `path` from now on (None: record nothing); the worker opens it on first use."""
        self._retention = retention_days * 86400
        if path != self._path:
            self._path = path
            self._executor.submit(self._close_db)
        if path is not None and self._writer is None:
            self._pending = asyncio.Event()
            self._writer = asyncio.get_running_loop().create_task(self._write_loop(), name="lmwatch usage writer")

    def record(
        self, group: Group, prompt: int, completion: int, latency: float, ttft: float | None, cost: float
    ) -> None:
        """Add one finished request to its second's group; cheap (a dict update), never blocks, never raises."""
        if self._pending is None or self._path is None:
            return
        second = int(self._clock())
        if second != self._second:
            self._second = second
            self._groups = self._seconds.setdefault(second, {})
        sums = self._groups.get(group)
        if sums is None:
            if self._rows >= QUEUE_ROWS:
                self.failures.inc()
                return
            self._groups[group] = [1, prompt, completion, latency, ttft or 0.0, ttft is not None, cost]
            self._rows += 1
            if self._rows == 1:
                self._pending.set()
        else:
            sums[0] += 1
            sums[1] += prompt
            sums[2] += completion
            sums[3] += latency
            if ttft is not None:
                sums[4] += ttft
                sums[5] += 1
            sums[6] += cost
        self._recorded += 1

    async def _write_loop(self) -> None:
        assert self._pending is not None
        loop = asyncio.get_running_loop()
        while True:
            await self._pending.wait()
            await asyncio.sleep(BATCH_SECONDS)  # gather what comes meanwhile: one commit, not one per request
            self._pending.clear()
            seconds, self._seconds, self._rows = self._seconds, {}, 0
            self._second = -1  # the next request starts a new dict: the writer has this one
            requests = sum(sums[0] for groups in seconds.values() for sums in groups.values())
            try:
                await loop.run_in_executor(self._executor, self._write, seconds)
            except Exception as exc:  # disk, lock, or a bug: the rows are lost, never the writer
                self.failures.inc(requests)
                if not self._failing:
                    log.warning("usage rows cannot be written to %s (%s); requests go on", self._path, exc)
                self._failing = True
            else:
                self._failing = False
            finally:
                self._settle(requests)

    def _settle(self, count: int) -> None:
        """`count` more requests are written or failed: the flushes waiting for them return."""
        self._settled += count
        waiting = []
        for upto, done in self._flushes:
            if upto > self._settled:
                waiting.append((upto, done))
            elif not done.done():
                done.set_result(None)
        self._flushes = waiting

    async def flush(self) -> None:
        """Until every request recorded so far is written (or failed)."""
        if self._writer is None or self._settled >= self._recorded:
            return
        done = asyncio.get_running_loop().create_future()
        self._flushes.append((self._recorded, done))
        await done

    # --- the worker thread ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            assert self._path is not None
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self._path, timeout=1.0, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # WAL with NORMAL: no fsync per commit, still never a corrupt file; a power cut may
                # lose the last second of usage rows, which is not worth a disk flush per request.
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'requests'").fetchone():
                    db.executescript(f"BEGIN; {_FROM_ROWS_PER_REQUEST} COMMIT;")
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db

    def _close_db(self) -> None:
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def _write(self, seconds: dict[int, dict[Group, list[Any]]]) -> None:
        if self._path is None:  # recording was turned off (a reload): what was kept is dropped
            return
        rows = [(second, *group, *sums) for second, groups in seconds.items() for group, sums in groups.items()]
        try:
            db = self._connection()
            with db:
                _insert(db, rows)
                now = self._clock()
                if now - self._pruned > PRUNE_EVERY:
                    db.execute("DELETE FROM usage WHERE time < ?", (now - self._retention,))
                    self._pruned = now
        except sqlite3.Error:
            self._close_db()
            raise

    def _report(self, since: float, by: str) -> dict[str, Any]:
        db = self._connection()
        group = GROUPS[by]
        select = (
            f"SELECT {group} AS name, SUM(requests), SUM(prompt_tokens), SUM(completion_tokens), "
            "SUM(local * requests), SUM((cache = 'hit') * requests), SUM(cost_avoided_dollars), "
            "SUM(latency_seconds) / SUM(requests), SUM(ttft_seconds) / NULLIF(SUM(ttft_requests), 0) "
            "FROM usage WHERE time >= ?"
        )
        rows = db.execute(f"{select} GROUP BY name ORDER BY SUM(requests) DESC, name", (int(since),)).fetchall()
        totals = db.execute(select, (int(since),)).fetchone()
        return {"rows": [_row(by, r) for r in rows], "totals": _row(by, ("total", *totals[1:]))}

    async def report(self, since: float, by: str) -> dict[str, Any]:
        """Requests, tokens, local vs cloud, cache hits and dollars saved since `since`, grouped `by`.
        Raises sqlite3.Error / OSError when the file cannot be read."""
        if self._path is None:
            return {"rows": [], "totals": _row(by, ("total", 0, 0, 0, 0, 0, 0.0, None, None))}
        await self.flush()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._report, since, by)

    def _task_usage(self, since: float, task: str) -> dict[tuple[str, str], TaskUsage]:
        rows = (
            self._connection()
            .execute(
                "SELECT backend, model, SUM(requests), SUM((code != '200') * requests), SUM(latency_seconds), "
                "SUM(ttft_seconds), SUM(ttft_requests), SUM(completion_tokens) FROM usage "
                "WHERE time >= ? AND task = ? AND route != 'cache' GROUP BY backend, model",
                (int(since), task),
            )
            .fetchall()
        )
        return {
            (r[0], r[1]): TaskUsage(int(r[2]), int(r[3] or 0), r[4] or 0.0, r[5] or 0.0, r[6], r[7] or 0) for r in rows
        }

    async def task_usage(self, since: float, task: str) -> dict[tuple[str, str], TaskUsage]:
        """Per (backend, model id served): how `task` requests since `since` went there; answers
        from the cache are not counted. Raises sqlite3.Error / OSError when the file is unreadable."""
        if self._path is None:
            return {}
        await self.flush()
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._task_usage, since, task)

    async def close(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flush(), 5)
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None
            self._settle(self._recorded - self._settled)  # rows not written by now never will be
        if self._closed:  # the daemon may be stopped twice
            return
        self._closed = True
        self._path = None
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close_db)
        self._executor.shutdown(wait=False)


def _insert(db: sqlite3.Connection, rows: list[Row]) -> None:
    """Many rows per statement, in chunks of powers of two (so a handful of statements, each
    prepared once and cached). One statement is one SQLite step, one release of the GIL: with
    `executemany` the worker released and retook it for every row, and each retake waited for the
    event loop's thread to give it up; under load the writer fell behind and dropped rows."""
    done = 0
    for size in _CHUNKS:
        while len(rows) - done >= size:
            chunk = rows[done : done + size]
            db.execute(_INSERT[size], [value for row in chunk for value in row])
            done += size


def _row(by: str, values: tuple[Any, ...]) -> dict[str, Any]:
    name, requests, prompt, completion, local, hits, saved, latency, ttft = values
    requests = int(requests or 0)
    local = int(local or 0)
    return {
        by: name,
        "requests": requests,
        "prompt_tokens": int(prompt or 0),
        "completion_tokens": int(completion or 0),
        "local_requests": local,
        "cloud_requests": requests - local,
        "local_share": round(local / requests, 4) if requests else None,
        "cache_hits": int(hits or 0),
        "cost_avoided_dollars": round(float(saved or 0.0), 6),
        "mean_latency_seconds": round(latency, 6) if latency is not None else None,
        "mean_ttft_seconds": round(ttft, 6) if ttft is not None else None,
    }
