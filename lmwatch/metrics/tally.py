"""Counters and histograms of the request path, kept as plain dicts and rendered at scrape time.

Every proxied request updates about seven series. prometheus-client's instruments pay for a
thread lock, an observability check and a child lookup on each update (about 1 us apiece, a tenth
of what lmwatch spends on a request); here an update is one dict lookup and an add, which is all
the event loop's thread needs: only it updates these, and a scrape renders them on that thread too.
The exposition is prometheus-client's own (the same samples, the same order), so nothing that
reads `/metrics` can tell the difference.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.metrics.family import Family
from lmwatch.metrics.text import format_value


class CounterTally(Collector):
    """A counter family: label values -> total."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self._totals: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        totals = self._totals
        total = totals.get(labels)
        if total is None:
            _check(self.family, labels)
            total = 0.0
        totals[labels] = total + amount

    def describe(self) -> Iterable[Metric]:
        return [self.family.new()]

    def collect(self) -> Iterable[Metric]:
        metric = self.family.new()
        for labels, total in list(self._totals.items()):
            self.family.add(metric, labels, total)
        return [metric]


class HistogramTally(Collector):
    """A histogram family: label values -> a count per bucket (not cumulative), then the sum.
    A family without labels has its one series from the start, as prometheus-client's has."""

    def __init__(self, family: Family) -> None:
        self.family = family
        self._bounds = family.buckets
        self._le = [format_value(b) for b in family.buckets] + ["+Inf"]
        self._rows: dict[tuple[str, ...], list[float]] = {}
        if not family.labels:
            self._rows[()] = self._empty()

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        row = self._rows.get(labels)
        if row is None:
            _check(self.family, labels)
            row = self._rows[labels] = self._empty()
        row[bisect_left(self._bounds, value)] += 1  # the first bucket whose bound is >= value
        row[-1] += value

    def _empty(self) -> list[float]:
        return [0.0] * (len(self._bounds) + 2)

    def describe(self) -> Iterable[Metric]:
        return [self.family.new()]

    def collect(self) -> Iterable[Metric]:
        family = self.family
        metric = family.new()
        names = family.labels
        for labels, row in list(self._rows.items()):
            base = dict(zip(names, labels, strict=True))
            count = 0.0
            for le, in_bucket in zip(self._le, row, strict=False):
                count += in_bucket
                metric.add_sample(family.name + "_bucket", {**base, "le": le}, count)
            metric.add_sample(family.name + "_count", base, count)
            metric.add_sample(family.name + "_sum", base, row[-1])
        return [metric]


def _check(family: Family, labels: tuple[str, ...]) -> None:
    """A new series: as many label values as the family has labels, each a string."""
    if len(labels) != len(family.labels) or not all(isinstance(v, str) for v in labels):
        raise ValueError(f"{family.name} takes the labels {family.labels}, got {labels!r}")
