"""The lifecycle's families: loads, unloads, warm-ups and placements lmwatch asked for."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from lmwatch.metrics.family import Family

LOAD_BUCKETS = (0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300)
WARM_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

LOADS = Family(
    "lmwatch_model_loads",
    "counter",
    "Model loads lmwatch asked for, by why (keep_loaded, demand, swap, admin) and result "
    "(success, out_of_memory, not_found, timeout, unsupported, unreachable, busy, not_owner, failed).",
    ("backend", "model", "reason", "result"),
)
UNLOADS = Family(
    "lmwatch_model_unloads",
    "counter",
    "Model unloads lmwatch asked for, by why (idle, swap, make_room, admin) and result (success, failed).",
    ("backend", "model", "reason", "result"),
)
LOAD_DURATION = Family(
    "lmwatch_model_load_duration_seconds",
    "histogram",
    "How long successful model loads took (the server's load call, until the model was listed).",
    ("backend",),
    LOAD_BUCKETS,
)
WARMUPS = Family(
    "lmwatch_model_warmups",
    "counter",
    "Warm-up requests sent after loads, by result (success, failed).",
    ("backend", "result"),
)
WARMUP_DURATION = Family(
    "lmwatch_model_warmup_duration_seconds",
    "histogram",
    "How long the warm-up request after a load took.",
    ("backend",),
    WARM_BUCKETS,
)
PLACEMENTS = Family(
    "lmwatch_placements",
    "counter",
    "Requests for a model loaded nowhere, by the backend tried and the result (loaded, or why not: "
    "out_of_memory, not_found, timeout, busy, unsupported, not_owner, failed).",
    ("backend", "result"),
)


class LifecycleMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.loads = LOADS.counter(registry)
        self.unloads = UNLOADS.counter(registry)
        self.load_seconds = LOAD_DURATION.histogram(registry)
        self.warm_ups = WARMUPS.counter(registry)
        self.warm_up_seconds = WARMUP_DURATION.histogram(registry)
        self.placements = PLACEMENTS.counter(registry)
