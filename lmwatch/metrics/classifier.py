"""The embedding classifier's families (`routing.classifier.mode: embedding`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lmwatch.metrics.family import Family

SECONDS_BUCKETS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5)
OUTCOMES = ("embedded", "cached", "keyword", "no_model", "not_ready", "busy", "timeout", "error")

LOOKUPS = Family(
    "lmwatch_classifier_embedding_lookups",
    "counter",
    "Requests classified in embedding mode, by outcome: embedded, cached, keyword (a configured "
    "keyword decided), or why the linear model answered (no_model, not_ready, busy: no slot on the "
    "embedding backend, timeout, error).",
    ("outcome",),
)
SECONDS = Family(
    "lmwatch_classifier_embedding_seconds",
    "histogram",
    "Time the embedding mode added to a request (cache lookups, calls, timeouts).",
    buckets=SECONDS_BUCKETS,
)


class EmbeddingMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = LOOKUPS.counter(registry)
        self.seconds = SECONDS.histogram(registry)
        self._by_outcome = {o: self.lookups.labels(o) for o in OUTCOMES}

    def count(self, outcome: str) -> None:
        self._by_outcome[outcome].inc()
