"""A metric family as declared: name, type, help and labels, in one value.

Every `lmwatch_` family is one `Family` (the declarations are in `lmwatch/metrics/`, the samplers
declare their own next to their samples); collectors build what they yield from it and `describe()`
returns it empty, so prometheus-client's duplicate-name check sees every family at registration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric

Kind = Literal["gauge", "counter", "info", "histogram"]

UNITS = ("bytes", "seconds", "celsius", "watts", "joules", "hertz", "ratio")


@dataclass(frozen=True)
class Family:
    name: str
    """Without `_total` (counters) or `_info` (info): the samples' names add them."""
    kind: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """Histograms only."""

    @property
    def unit(self) -> str:
        """The OpenMetrics unit, from the name's suffix."""
        return next((u for u in UNITS if self.name.endswith("_" + u)), "")

    @property
    def sample_name(self) -> str:
        return self.name + {"counter": "_total", "info": "_info"}.get(self.kind, "")

    def new(self) -> Metric:
        """An empty family, to fill with `add(metric, labels, value)` (or to describe)."""
        return Metric(self.name, self.help, self.kind, "" if self.kind == "info" else self.unit)

    def add(self, metric: Metric, labels: Sequence[str], value: float, extra: dict[str, str] | None = None) -> None:
        """One sample; `extra` are an info family's value labels."""
        names = dict(zip(self.labels, labels, strict=True))
        if extra:
            names.update(extra)
        metric.add_sample(self.sample_name, names, value)

    def value(self, value: float) -> Metric:
        """The family with its one unlabelled series."""
        metric = self.new()
        self.add(metric, (), value)
        return metric

    def counter(self, registry: CollectorRegistry) -> Counter:
        """The instrument, registered in `registry` (for families updated as things happen)."""
        return Counter(self.name, self.help, self.labels, registry=registry, unit=self.unit)

    def gauge(self, registry: CollectorRegistry) -> Gauge:
        return Gauge(self.name, self.help, self.labels, registry=registry, unit=self.unit)

    def histogram(self, registry: CollectorRegistry) -> Histogram:
        return Histogram(self.name, self.help, self.labels, registry=registry, unit=self.unit, buckets=self.buckets)
