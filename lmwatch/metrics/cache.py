"""The cache's families. Labels are bounded: the kind of cache, the result, the store and the
operation; nothing from prompts, keys or cache keys."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lmwatch.metrics.family import Family
from lmwatch.metrics.tally import CounterTally

KINDS = ("response", "embedding", "semantic")
RESULTS = ("hit", "miss", "bypass")
OPERATIONS = ("open", "get", "put", "flush", "vectors", "add_vector", "ratelimit")
SEMANTIC_FAILURES = ("timeout", "no_model", "busy", "error")

CACHE_REQUESTS = Family(
    "lmwatch_cache_requests",
    "counter",
    "Cache lookups by kind (response, embedding: one per input text, semantic) and result "
    "(hit, miss, bypass: not cacheable, opted out, or the store is failing).",
    ("kind", "result"),
)
CACHE_ERRORS = Family(
    "lmwatch_cache_errors",
    "counter",
    f"Failed or timed-out store operations ({', '.join(OPERATIONS)}); each starts a bypass period.",
    ("store", "operation"),
)
CACHE_SEMANTIC_FAILURES = Family(
    "lmwatch_cache_semantic_failures",
    "counter",
    f"Prompts the semantic cache could not embed, by reason ({', '.join(SEMANTIC_FAILURES)}); each is a bypass.",
    ("reason",),
)
CACHE_AVAILABLE = Family(
    "lmwatch_cache_available",
    "gauge",
    "1 while the cache store works, 0 while requests bypass it after a failure.",
    ("store",),
)
CACHE_SIZE = Family("lmwatch_cache_size_bytes", "gauge", "Bytes of stored answers (as the store last reported).")
CACHE_WRITTEN = Family("lmwatch_cache_written_bytes", "counter", "Bytes written to the cache store.")
CACHE_EVICTIONS = Family(
    "lmwatch_cache_evictions",
    "counter",
    "Entries evicted to keep the store within cache.max_bytes (expired ones included).",
)


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = CounterTally(CACHE_REQUESTS)  # counted on every request: a dict add (lmwatch/metrics/tally.py)
        registry.register(self.requests)
        self.errors = CACHE_ERRORS.counter(registry)
        self.semantic_failures = CACHE_SEMANTIC_FAILURES.counter(registry)
        self.available = CACHE_AVAILABLE.gauge(registry)
        self.size = CACHE_SIZE.gauge(registry)
        self.written = CACHE_WRITTEN.counter(registry)
        self.evictions = CACHE_EVICTIONS.counter(registry)
        for kind in KINDS:  # every series at 0 from the start
            for result in RESULTS:
                self.requests.inc((kind, result), 0)
        for reason in SEMANTIC_FAILURES:  # at 0 from the start: a dashboard shows "none", not "no data"
            self.semantic_failures.labels(reason)

    def store_opened(self, store: str) -> None:
        """A store is in use: it is available, and its error series start at 0."""
        self.available.labels(store).set(1)
        for operation in OPERATIONS:
            self.errors.labels(store, operation)

    def count(self, kind: str, result: str, n: int = 1) -> None:
        """On the event loop's thread only, as every tally."""
        self.requests.inc((kind, result), n)
