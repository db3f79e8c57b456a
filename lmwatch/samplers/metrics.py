"""Turns the samplers' last samples (kept in the registry) into metrics, at scrape time.

Families are built fresh on every scrape from the stored sample, so the series of a GPU or a process
that is gone disappear. Per-collector health follows node_exporter: success, duration and the time of
the last success for every collector. Nothing here raises out of a scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.registry import Registry
from lmwatch.samplers.base import Sampler, gauge, gauge_value
from lmwatch.samplers.gpu import GpuSample

log = logging.getLogger("lmwatch.samplers.metrics")


def _merged(families: Iterable[Metric]) -> Iterable[Metric]:
    """One family per name (two GPU vendors both yield `lmwatch_gpu_*`; their series differ by uuid),
    and no HELP/TYPE for a family without series."""
    by_name: dict[str, Metric] = {}
    for family in families:
        first = by_name.setdefault(family.name, family)
        if first is not family:
            first.samples.extend(family.samples)
    return [f for f in by_name.values() if f.samples]


class SamplerCollector(Collector):
    """The samplers' families, each collector's health and `lmwatch_gpu_available`, per scrape."""

    def __init__(self, registry: Registry, samplers: list[Sampler]) -> None:
        self.registry = registry
        self.samplers = list(samplers)
        self._broken: set[str] = set()
        """Collectors whose rendering failed (logged once until it works again)."""

    def describe(self) -> Iterable[Metric]:
        return []  # so registering does not collect

    def collect(self) -> Iterable[Metric]:
        snapshot = self.registry.snapshot()
        success = gauge(
            "lmwatch_collector_success",
            "1 if the collector's last run succeeded (and its metrics could be rendered), else 0.",
            ["collector"],
        )
        duration = gauge("lmwatch_collector_duration_seconds", "How long the collector's last run took.", ["collector"])
        last_success = gauge(
            "lmwatch_collector_last_success_timestamp_seconds",
            "When the collector last succeeded, in seconds since the epoch.",
            ["collector"],
        )
        gpus_available = False
        families: list[Metric] = []
        for sampler in self.samplers:
            status = snapshot.collectors.get(sampler.name)
            ok = status is not None and status.success
            if status is not None:
                duration.add_metric([sampler.name], status.duration)
                if status.last_success is not None:
                    last_success.add_metric([sampler.name], status.last_success)
            sample: Any = status.sample if status is not None else None
            if sample is not None and (ok or sampler.keep_last_sample):
                try:
                    families.extend(sampler.families(sample))
                except Exception:
                    ok = False
                    if sampler.name not in self._broken:
                        self._broken.add(sampler.name)
                        log.exception("rendering the metrics of collector %s failed", sampler.name)
                else:
                    self._broken.discard(sampler.name)
            if ok and isinstance(sample, GpuSample) and sample.available:
                gpus_available = True
            success.add_metric([sampler.name], 1.0 if ok else 0.0)
        yield from _merged(families)
        yield success
        yield duration
        yield last_success
        yield gauge_value(
            "lmwatch_gpu_available",
            "1 if at least one GPU is being read, 0 without a GPU, a driver or a GPU collector.",
            1.0 if gpus_available else 0.0,
        )
