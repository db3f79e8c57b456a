"""The semantic cache: a stored answer is served to a prompt that means the same as the one it answered.

The prompt is what the user asked: the system prompt and the last user turn (`request_text`). The
rest of the request — the resolved model, the parameters, the earlier turns, any non-text content —
must be equal: it makes the scope, a digest under which the store keeps at most `max_entries`
prompt vectors (unit length, float32). A lookup compares the prompt's vector with every one in its
scope (a matrix product, in a worker thread) and takes the closest at or above the threshold.

A stored prompt with the same words as this one in another order is never served: embeddings,
means of token vectors, barely see order, and "convert a string to an integer" / "an integer to a
string" came out at 0.996 with all-MiniLM-L6-v2 (bench/SEMANTIC.md). Each stored vector carries
a word signature for that (`words`): digests of its words in order and sorted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import math
import re
import sys
from array import array
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from lmwatch.cache.guard import GuardedStore
from lmwatch.cache.keys import FRAMING, canonical, request_digest
from lmwatch.cache.response import Entry
from lmwatch.config import SemanticCacheConfig
from lmwatch.metrics.cache import CacheMetrics
from lmwatch.routing.classify import request_text

log = logging.getLogger("lmwatch.cache")

_PROMPT_ROLES = ("system", "developer")
_WORD = re.compile(r"\w+")
WORDS = 16
"""Bytes of a word signature (`words`), stored before each prompt vector."""


@dataclass(frozen=True)
class Prompt:
    scope: str
    text: str


def prompt_of(endpoint: str, models: Iterable[str], body: dict[str, Any], stream: bool, usage: bool) -> Prompt | None:
    """The text to embed and its scope; None when the request has nothing to compare by meaning
    (no text, or a system prompt or last user turn that carries more than text, such as images)."""
    rest = {k: v for k, v in body.items() if k not in FRAMING}
    messages = body.get("messages")
    if isinstance(messages, list):
        system = next((m for m in messages if isinstance(m, dict) and m.get("role") in _PROMPT_ROLES), None)
        user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        if user is None or not all(_text_only(m.get("content")) for m in (system, user) if m is not None):
            return None
        embedded = {id(system), id(user)}
        rest["messages"] = [_blank(m) if isinstance(m, dict) and id(m) in embedded else m for m in messages]
    elif isinstance(body.get("prompt"), str):
        rest["prompt"] = None
    else:
        return None
    text = request_text(body, 1 << 30)
    if not text.strip():
        return None
    digest = request_digest(endpoint, models, stream, usage)
    digest.update(canonical(rest))
    return Prompt("s:" + digest.hexdigest(), text)


def _text_only(content: Any) -> bool:
    if isinstance(content, str):
        return True
    return isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content)


def _blank(message: dict[str, Any]) -> dict[str, Any]:
    """The message without its content (which the embedding compares)."""
    return {k: v for k, v in message.items() if k != "content"}


def unit_vector(embedding: Any) -> bytes | None:
    """An embedding (numbers) as unit-length little-endian float32 bytes; None for anything else."""
    if not isinstance(embedding, list | tuple) or not embedding:
        return None
    if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in embedding):
        return None
    norm = math.sqrt(math.fsum(x * x for x in embedding))
    if not math.isfinite(norm) or norm == 0:
        return None
    vector = array("f", (x / norm for x in embedding))
    if sys.byteorder != "little":
        vector.byteswap()
    return vector.tobytes()


def words(text: str) -> bytes:
    """The word signature of a prompt: a digest of its words (case folded) in order, then one of
    them sorted."""
    found = _WORD.findall(text.casefold())
    in_order = hashlib.blake2b("\0".join(found).encode(), digest_size=WORDS // 2).digest()
    as_set = hashlib.blake2b("\0".join(sorted(found)).encode(), digest_size=WORDS // 2).digest()
    return in_order + as_set


def reordered(a: bytes, b: bytes) -> bool:
    """Two word signatures of the same words in another order (which embeddings cannot tell apart)."""
    half = WORDS // 2
    return a[half:] == b[half:] and a[:half] != b[:half]


def closest(query: bytes, candidates: Sequence[tuple[str, bytes]]) -> tuple[str, float] | None:
    """The candidate key most similar to `query` and its cosine similarity (vectors of another
    length, from another embedding model, are skipped). CPU-bound: run it in a worker thread."""
    import numpy as np  # here, not at the top: a daemon without the semantic cache never loads numpy

    same = [(k, v) for k, v in candidates if len(v) == len(query)]
    if not same:
        return None
    matrix = np.frombuffer(b"".join(v for _, v in same), dtype="<f4").reshape(len(same), -1)
    similarities = matrix @ np.frombuffer(query, dtype="<f4")
    best = int(np.argmax(similarities))
    return same[best][0], float(similarities[best])


class EmbeddingFailed(Exception):
    """The prompt could not be embedded; `reason` is the metric label (no_model, busy, error)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


