"""The SQLite store on a real file: time to live, the size bound, restarts, the in-memory key index and
last-use times, and failures as CacheError."""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from lmwatch.cache import CacheError
from lmwatch.cache.sqlite_store import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_values_expire_after_their_ttl(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "c.sqlite", 1 << 20, clock)
    try:
        await store.put_many([("a", b"1"), ("b", b"2")], ttl=10)
        assert await store.get_many(["a", "b", "c"]) == [b"1", b"2", None]
        clock.now += 10
        assert await store.get_many(["a"]) == [None]
    finally:
        await store.close()


async def test_the_least_recently_used_go_past_the_size_bound(tmp_path: Path) -> None:
    clock = Clock()
    store = SqliteStore(tmp_path / "c.sqlite", 3000, clock)
    try:
        for name in "abc":
            clock.now += 1
            await store.put_many([(name, b"x" * 1000)], ttl=100)
        clock.now += 1
        assert await store.get_many(["a"]) == [b"x" * 1000]  # `a` is now newer than `b` (noted, not yet written)
        clock.now += 1
        stored = await store.put_many([("d", b"y" * 1000)], ttl=100)
        assert (stored.evicted, stored.size_bytes) == (1, 3000)
        assert [v is not None for v in await store.get_many(["a", "b", "c", "d"])] == [True, False, True, True]
        replaced = await store.put_many([("d", b"z" * 10)], ttl=100)
        assert (replaced.evicted, replaced.size_bytes) == (0, 2010)
    finally:
        await store.close()


async def test_entries_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "c.sqlite"
    first = SqliteStore(path, 1 << 20)
    await first.put_many([("k", b"kept")], ttl=3600)
    await first.close()
    second = SqliteStore(path, 1 << 20)
    try:
        assert await second.get_many(["k"]) == [b"kept"]
        assert (await second.put_many([("j", b"1")], ttl=1)).size_bytes == 5  # the size total is read back
    finally:
        await second.close()


async def test_an_unusable_file_raises_cache_error(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"garbage" * 1000)
    store = SqliteStore(path, 1 << 20)
    try:
        with pytest.raises(CacheError, match="not a database"):
            await store.get_many(["k"])
        path.unlink()  # repaired (here: removed); the next operation opens it afresh
        assert await store.get_many(["k"]) == [None]
    finally:
        await store.close()


async def test_a_certain_miss_does_not_reach_the_worker_thread(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "c.sqlite", 3000)
    try:
        await store.put_many([("a", b"x" * 1000)], ttl=100)  # opens the file: the index is loaded
        store._executor.shutdown(wait=True)  # any lookup that still hopped to the thread would raise now
        assert await store.get_many(["b", "c"]) == [None, None]
    finally:
        store._executor = ThreadPoolExecutor(1)
        await store.close()


async def fill(store: SqliteStore, clock: Clock, names: str) -> None:
    """1,000 bytes under each name, one second apart."""
    for name in names:
        clock.now += 1
        await store.put_many([(name, b"x" * 1000)], ttl=100)


async def test_the_key_index_follows_writes_evictions_and_other_restarts(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "c.sqlite"
    store = SqliteStore(path, 2000, clock)
    try:
        await fill(store, clock, "abc")  # `a` is evicted by `c`
        assert [store.may_hold([k]) for k in "abc"] == [False, True, True]
        assert await store.get_many(["a", "b", "c"]) == [None, b"x" * 1000, b"x" * 1000]
    finally:
        await store.close()
    with sqlite3.connect(path) as db:  # what is in the file when the store opens is in the index
        db.execute("INSERT INTO entries VALUES ('d', x'31', 1, ?, ?)", (clock.now + 100, clock.now))
    again = SqliteStore(path, 2000, clock)
    try:
        assert await again.get_many(["d"]) == [b"1"]
        assert [again.may_hold([k]) for k in "abcd"] == [False, True, True, True]
    finally:
        await again.close()


async def test_hits_write_their_last_use_later_and_eviction_goes_by_it(tmp_path: Path) -> None:
    clock = Clock()
    path = tmp_path / "c.sqlite"
    store = SqliteStore(path, 2000, clock)
    try:
        await fill(store, clock, "ab")
        clock.now += 1
        assert await store.get_many(["a"]) == [b"x" * 1000]

        def used() -> dict[str, float]:
            with sqlite3.connect(path) as db:
                return dict(db.execute("SELECT key, used FROM entries"))

        assert used() == {"a": 1001, "b": 1002}  # the hit wrote nothing
        await store.flush()
        assert used() == {"a": 1003, "b": 1002}
        clock.now += 1
        assert await store.get_many(["b"]) == [b"x" * 1000]  # noted only: the next write applies it first
        clock.now += 1
        await store.put_many([("c", b"x" * 1000)], ttl=100)
        assert used() == {"b": 1004, "c": 1005}  # `a`, least recently used, went
    finally:
        await store.close()
