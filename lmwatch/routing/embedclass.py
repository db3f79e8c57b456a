"""The embedding mode of the task classifier (`routing.classifier.mode: embedding`).

The text the linear classifier reads (system prompt and latest user turn, capped) is embedded by an
embedding model loaded on the fleet and compared, by cosine, with each task's centroid: the mean of
the embeddings of its exemplar prompts (lmwatch/routing/exemplars.py plus `classifier.examples`,
so a configured task works here too). Configured keywords still decide first.

The added latency is bounded by `classifier.embedding.timeout`. When no embedding model is loaded,
the call fails or times out, or the exemplars are not embedded yet (that runs once per model in the
background), the linear model answers and its first reason says why. Answers are remembered per
hash of the text in a bounded LRU, so a repeated prompt costs no call. How a call reaches the backend
is given to the classifier (`EmbedTexts`): the `/v1` app's takes a slot under the backend's
concurrency cap like any request (lmwatch/api/prompt_embedding.py), so a one-slot server busy with a
generation is not sent a second request; a full queue answers `busy` and the linear model decides.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import math
import operator
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lmwatch.config import RoutingConfig
from lmwatch.http_client import Pool, UpstreamError
from lmwatch.jsondecode import loads
from lmwatch.metrics.classifier import EmbeddingMetrics
from lmwatch.registry import Snapshot
from lmwatch.routing.capabilities import Capabilities
from lmwatch.routing.classify import Classification, Classifier, request_text
from lmwatch.routing.exemplars import EXEMPLARS
from lmwatch.routing.memo import PerConfig
from lmwatch.routing.select import Target, resolve, routable, target_for

log = logging.getLogger("lmwatch.routing.embedclass")

RETRY_SECONDS = 30.0
"""After embedding the exemplars failed, the linear model answers for this long before a retry."""
KEPT_MODELS = 4
"""Exemplar centroids kept for this many (backend, model, exemplar set) keys."""

Vector = tuple[float, ...]
Key = tuple[str, str, str]
"""(backend, model, digest of the exemplar set)."""
EmbedTexts = Callable[[Target, list[str], RoutingConfig], Awaitable[list[Vector]]]
"""Unit vectors of the texts from the target, or Unavailable saying why not."""


class Unavailable(Exception):
    """The embedding cannot answer this request; `outcome` is the metric's label."""

    def __init__(self, outcome: str, detail: str) -> None:
        super().__init__(detail)
        self.outcome = outcome


@dataclass(frozen=True)
class ExemplarSet:
    texts: Mapping[str, tuple[str, ...]]
    """Task -> exemplar prompts (only tasks that have some)."""
    digest: str


def exemplar_set(routing: RoutingConfig) -> ExemplarSet:
    """The shipped exemplars of the config's tasks plus its configured example prompts."""
    tasks = routing.task_names()
    texts: dict[str, tuple[str, ...]] = {t: EXEMPLARS[t] for t in sorted(tasks) if t in EXEMPLARS}
    for task, examples in routing.classifier.examples.items():
        extra = tuple(x for x in examples if x.strip())
        if extra:
            texts[task] = texts.get(task, ()) + extra
    digest = hashlib.sha256(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:16]
    return ExemplarSet(texts, digest)


def embedding_target(routing: RoutingConfig, snap: Snapshot, wanted: str | None) -> Target:
    """Where to embed: model `wanted` wherever it is loaded, else (None) the first loaded model of
    type embeddings (by backend name, then id); Unavailable("no_model") when there is none."""
    if wanted:
        found = [(b, m, i) for b, m, i in resolve(snap, wanted) if routable(b) and m.loaded]
    else:
        caps = Capabilities(routing)
        found = [
            (b, m, m.id) for b in snap.backends.values() if routable(b) for m in b.loaded_models if caps.is_embedding(m)
        ]
    if not found:
        raise Unavailable("no_model", f"{wanted!r} is not loaded" if wanted else "no embedding model is loaded")
    backend, model, model_id = min(found, key=lambda f: (f[0].name, f[2]))
    return target_for(backend, model, model_id)


def unit(vector: Sequence[float]) -> Vector:
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return tuple(x / norm for x in vector)


