"""The request path's families: instruments updated as requests finish, and the in-flight gauges.

Counters and histograms are updated as requests finish. Gauges that mirror registry state (in-flight
and queued requests, circuit states) are rendered at scrape time from the registry, so a removed
backend simply disappears. Labels are bounded: backend names from the config (`cloud:<name>` for
providers, `none` before routing), model ids the backends report (`none` when no model was chosen),
configured task names, the five routes and `cache`, the five APIs (chat, completions, embeddings, responses,
messages), and the HTTP status code (`stream_error` for a stream that
failed after it started, `499` for a client that went away). Nothing comes from prompts or keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import partial

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.breaker import CircuitState
from lmwatch.config import RoutingConfig
from lmwatch.metrics.family import Family
from lmwatch.metrics.tally import CounterTally, HistogramTally
from lmwatch.metrics.text import Format, Group, KeptRows, Row, collect_rows
from lmwatch.registry import Registry

NONE = "none"

DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120)
OVERHEAD_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


REQUESTS = Family(
    "lmwatch_requests",
    "counter",
    "Routed requests by the API they came in, the backend and model that answered, task, route and status.",
    ("api", "backend", "model", "task", "route", "code"),
)
REQUEST_DURATION = Family(
    "lmwatch_request_duration_seconds",
    "histogram",
    "Time from the request reaching lmwatch to its last byte.",
    ("backend", "model", "task"),
    DURATION_BUCKETS,
)
TTFT = Family(
    "lmwatch_time_to_first_token_seconds",
    "histogram",
    "Time from sending a streamed request upstream to its first event.",
    ("backend", "model"),
    TTFT_BUCKETS,
)
TOKENS = Family(
    "lmwatch_tokens",
    "counter",
    "Tokens processed, by direction (input = prompt, output = completion).",
    ("backend", "model", "direction"),
)
FALLBACKS = Family(
    "lmwatch_fallbacks",
    "counter",
    "Requests moved from one target to another, by the reason the first failed.",
    ("from_backend", "to_backend", "reason"),
)
ATTEMPTS = Family(
    "lmwatch_backend_attempts",
    "counter",
    "Requests sent to a backend, each retry and failover step on its own, by outcome: success, "
    "failure (what the circuit breaker counts against the backend) or no_verdict (the client "
    "left, a context too long, a 429: nothing said about the backend's health).",
    ("backend", "model", "outcome"),
)
OVERHEAD = Family(
    "lmwatch_overhead_seconds",
    "histogram",
    "Time spent inside lmwatch per request (excluding upstream and queue waits).",
    buckets=OVERHEAD_BUCKETS,
)
COST_AVOIDED = Family(
    "lmwatch_cloud_cost_avoided_dollars",
    "counter",
    "What the tokens served locally would have cost on a cloud provider (routing.prices).",
    ("backend", "task"),
)
INFLIGHT = Family("lmwatch_inflight_requests", "gauge", "Requests being served by the backend now.", ("backend",))
QUEUE_DEPTH = Family(
    "lmwatch_queue_depth",
    "gauge",
    "Requests waiting for a slot of the backend (past its concurrency cap).",
    ("backend",),
)
CIRCUIT_STATE = Family(
    "lmwatch_circuit_state",
    "gauge",
    "1 for the current circuit-breaker state of a backend and model.",
    ("backend", "model", "state"),
)


class RequestMetrics:
    """The request path's counters and histograms (lmwatch/metrics/tally.py: an update is a dict add)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = CounterTally(REQUESTS)
        self.duration = HistogramTally(REQUEST_DURATION)
        self.ttft = HistogramTally(TTFT)
        self.tokens = CounterTally(TOKENS)
        self.fallbacks = CounterTally(FALLBACKS)
        self.attempts = CounterTally(ATTEMPTS)
        self.overhead = HistogramTally(OVERHEAD)
        self.cost_avoided = CounterTally(COST_AVOIDED)
        for tally in (
            self.requests,
            self.duration,
            self.ttft,
            self.tokens,
            self.fallbacks,
            self.attempts,
            self.overhead,
            self.cost_avoided,
        ):
            registry.register(tally)

    def finished(self, api: str, backend: str, model: str, task: str, route: str, code: str, duration: float) -> None:
        self.requests.inc((api, backend, model, task, route, code))
        self.duration.observe((backend, model, task), duration)

    def tokens_used(self, backend: str, model: str, prompt: int, completion: int) -> None:
        if prompt:
            self.tokens.inc((backend, model, "input"), prompt)
        if completion:
            self.tokens.inc((backend, model, "output"), completion)

    def avoided(self, backend: str, task: str, dollars: float) -> None:
        """Count what `routing.prices` would have charged (`cloud_price`) for tokens served locally
        or from the cache."""
        if dollars:
            self.cost_avoided.inc((backend, task), dollars)


