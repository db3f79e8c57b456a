"""A prompt embedded by a fleet embedding model, for the semantic cache (lmwatch/cache/semantic.py).

The embedding goes where an `/v1/embeddings` request for `cache.semantic.model` (or `auto`) would,
restricted to loaded local models: a prompt is never sent to a cloud provider for it, and no model
is loaded for it. Every way it can fail is an `EmbeddingFailed`, which the cache turns into a bypass.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from lmwatch.api.errors import ApiError
from lmwatch.api.proxy import Exchange, Upstream
from lmwatch.api.request_metrics import RequestMetrics
from lmwatch.cache.semantic import Embed, EmbeddingFailed
from lmwatch.config import RoutingConfig
from lmwatch.registry import Snapshot
from lmwatch.routing.capabilities import EMBEDDINGS
from lmwatch.routing.request import Endpoint, parse_request
from lmwatch.routing.select import AUTO, Plan, plan_request


def prompt_embedder(
    upstream: Upstream,
    routing: RoutingConfig,
    metrics: RequestMetrics,
    snap: Snapshot,
    poll_now: Callable[[str | None], None],
    model: str | None,
    request_id: str | None,
) -> Embed:
    """How this request's prompt is embedded (called only when the semantic cache needs it)."""

    async def embed(text: str) -> Any:
        raw = json.dumps({"model": model or AUTO, "input": text}).encode()
        try:
            req = parse_request(Endpoint.EMBEDDINGS, raw, AUTO)
            plan = _loaded_only(plan_request(snap, routing, req, EMBEDDINGS, local_only=True))
        except ApiError as err:
            raise EmbeddingFailed("no_model", f"no embedding model {model or AUTO!r}: {err.message}") from None
        if not plan.tiers:
            raise EmbeddingFailed("no_model", f"no loaded embedding model for {model or AUTO!r}")
        exchange = Exchange(upstream, routing, metrics, req, plan, time.perf_counter(), poll_now, request_id=request_id)
        try:
            answer = await exchange.answer()
        except ApiError as err:
            raise EmbeddingFailed("error", err.message) from None
        data = answer.obj.get("data")
        if answer.status != 200 or not isinstance(data, list) or not data or not isinstance(data[0], dict):
            raise EmbeddingFailed("error", f"the embedding model answered HTTP {answer.status} without an embedding")
        return data[0].get("embedding")

    return embed


def _loaded_only(plan: Plan) -> Plan:
    tiers = []
    for tier in plan.tiers:
        loaded = tuple(t for t in tier.targets if not t.is_cloud and (t.info is None or t.info.loaded))
        if loaded:
            tiers.append(dataclasses.replace(tier, targets=loaded))
    return dataclasses.replace(plan, tiers=tuple(tiers))
