"""Fleet embedding models called under the backends' concurrency caps: for the semantic cache
(lmwatch/cache/semantic.py) and the classifier's embedding mode (lmwatch/routing/embedclass.py).

The call takes a slot under the backend's concurrency cap like any request (a one-slot llama.cpp
server would otherwise be sent two at once); a full queue is `busy`. For the cache, the model is
`cache.semantic.model` wherever it is loaded on a local backend, straight from the backend: a prompt
is never sent to a cloud provider for it, and no model is loaded for it; the wait counts against
`semantic.timeout`, and every way it can fail is an `EmbeddingFailed`, which the cache turns into a
bypass.
"""

from __future__ import annotations

import time

from lmwatch.api.admission import admit, release
from lmwatch.api.upstream import Upstream
from lmwatch.cache.semantic import Embed, EmbeddingFailed
from lmwatch.config import RoutingConfig
from lmwatch.registry import Snapshot
from lmwatch.routing.embedclass import EmbedTexts, Unavailable, Vector, embed, embedding_target
from lmwatch.routing.select import Target


def admitted(upstream: Upstream) -> EmbedTexts:
    """`embed` within a slot of the target's backend, waited for in its queue up to
    `routing.queue_timeout`; Unavailable("busy") when there is none."""

    async def embed_admitted(target: Target, texts: list[str], routing: RoutingConfig) -> list[Vector]:
        failure, _ = await admit(upstream, routing, target, time.monotonic() + routing.queue_timeout)
        if failure is not None:
            raise Unavailable("busy", f"{target.backend}: {failure.message}")
        try:
            return await embed(upstream.pool, target, texts, routing)
        finally:
            release(upstream, target)

    return embed_admitted


def prompt_embedder(upstream: Upstream, routing: RoutingConfig, snap: Snapshot, model: str | None) -> Embed:
    """How this request's prompt is embedded (called only when the semantic cache needs it)."""
    embed_texts = admitted(upstream)

    async def embed_prompt(text: str) -> Vector:
        try:
            [vector] = await embed_texts(embedding_target(routing, snap, model), [text], routing)
        except Unavailable as why:
            raise EmbeddingFailed(why.outcome, str(why)) from None
        return vector

    return embed_prompt
