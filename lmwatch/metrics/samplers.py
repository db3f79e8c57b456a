"""Turns the samplers' last samples (kept in the registry) into metrics, at scrape time.

Families are built fresh on every scrape from the stored sample, so the series of a GPU or a process
that is gone disappear. Per-collector health follows node_exporter: success, duration and the time of
the last success for every collector. Nothing here raises out of a scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.metrics.family import Family
from lmwatch.registry import Registry

if TYPE_CHECKING:
    from lmwatch.samplers.base import Sampler

log = logging.getLogger("lmwatch.metrics.samplers")

COLLECTOR_SUCCESS = Family(
    "lmwatch_collector_success",
    "gauge",
    "1 if the collector's last run succeeded (and its metrics could be rendered), else 0.",
    ("collector",),
)
COLLECTOR_DURATION = Family(
    "lmwatch_collector_duration_seconds", "gauge", "How long the collector's last run took.", ("collector",)
)
COLLECTOR_LAST_SUCCESS = Family(
    "lmwatch_collector_last_success_timestamp_seconds",
    "gauge",
    "When the collector last succeeded, in seconds since the epoch.",
    ("collector",),
)
GPU_AVAILABLE = Family(
    "lmwatch_gpu_available",
    "gauge",
    "1 if at least one GPU is being read, 0 without a GPU, a driver or a GPU collector.",
)
OWN = (COLLECTOR_SUCCESS, COLLECTOR_DURATION, COLLECTOR_LAST_SUCCESS, GPU_AVAILABLE)


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
        """Its own families; the samplers' ones depend on what they find (GPUs, backend processes),
        so the golden scrape test holds their names."""
        return [family.new() for family in OWN]

    def collect(self) -> Iterable[Metric]:
        snapshot = self.registry.snapshot()
        success, duration, last_success = (family.new() for family in OWN[:3])
        gpus_available = False
        families: list[Metric] = []
        for sampler in self.samplers:
            status = snapshot.collectors.get(sampler.name)
            ok = status is not None and status.success
            if status is not None:
                COLLECTOR_DURATION.add(duration, (sampler.name,), status.duration)
                if status.last_success is not None:
                    COLLECTOR_LAST_SUCCESS.add(last_success, (sampler.name,), status.last_success)
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
            if ok and sampler.reads_gpus(sample):
                gpus_available = True
            COLLECTOR_SUCCESS.add(success, (sampler.name,), 1.0 if ok else 0.0)
        return [*_merged(families), success, duration, last_success, GPU_AVAILABLE.value(float(gpus_available))]