Embed = Callable[[str], Awaitable[Any]]
"""Embeds one text with a fleet embedding model: the embedding, or raises EmbeddingFailed."""


@dataclass(frozen=True)
class Found:
    """What a lookup learnt: the prompt's vector (kept with the answer on a miss), and on a hit the
    stored answer and how similar its prompt was."""

    scope: str
    vector: bytes
    words: bytes
    entry: Entry | None = None
    similarity: float | None = None


class SemanticCache:
    """Looks prompts up by meaning in the cache's store; an embedding that fails or is slow is a
    bypass, logged once per failure spell and counted by reason."""

    def __init__(self, metrics: CacheMetrics) -> None:
        self._metrics = metrics
        self._failing = False

    async def look_up(
        self, store: GuardedStore, config: SemanticCacheConfig, prompt: Prompt | None, embed: Embed, read: bool
    ) -> Found | None:
        """The prompt's vector and the closest stored answer (when `read` and one is close enough);
        None when the semantic cache is bypassed for this request."""
        if prompt is None or len(prompt.text) > config.max_chars or not store.available:
            self._metrics.count("semantic", "bypass")
            return None
        vector = await self._embed(prompt.text, embed, config.timeout)
        if vector is None:
            self._metrics.count("semantic", "bypass")
            return None
        found: Found | None = Found(prompt.scope, vector, words(prompt.text))
        if read and found is not None:
            found = await self._match(store, found, config.threshold)
        self._metrics.count("semantic", "bypass" if found is None else "miss" if found.entry is None else "hit")
        return found

    async def _embed(self, text: str, embed: Embed, timeout: float) -> bytes | None:
        try:
            async with asyncio.timeout(timeout):
                vector = unit_vector(await embed(text))
            if vector is None:
                raise EmbeddingFailed("error", "the embedding model answered something that is not an embedding")
        except Exception as exc:  # the boundary: whatever embedding does, the request goes on
            timed_out = isinstance(exc, TimeoutError)
            reason = exc.reason if isinstance(exc, EmbeddingFailed) else "timeout" if timed_out else "error"
            self._metrics.semantic_failures.labels(reason).inc()
            if not self._failing:
                self._failing = True
                what = str(exc) or f"no embedding within {timeout:g} s"
                log.warning("semantic cache: embedding the prompt failed (%s); requests go on without it", what)
            return None
        if self._failing:
            self._failing = False
            log.info("semantic cache: prompts are embedded again")
        return vector

    async def _match(self, store: GuardedStore, found: Found, threshold: float) -> Found | None:
        candidates = await store.call("vectors", lambda: store.store.vectors(found.scope))
        if candidates is None:
            return None
        usable = [(k, v[WORDS:]) for k, v in candidates if not reordered(found.words, v[:WORDS])]
        best = await asyncio.to_thread(closest, found.vector, usable) if usable else None
        if best is None or best[1] < threshold:
            return found
        raw = await store.get_many([best[0]])
        entry = Entry.decode(raw[0]) if raw and raw[0] is not None else None
        return dataclasses.replace(found, entry=entry, similarity=best[1]) if entry is not None else found

    def keep(self, store: GuardedStore, config: SemanticCacheConfig, found: Found, key: str, ttl: float) -> None:
        """Remember the prompt's vector for the answer just stored under `key` (in the background)."""
        vector, limit = found.words + found.vector, config.max_entries
        store.write("add_vector", lambda: store.store.add_vector(found.scope, key, vector, ttl, limit))
