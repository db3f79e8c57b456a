"""Turns the samplers' last samples (kept in the registry) into metrics, at scrape time.

Families are built fresh on every scrape from the stored sample, so the series of a GPU or a process
that is gone disappear. Per-collector health follows node_exporter: success, duration and the time of
the last success for every collector. Nothing here raises out of a scrape.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, TypeVar

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.metrics.family import Family
from lmwatch.metrics.text import Format
from lmwatch.registry import Registry

log = logging.getLogger("lmwatch.metrics.samplers")

T = TypeVar("T")

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


class Sampler(Protocol):
    """What the collector needs of a sampler (`lmwatch/samplers/base.py`)."""

    name: str
    declared: tuple[Family, ...]
    keep_last_sample: bool

    def families(self, sample: Any) -> Iterable[Metric]: ...

    def lines(self, sample: Any) -> Mapping[str, str] | None: ...

    def reads_gpus(self, sample: Any) -> bool: ...


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
        self._texts: dict[tuple[str, bool], tuple[Any, str, list[str]]] = {}
        """(sampler, OpenMetrics?) -> (the sample rendered, its text, its family names)."""

    def describe(self) -> Iterable[Metric]:
        declared = dict.fromkeys(f for sampler in self.samplers for f in sampler.declared)  # two GPU vendors: once
        return [family.new() for family in (*declared, *OWN)]

    def collect(self) -> Iterable[Metric]:
        own, parts = self._read(lambda sampler, sample: list(sampler.families(sample)))
        return [*_merged(f for part in parts for f in part), *own]

    def render(self, fmt: Format) -> str:
        """As `collect`, with each sampler's families kept as text until it stores a new sample
        (the process sampler's 7 series per backend change every `process_interval`, not per scrape)."""
        own, parts = self._read(lambda sampler, sample: self._text(fmt, sampler, sample))
        names = [name for _, part_names in parts for name in part_names]
        if len(names) != len(set(names)):  # two samplers share families (two GPU vendors): merge them
            return fmt.families(self.collect())
        return "".join(text for text, _ in parts) + fmt.families(own)

    def _text(self, fmt: Format, sampler: Sampler, sample: Any) -> tuple[str, list[str]]:
        slot = (sampler.name, fmt.openmetrics)
        found = self._texts.get(slot)
        if found is None or found[0] is not sample:
            lines = sampler.lines(sample)
            if lines is None:
                families = list(_merged(sampler.families(sample)))
                found = (sample, fmt.families(families), [f.name for f in families])
            else:
                names = [f.name for f in sampler.declared if lines.get(f.name)]
                text = "".join(fmt.header_of(f) + lines[f.name] for f in sampler.declared if lines.get(f.name))
                found = (sample, text, names)
            self._texts[slot] = found
        return found[1], found[2]

    def _read(self, render: Callable[[Sampler, Any], T]) -> tuple[list[Metric], list[T]]:
        """Each sampler's part (`render(sampler, sample)`, guarded) and the collectors' health."""
        snapshot = self.registry.snapshot()
        success, duration, last_success = (family.new() for family in OWN[:3])
        gpus_available = False
        parts: list[T] = []
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
                    parts.append(render(sampler, sample))
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
        return [success, duration, last_success, GPU_AVAILABLE.value(float(gpus_available))], parts
