"""The response and embedding cache: stores behind one interface, and the policies over them.

A store keeps opaque byte values under string keys, each with a time to live, within a size bound
(least recently used evicted first). Stores are one module each, registered in `STORES`:
`sqlite` (embedded, the default, in the state directory) and `redis` (shared by replicas). Store
operations raise `CacheError`; `guard.GuardedStore` turns every failure into a bypass, so the cache
can slow a request by at most `cache.timeout` and never fail it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol


class CacheError(Exception):
    """A store operation failed (corrupt or locked file, full disk, Redis down or slow)."""


@dataclass(frozen=True)
class Stored:
    """What a write did to the store: entries evicted to stay within the bound, and its size after."""

    evicted: int
    size_bytes: int | None
    """None when the store cannot tell cheaply."""


class Encodable(Protocol):
    def encode(self) -> bytes: ...


Value = bytes | Encodable
"""What is handed to the cache to keep: the stored bytes, or what makes them (encoded with the
batch it is written in, not on the request path)."""


class Store(Protocol):
    name: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        """The values of `keys` (None where missing or expired), in order."""

    async def open(self) -> None:
        """Make the store ready (the SQLite store opens its file and reads its keys' hashes);
        lookups bypass the store until it is."""

    def may_hold(self, keys: Sequence[str]) -> bool:
        """False when none of `keys` is stored, known without a lookup (a certain miss, answered
        without one); True when some may be, or the store cannot tell."""

    async def put_many(self, items: Sequence[tuple[str, bytes]], ttl: float) -> Stored:
        """Store `items` for `ttl` seconds, evicting the least recently used past the size bound."""

    async def flush(self) -> None:
        """Write what lookups only noted (the last-use times of hits), off the request path."""

    async def vectors(self, scope: str) -> list[tuple[str, bytes]]:
        """The semantic cache's (answer key, prompt vector) pairs stored under `scope`, unexpired."""

    async def add_vector(self, scope: str, key: str, vector: bytes, ttl: float, limit: int) -> None:
        """Keep `vector` for the answer under `key` in `scope`, and at most the newest `limit` there."""

    async def close(self) -> None: ...


StoreFactory = Callable[..., Store]
