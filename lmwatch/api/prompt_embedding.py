"""A prompt embedded by a fleet embedding model, for the semantic cache (lmwatch/cache/semantic.py).

The same way the classifier's embedding mode embeds (lmwatch/routing/embedclass.py): model
`cache.semantic.model` wherever it is loaded on a local backend, straight from the backend. A prompt
is never sent to a cloud provider for it, and no model is loaded for it. Every way it can fail is
an `EmbeddingFailed`, which the cache turns into a bypass.
"""

from __future__ import annotations

from lmwatch.cache.semantic import Embed, EmbeddingFailed
from lmwatch.config import RoutingConfig
from lmwatch.http_client import Pool
from lmwatch.registry import Snapshot
from lmwatch.routing.embedclass import Unavailable, Vector, embed, embedding_target


def prompt_embedder(pool: Pool, routing: RoutingConfig, snap: Snapshot, model: str | None) -> Embed:
    """How this request's prompt is embedded (called only when the semantic cache needs it)."""

    async def embed_prompt(text: str) -> Vector:
        try:
            target = embedding_target(routing, snap, model)
            [vector] = await embed(pool, target, [text], routing)
        except Unavailable as why:
            raise EmbeddingFailed(why.outcome, str(why)) from None
        return vector

    return embed_prompt
