"""The request path's tallies render what prometheus-client's instruments render for the same updates."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, disable_created_metrics, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from lmwatch.metrics.family import Family
from lmwatch.metrics.tally import CounterTally, HistogramTally

TOKENS = Family("t_tokens", "counter", "Tokens.", ("backend", "direction"))
DURATION = Family("t_duration_seconds", "histogram", "Time.", ("backend",), (0.1, 0.5, 1, 2.5))
OVERHEAD = Family("t_overhead_seconds", "histogram", "Time inside.", buckets=(0.001, 0.01))


def registries() -> tuple[CollectorRegistry, CollectorRegistry]:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # as lmwatch/metrics/table.py
    return CollectorRegistry(auto_describe=True), CollectorRegistry(auto_describe=True)


@pytest.mark.parametrize("encode", [generate_latest, generate_openmetrics])
def test_the_same_updates_render_the_same_text(encode: object) -> None:
    ours, theirs = registries()
    tokens, duration, overhead = CounterTally(TOKENS), HistogramTally(DURATION), HistogramTally(OVERHEAD)
    for tally in (tokens, duration, overhead):
        ours.register(tally)
    their_tokens, their_duration, their_overhead = (
        TOKENS.counter(theirs),
        DURATION.histogram(theirs),
        OVERHEAD.histogram(theirs),
    )
    assert encode(ours) == encode(theirs)  # type: ignore[operator]  # the unlabelled histogram, at zero
    for backend, direction, amount in [("a", "input", 3), ("b", 'out"put\n', 2.5), ("a", "input", 4)]:
        tokens.inc((backend, direction), amount)
        their_tokens.labels(backend, direction).inc(amount)
    for backend, seconds in [("a", 0.1), ("a", 0.05), ("b", 7.0), ("a", 2.5), ("a", 1.0000001)]:
        duration.observe((backend,), seconds)
        their_duration.labels(backend).observe(seconds)
        overhead.observe((), seconds / 100)
        their_overhead.observe(seconds / 100)
    assert encode(ours) == encode(theirs)  # type: ignore[operator]


def test_a_new_series_with_the_wrong_labels_is_refused() -> None:
    tokens = CounterTally(TOKENS)
    with pytest.raises(ValueError, match="t_tokens takes the labels"):
        tokens.inc(("a",))
    with pytest.raises(ValueError, match="t_duration_seconds takes the labels"):
        HistogramTally(DURATION).observe((1,), 0.5)  # type: ignore[arg-type]
    assert next(iter(tokens.collect())).samples == []
