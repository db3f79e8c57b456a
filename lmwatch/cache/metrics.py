"""The cache's Prometheus instruments. Labels are bounded: the kind of cache, the result, the store
and the operation; nothing from prompts, keys or cache keys."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

KINDS = ("response", "embedding", "semantic")
RESULTS = ("hit", "miss", "bypass")


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "lmwatch_cache_requests",
            "Cache lookups by kind (response, embedding: one per input text, semantic) and result "
            "(hit, miss, bypass: not cacheable, opted out, or the store is failing).",
            ["kind", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "lmwatch_cache_errors",
            "Failed or timed-out store operations (get, put, ratelimit); each starts a bypass period.",
            ["store", "operation"],
            registry=registry,
        )
        self.semantic_failures = Counter(
            "lmwatch_cache_semantic_failures",
            "Prompts the semantic cache could not embed, by reason (timeout, no_model, error); each is a bypass.",
            ["reason"],
            registry=registry,
        )
        self.available = Gauge(
            "lmwatch_cache_available",
            "1 while the cache store works, 0 while requests bypass it after a failure.",
            ["store"],
            registry=registry,
        )
        self.size = Gauge(
            "lmwatch_cache_size_bytes", "Bytes of stored answers (as the store last reported).", registry=registry
        )
        self.written = Counter("lmwatch_cache_written_bytes", "Bytes written to the cache store.", registry=registry)
        self.evictions = Counter(
            "lmwatch_cache_evictions",
            "Entries evicted to keep the store within cache.max_bytes (expired ones included).",
            registry=registry,
        )
        self._requests = {(k, r): self.requests.labels(k, r) for k in KINDS for r in RESULTS}

    def count(self, kind: str, result: str, n: int = 1) -> None:
        self._requests[kind, result].inc(n)