def cloud_price(routing: RoutingConfig, task: str, prompt: int, completion: int) -> float:
    """Dollars a cloud provider would charge for these tokens of a `task` request (routing.prices)."""
    price = routing.prices.get(task) or routing.prices.get("default")
    if price is None:
        return 0.0
    return (prompt * price.input_per_million + completion * price.output_per_million) / 1e6


def _load_rows(name: str, inflight: int, queued: int | None) -> Iterator[Row]:
    yield INFLIGHT, (name,), float(inflight), None
    if queued is not None:
        yield QUEUE_DEPTH, (name,), float(queued), None


def _circuit_rows(backend: str, model: str, current: CircuitState) -> Iterator[Row]:
    for state in CircuitState:
        yield CIRCUIT_STATE, (backend, model, state.value), float(current is state), None


class OutcomesCollector(Collector):
    """In-flight, queue depth and circuit states, read from the registry at scrape time; `render`
    keeps each backend's lines while its figures are unchanged (mostly 0 and closed)."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._load = KeptRows()
        self._circuits = KeptRows()

    def describe(self) -> Iterable[Metric]:
        return [INFLIGHT.new(), QUEUE_DEPTH.new(), CIRCUIT_STATE.new()]

    def collect(self) -> Iterable[Metric]:
        load, circuits = self._groups()
        rows = [row for _, _, make in (*load, *circuits) for row in make()]
        return collect_rows((INFLIGHT, QUEUE_DEPTH, CIRCUIT_STATE), rows)

    def chunks(self, fmt: Format) -> Iterator[str]:
        """The text, in pieces with pause points between slices of groups (`KeptRows.chunks`)."""
        load, circuits = self._groups()
        yield from self._load.chunks(fmt, (INFLIGHT, QUEUE_DEPTH), load)
        yield from self._circuits.chunks(fmt, (CIRCUIT_STATE,), circuits)

    def _groups(self) -> tuple[list[Group], list[Group]]:
        snap = self._registry.snapshot()
        view = self._registry.outcomes.view()
        load: list[Group] = []
        for name in [*snap.backends, *(n for n in view.inflight if n.startswith("cloud:"))]:
            inflight = view.inflight.get(name, 0)
            queued = view.queued.get(name, 0) if name in snap.backends else None
            load.append((name, (inflight, queued), partial(_load_rows, name, inflight, queued)))
        circuits: list[Group] = [
            ((b.backend, b.model), b.state, partial(_circuit_rows, b.backend, b.model, b.state))
            for b in view.breakers
            if b.backend in snap.backends
        ]
        tracked = {(b.backend, b.model) for b in view.breakers}
        closed = CircuitState.CLOSED
        circuits += [  # no breaker yet (nothing failed): closed
            ((backend.name, m.id), closed, partial(_circuit_rows, backend.name, m.id, closed))
            for backend in snap.backends.values()
            if backend.reachable
            for m in backend.loaded_models
            if (backend.name, m.id) not in tracked
        ]
        return load, circuits