def parse_vectors(raw: bytes, count: int) -> list[Vector]:
    """Unit vectors from an OpenAI-style embeddings answer, in input order. A list of token vectors
    (llama.cpp's server on a model without pooling) is mean-pooled."""
    try:
        data = loads(raw)["data"]
        rows = sorted(data, key=lambda d: int(d.get("index", 0)))
        vectors = [_pooled(row["embedding"]) for row in rows]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise Unavailable("error", f"the embeddings answer is malformed: {exc!r}") from None
    if len(vectors) != count or len({len(v) for v in vectors}) > 1:
        raise Unavailable("error", f"the embeddings answer has {len(vectors)} vectors (or mixed sizes) for {count}")
    return vectors


def _pooled(embedding: Any) -> Vector:
    if embedding and isinstance(embedding[0], list):
        width = len(embedding[0])
        sums = [math.fsum(token[i] for token in embedding) for i in range(width)]
        return unit(sums)
    if not embedding or not all(isinstance(x, int | float) for x in embedding):
        raise TypeError("an embedding is not a list of numbers")
    return unit(embedding)


async def embed(pool: Pool, target: Target, texts: list[str], routing: RoutingConfig) -> list[Vector]:
    """Unit vectors of `texts` from `target`, one call on `pool` (the caller holds whatever slot it
    needs); Unavailable("error") for whatever goes wrong."""
    body = json.dumps({"model": target.model, "input": texts}, ensure_ascii=False).encode()
    connect = target.config.timeout if target.config is not None else 30.0
    try:
        token = target.token()
        headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        resp = await pool.post(target.url, "/embeddings", body, headers, connect, routing.idle_timeout)
        try:
            raw = await resp.read(routing.max_answer_bytes)
        finally:
            resp.close()
    except (UpstreamError, OSError, ValueError) as exc:
        raise Unavailable("error", f"{target.backend}: {exc}") from None
    if resp.status != 200:
        raise Unavailable("error", f"{target.backend} answered HTTP {resp.status}")
    return parse_vectors(raw, len(texts))


def decide(centroids: Mapping[str, Vector], vector: Vector, model: str) -> Classification:
    """The task whose centroid is closest; the reason names the model and the margin over the next."""
    sims = {task: math.fsum(map(operator.mul, c, vector)) for task, c in centroids.items()}
    ranked = sorted(sims, key=lambda t: -sims[t])
    best = ranked[0]
    margin = sims[best] - sims[ranked[1]] if len(ranked) > 1 else sims[best]
    scores = {t: round(s, 3) for t, s in sims.items()}
    return Classification(best, scores, (f"embedding:{model}({best}+{margin:.2f})",))


def _centroids_of(task: asyncio.Task[dict[str, Vector]]) -> dict[str, Vector]:
    """The result of a finished exemplar task, or Unavailable("error") saying why it has none."""
    if task.cancelled() or task.exception() is not None:
        why = "cancelled" if task.cancelled() else task.exception()
        raise Unavailable("error", f"embedding the exemplars failed: {why}")
    return task.result()


