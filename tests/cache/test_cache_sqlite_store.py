"""The SQLite store on a real file: time to live, the size bound, restarts, and failures as CacheError."""

from __future__ import annotations

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
        assert await store.get_many(["a"]) == [b"x" * 1000]  # `a` is now newer than `b`
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
