"""The embedded store: one SQLite file (WAL), used from one worker thread so the event loop never blocks.

Two things are kept in memory (read once at open) so the request path stays cheap:

- the hashes of the stored keys, so a lookup whose keys are all absent — a certain miss — is
  answered on the event loop, without the thread hop and the SELECT. The index is changed only
  where the table is (in the worker thread, as each write commits). It may say "present" for an
  entry that expired: that costs the lookup, which then misses. It is one process's: a second
  process writing the same file is not seen (replicas share Redis, not one SQLite file).
- the last-use times lookups noted, so a hit is a read and never waits for a write transaction;
  they are written with the next batch of answers, by `flush`, or at close (a crash loses only
  their recency, which decides only which entry is evicted first).

The total size of the values is kept in memory too, so the size bound costs no query per write;
past it the least recently used entries go, expired ones first. An expired entry is replaced by
the next answer to its request, or deleted when a write needs room. The semantic cache's prompt
vectors live in a table of their own, at most `limit` per scope (model and parameters), expired
ones deleted at each addition. Every sqlite3 or OS error (corrupt or locked file, full disk)
becomes `CacheError`; the connection is then closed and reopened on the next operation.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from lmwatch.cache import CacheError, Stored

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY, value BLOB NOT NULL, size INTEGER NOT NULL, expires REAL NOT NULL, used REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_used ON entries (used);
CREATE TABLE IF NOT EXISTS vectors (
    scope TEXT NOT NULL, key TEXT NOT NULL, vector BLOB NOT NULL, expires REAL NOT NULL, added REAL NOT NULL,
    PRIMARY KEY (scope, key)
);
CREATE INDEX IF NOT EXISTS vectors_expires ON vectors (expires);
"""
EVICT_BATCH = 64


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, max_bytes: int, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="lmwatch-cache")
        # written only in the worker thread; `_index` is read on the event loop too (a set's `in`
        # and `add` are atomic), and is None while the file is not open
        self._db: sqlite3.Connection | None = None
        self._size = 0
        self._index: set[int] | None = None
        self._used: dict[str, float] = {}

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._in_thread, work)

    def _in_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        try:
            db = self._db or self._open()
            with db:
                return work(db)
        except (sqlite3.Error, OSError) as exc:
            self._drop()
            raise CacheError(f"sqlite cache {self.path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=0.05, check_same_thread=False)
        try:
            db.execute("PRAGMA journal_mode=WAL")  # outside a transaction: nothing is open yet
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            index, size = set(), 0
            for key, value_size in db.execute("SELECT key, size FROM entries"):
                index.add(hash(key))
                size += value_size
        except BaseException:
            db.close()
            raise
        self._db, self._size, self._index = db, size, index
        return db

    def _drop(self) -> None:
        self._index = None
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    async def open(self) -> None:
        await self._run(lambda db: None)  # `_in_thread` opens the file and loads the index

    def may_hold(self, keys: Sequence[str]) -> bool:
        index = self._index
        return index is None or any(hash(k) in index for k in keys)

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        index = self._index
        wanted = keys if index is None else [k for k in keys if hash(k) in index]
        if not wanted:
            return [None] * len(keys)  # a certain miss: no thread hop, no query
        now = self._clock()

        def work(db: sqlite3.Connection) -> dict[str, bytes]:
            found: dict[str, bytes] = {}
            for start in range(0, len(wanted), 500):
                part = wanted[start : start + 500]
                marks = ",".join("?" * len(part))
                for key, value, expires in db.execute(
                    f"SELECT key, value, expires FROM entries WHERE key IN ({marks})", part
                ):
                    if expires > now:
                        found[key] = value
                        self._used[key] = now
            return found

        found = await self._run(work)
        return [found.get(k) for k in keys]

    async def flush(self) -> None:
        if self._used:
            await self._run(self._write_used)

    def _write_used(self, db: sqlite3.Connection) -> None:
        if self._used:
            used, self._used = self._used, {}
            db.executemany("UPDATE entries SET used = ? WHERE key = ?", [(t, k) for k, t in used.items()])

    async def put_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> Stored:
        now = self._clock()

        def work(db: sqlite3.Connection) -> Stored:
            self._write_used(db)  # recency first: eviction below goes by it
            keys = [k for k, _ in items]
            # replaced entries leave the size total first; a key the index lacks is new and needs no
            # DELETE (REPLACE still keeps a row another process wrote meanwhile from failing the batch)
            index = self._index
            self._delete(db, keys if index is None else [k for k in keys if hash(k) in index])
            db.executemany(
                "INSERT OR REPLACE INTO entries (key, value, size, expires, used) VALUES (?, ?, ?, ?, ?)",
                [(k, v, len(v), now + ttl, now) for k, v in items],
            )
            self._size += sum(len(v) for _, v in items)
            if self._index is not None:
                self._index.update(hash(k) for k in keys)
            evicted = 0
            if self._size > self.max_bytes:
                evicted += self._delete_where(db, "expires <= ?", (now,))
            while self._size > self.max_bytes:
                rows = db.execute("SELECT key, size FROM entries ORDER BY used LIMIT ?", (EVICT_BATCH,)).fetchall()
                if not rows:
                    break
                victims, freed = [], 0
                for key, size in rows:
                    victims.append(key)
                    freed += size
                    if self._size - freed <= self.max_bytes:
                        break
                evicted += self._delete(db, victims)
            return Stored(evicted, self._size)

        return await self._run(work)

    async def vectors(self, scope: str) -> list[tuple[str, bytes]]:
        now = self._clock()

        def work(db: sqlite3.Connection) -> list[tuple[str, bytes]]:
            rows = db.execute("SELECT key, vector FROM vectors WHERE scope = ? AND expires > ?", (scope, now))
            return [(key, vector) for key, vector in rows]

        return await self._run(work)

    async def add_vector(self, scope: str, key: str, vector: bytes, ttl: float, limit: int) -> None:
        now = self._clock()

        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM vectors WHERE expires <= ?", (now,))
            db.execute("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?)", (scope, key, vector, now + ttl, now))
            db.execute(
                "DELETE FROM vectors WHERE scope = ? AND key NOT IN "
                "(SELECT key FROM vectors WHERE scope = ? ORDER BY added DESC LIMIT ?)",
                (scope, scope, limit),
            )

        await self._run(work)

    def _delete(self, db: sqlite3.Connection, keys: Sequence[str]) -> int:
        deleted = 0
        for start in range(0, len(keys), 500):
            part = keys[start : start + 500]
            deleted += self._delete_where(db, f"key IN ({','.join('?' * len(part))})", part)
        return deleted

    def _delete_where(self, db: sqlite3.Connection, where: str, args: Sequence[object]) -> int:
        rows = db.execute(f"DELETE FROM entries WHERE {where} RETURNING key, size", args).fetchall()
        for key, size in rows:
            self._size -= size
            if self._index is not None:
                self._index.discard(hash(key))
        return len(rows)

    async def close(self) -> None:
        with contextlib.suppress(CacheError):  # the last-use times are worth a try, not a failed close
            await self.flush()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._drop)
        self._executor.shutdown(wait=False)
