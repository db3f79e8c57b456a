"""The daemon's metrics: one registration table, and the `/metrics` body.

`COLLECTORS` lists the families read at scrape time (node_exporter's collector table): each is
timed and guarded, and reported in `lmwatch_scrape_collector_success` and `_duration_seconds`,
so a broken collector costs its own families, never the scrape. The instruments the code updates
as things happen (request counters, reloads, loads, cache) are attributes of `Metrics`. Everything
is registered in one prometheus-client registry whose duplicate-name check sees every family,
because every collector has a real `describe()`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.metrics.cache import CacheMetrics
from lmwatch.metrics.classifier import EmbeddingMetrics
from lmwatch.metrics.connections import CONNECTION_ERRORS
from lmwatch.metrics.control import ControlMetrics
from lmwatch.metrics.family import Family
from lmwatch.metrics.fleet import BackendCollector, DaemonCollector, ProfileCollector
from lmwatch.metrics.lifecycle import LifecycleMetrics
from lmwatch.metrics.requests import OutcomesCollector, RequestMetrics
from lmwatch.metrics.samplers import Sampler, SamplerCollector
from lmwatch.metrics.text import EOF_LINE, Format
from lmwatch.metrics.usage import USAGE_WRITE_FAILURES
from lmwatch.registry import Registry

log = logging.getLogger("lmwatch.metrics")

T = TypeVar("T")

SCRAPE_SUCCESS = Family(
    "lmwatch_scrape_collector_success",
    "gauge",
    "1 if the collector's families were read in this scrape, 0 if it failed (its families are left out).",
    ("collector",),
)
SCRAPE_DURATION = Family(
    "lmwatch_scrape_collector_duration_seconds",
    "gauge",
    "How long reading the collector's families took in this scrape.",
    ("collector",),
)


class _ScrapeHealth(Collector):
    """Declares the scrape's own families (written by `Metrics` itself), so their names are checked."""

    def describe(self) -> Iterable[Metric]:
        return [SCRAPE_SUCCESS.new(), SCRAPE_DURATION.new()]

    def collect(self) -> Iterable[Metric]:
        return []


@dataclass(frozen=True)
class Sources:
    """What the scrape-time collectors read."""

    registry: Registry
    samplers: Sequence[Sampler]


COLLECTORS: dict[str, Callable[[Sources], Collector]] = {
    "daemon": lambda s: DaemonCollector(s.registry),
    "backends": lambda s: BackendCollector(s.registry),
    "profiles": lambda s: ProfileCollector(s.registry),
    "requests": lambda s: OutcomesCollector(s.registry),
    "samplers": lambda s: SamplerCollector(s.registry, list(s.samplers)),
}
"""collector label -> how to make it. A new scrape-time collector is one module and one line here."""


