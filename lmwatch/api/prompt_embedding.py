"""A prompt embedded by a fleet embedding model, for the semantic cache (lmwatch/cache/semantic.py).

The same way the classifier's embedding mode embeds (lmwatch/routing/embedclass.py): model
`cache.semantic.model` wherever it is loaded on a local backend, straight from the backend. A prompt
is never sent to a cloud provider for it, and no model is loaded for it. The call takes a slot
under the backend's concurrency cap like any request (a one-slot llama.cpp server would otherwise
be sent two at once); a full queue is a bypass, and the wait counts against `semantic.timeout`.
Every way it can fail is an `EmbeddingFailed`, which the cache turns into a bypass.
"""

from __future__ import annotations

import time

from lmwatch.api.admission import admit, release
from lmwatch.api.upstream import Upstream
from lmwatch.cache.semantic import Embed, EmbeddingFailed
from lmwatch.config import RoutingConfig
from lmwatch.registry import Snapshot
from lmwatch.routing.embedclass import Unavailable, Vector, embed, embedding_target


def prompt_embedder(upstream: Upstream, routing: RoutingConfig, snap: Snapshot, model: str | None) -> Embed:
    """How this request's prompt is embedded (called only when the semantic cache needs it)."""

    async def embed_prompt(text: str) -> Vector:
        try:
            target = embedding_target(routing, snap, model)
        except Unavailable as why:
            raise EmbeddingFailed(why.outcome, str(why)) from None
        deadline = time.monotonic() + routing.queue_timeout
        failure, _ = await admit(upstream, routing, target, deadline)
        if failure is not None:
            raise EmbeddingFailed("busy", f"{target.backend}: {failure.message}")
        try:
            [vector] = await embed(upstream.pool, target, [text], routing)
        except Unavailable as why:
            raise EmbeddingFailed(why.outcome, str(why)) from None
        finally:
            release(upstream, target)
        return vector

    return embed_prompt