class EmbeddingClassifier:
    """Classifies requests by the configured mode; in embedding mode holds the exemplar centroids
    per embedding model and the LRU of answers (one per app, beside the connection pool). `embed`
    makes the calls."""

    def __init__(
        self,
        embed: EmbedTexts,
        metrics: EmbeddingMetrics,
        linear: Callable[[RoutingConfig], Classifier] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._embed = embed
        self._linear = linear or PerConfig(Classifier)
        """The linear classifier of a config (the router's own, compiled once per config)."""
        self.metrics = metrics
        self._clock = clock
        self._exemplars = PerConfig(exemplar_set)
        self._centroids: dict[Key, asyncio.Task[dict[str, Vector]]] = {}
        self._failed_at: dict[Key, float] = {}
        self._answers: OrderedDict[tuple[Key, bytes], Classification] = OrderedDict()

    async def classify(self, routing: RoutingConfig, snap: Snapshot, body: Mapping[str, Any]) -> Classification:
        linear = self._linear(routing)
        cfg = routing.classifier
        if cfg.mode != "embedding":
            return linear.classify(body)
        text = request_text(body, cfg.scan_chars)
        if not text.strip():
            return linear.classify(body)
        decided = linear.by_keywords(text)
        if decided is not None:
            self.metrics.count("keyword")
            return decided
        started = self._clock()
        try:
            answer, outcome = await self._embedded(routing, snap, text, cfg.embedding.timeout)
        except Unavailable as why:
            self.metrics.count(why.outcome)
            log.debug("embedding classifier: %s (%s); the linear model answers", why.outcome, why)
            fallback = linear.classify(body)
            return dataclasses.replace(fallback, reasons=(f"linear(embedding {why.outcome})", *fallback.reasons))
        finally:
            self.metrics.seconds.observe(self._clock() - started)
        self.metrics.count(outcome)
        return answer

    async def _embedded(
        self, routing: RoutingConfig, snap: Snapshot, text: str, timeout: float
    ) -> tuple[Classification, str]:
        """The embedding's answer within `timeout` seconds, or Unavailable saying why not."""
        deadline = asyncio.get_running_loop().time() + timeout
        target = embedding_target(routing, snap, routing.classifier.embedding.model)
        exemplars = self._exemplars(routing)
        key = (target.backend, target.model, exemplars.digest)
        entry = (key, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())
        cached = self._answers.get(entry)
        if cached is not None:
            self._answers.move_to_end(entry)
            return cached, "cached"
        task = self._centroid_task(key, target, exemplars, routing)
        await asyncio.wait({task}, timeout=max(deadline - asyncio.get_running_loop().time(), 0))
        if not task.done():
            raise Unavailable("not_ready", "the exemplars are still being embedded")
        centroids = _centroids_of(task)
        try:
            async with asyncio.timeout_at(deadline):
                [vector] = await self._embed(target, [text], routing)
        except TimeoutError:
            raise Unavailable("timeout", f"no answer within {timeout:g} s") from None
        answer = decide(centroids, vector, target.model)
        self._answers[entry] = answer
        while len(self._answers) > routing.classifier.embedding.cache_entries:
            self._answers.popitem(last=False)
        return answer, "embedded"

    async def warm(self, routing: RoutingConfig, snap: Snapshot) -> None:
        """Embed the exemplars for the model `classify` would use now (raises Unavailable saying why
        not), so that requests need not wait for them."""
        target = embedding_target(routing, snap, routing.classifier.embedding.model)
        exemplars = self._exemplars(routing)
        task = self._centroid_task((target.backend, target.model, exemplars.digest), target, exemplars, routing)
        await asyncio.wait({task})
        _centroids_of(task)

    def _centroid_task(
        self, key: Key, target: Target, exemplars: ExemplarSet, routing: RoutingConfig
    ) -> asyncio.Task[dict[str, Vector]]:
        """The (shared, background) embedding of the exemplars for `key`, started on first need."""
        task = self._centroids.get(key)
        if task is not None and task.done() and (task.cancelled() or task.exception() is not None):
            if not task.cancelled() and self._clock() - self._failed_at.get(key, 0.0) < RETRY_SECONDS:
                return task  # failed lately: the caller says so, and no new call is made yet
            task = None
        if task is None:
            task = asyncio.create_task(self._embed_exemplars(target, exemplars, routing))
            task.add_done_callback(lambda t: self._settled(key, t))
            self._centroids[key] = task
            while len(self._centroids) > KEPT_MODELS:
                oldest = next(iter(self._centroids))
                self._centroids.pop(oldest).cancel()
        return task

    def _settled(self, key: Key, task: asyncio.Task[dict[str, Vector]]) -> None:
        if task.cancelled():
            if self._centroids.get(key) is task:
                del self._centroids[key]
            return
        failed = task.exception()  # retrieved here, so an unawaited failure is not reported as lost
        if failed is not None:
            self._failed_at[key] = self._clock()
            log.warning("embedding the classifier's exemplars with %s on %s failed: %s", key[1], key[0], failed)

    async def _embed_exemplars(
        self, target: Target, exemplars: ExemplarSet, routing: RoutingConfig
    ) -> dict[str, Vector]:
        size = routing.embedding_batch_size
        centroids = {}
        for task, texts in exemplars.texts.items():
            vectors: list[Vector] = []
            for i in range(0, len(texts), size):
                vectors += await self._embed(target, list(texts[i : i + size]), routing)
            centroids[task] = unit([math.fsum(column) for column in zip(*vectors, strict=True)])
        return centroids

    def close(self) -> None:
        for task in self._centroids.values():
            task.cancel()