class Metrics(CollectorRegistry):
    """Every `lmwatch_` family of one daemon (no `process_`/`python_` defaults, no `_created`)."""

    def __init__(
        self,
        registry: Registry,
        samplers: Sequence[Sampler] = (),
        collectors: Mapping[str, Callable[[Sources], Collector]] = COLLECTORS,
    ) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
        super().__init__(auto_describe=True)
        self.registry = registry
        self._order: list[Collector] = []
        self._scraped: dict[str, Collector] = {}
        self._broken: set[str] = set()
        self._formats = {False: Format(openmetrics=False), True: Format(openmetrics=True)}
        super().register(_ScrapeHealth())  # not in `_order`: `_outcome_families` writes them
        sources = Sources(registry, samplers)
        for name, make in collectors.items():
            collector = self._scraped[name] = make(sources)
            self.register(collector)
        self.requests = RequestMetrics(self)
        self.control = ControlMetrics(self)
        self._scraped["control"] = self.control
        self.register(self.control)
        self.lifecycle = LifecycleMetrics(self)
        self.cache = CacheMetrics(self)
        self.usage_failures = USAGE_WRITE_FAILURES.counter(self)
        self.classifier = EmbeddingMetrics(self)
        self.connection_errors = CONNECTION_ERRORS.counter(self)

    def register(self, collector: Collector) -> None:
        super().register(collector)  # raises ValueError on a duplicate family name
        self._order.append(collector)

    def unregister(self, collector: Collector) -> None:
        super().unregister(collector)
        self._order.remove(collector)

    def collect(self) -> Iterable[Metric]:
        """Every family, in registration order (what prometheus-client's encoders read)."""
        outcome: dict[str, tuple[bool, float]] = {}
        nothing: list[Metric] = []
        for collector in list(self._order):
            yield from self._guarded(collector, outcome, lambda c: list(c.collect()), nothing)
        yield from self._outcome_families(outcome)

    def render(self, openmetrics: bool) -> bytes:
        """The `/metrics` body in one go."""
        return "".join(self.chunks(openmetrics)).encode()

    def chunks(self, openmetrics: bool) -> Iterator[str]:
        """The `/metrics` body in pieces. An empty piece is a point where the handler may let the
        event loop run: between two collectors, and between slices of backends inside those that
        keep their rows as text (`chunks(fmt)`), so a scrape of hundreds of backends never holds
        the loop for long. Such a collector's text comes whole once it is complete: one that fails
        part-way costs its own families, never the scrape."""
        fmt = self._formats[openmetrics]
        outcome: dict[str, tuple[bool, float]] = {}
        for collector in list(self._order):
            if hasattr(collector, "chunks"):
                yield from self._in_pieces(collector, outcome, collector.chunks(fmt))
            elif hasattr(collector, "render"):
                yield self._guarded(collector, outcome, lambda c: c.render(fmt), "")  # type: ignore[attr-defined]
            else:
                yield self._guarded(collector, outcome, lambda c: fmt.families(c.collect()), "")
            yield ""
        yield fmt.families(self._outcome_families(outcome))
        if openmetrics:
            yield EOF_LINE

    def _guarded(
        self, collector: Collector, outcome: dict[str, tuple[bool, float]], read: Callable[[Collector], T], empty: T
    ) -> T:
        """`read(collector)`, timed and guarded when it is one of `COLLECTORS`."""
        name = self._name_of(collector)
        if name is None:
            return read(collector)
        started = time.perf_counter()
        try:
            found = read(collector)
        except Exception:
            self._failed(name, outcome, time.perf_counter() - started)
            return empty
        self._succeeded(name, outcome, time.perf_counter() - started)
        return found

    def _in_pieces(
        self, collector: Collector, outcome: dict[str, tuple[bool, float]], pieces: Iterator[str]
    ) -> Iterator[str]:
        """A pause point per piece of `pieces`, then their text; timed (pauses left out) and guarded
        as `_guarded`."""
        name = self._name_of(collector)
        kept: list[str] = []
        spent = 0.0
        while True:
            started = time.perf_counter()
            try:
                piece = next(pieces, None)
            except Exception:
                if name is None:
                    raise
                self._failed(name, outcome, spent + time.perf_counter() - started)
                return
            spent += time.perf_counter() - started
            if piece is None:
                break
            kept.append(piece)
            yield ""
        if name is not None:
            self._succeeded(name, outcome, spent)
        yield "".join(kept)

    def _name_of(self, collector: Collector) -> str | None:
        return next((n for n, c in self._scraped.items() if c is collector), None)

    def _failed(self, name: str, outcome: dict[str, tuple[bool, float]], seconds: float) -> None:
        outcome[name] = (False, seconds)
        if name not in self._broken:
            self._broken.add(name)
            log.exception("metrics collector %s failed; its series are left out of the scrape", name)

    def _succeeded(self, name: str, outcome: dict[str, tuple[bool, float]], seconds: float) -> None:
        self._broken.discard(name)
        outcome[name] = (True, seconds)

    @staticmethod
    def _outcome_families(outcome: dict[str, tuple[bool, float]]) -> list[Metric]:
        success, duration = SCRAPE_SUCCESS.new(), SCRAPE_DURATION.new()
        for name, (ok, seconds) in outcome.items():
            SCRAPE_SUCCESS.add(success, (name,), 1.0 if ok else 0.0)
            SCRAPE_DURATION.add(duration, (name,), seconds)
        return [success, duration]
