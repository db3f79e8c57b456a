"""The interface every resource sampler implements.

A sampler reads one source (psutil, NVML, ...) into an immutable sample, off the event loop; the
runner stores the sample in the registry, and the metrics collector turns the stored sample into
metric families at scrape time. A new source is one new module with one `Sampler` subclass, plus one
line in `build_samplers`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from prometheus_client.metrics_core import Metric

from lmwatch.metrics.family import Family
from lmwatch.registry import Snapshot


class SamplerUnavailable(Exception):
    """The source cannot be read right now (no driver, no library) and the sampler has already said
    so in the log: the runner records the failure without logging it again."""


class Sampler(ABC):
    """One source of resource figures."""

    name: str
    """The `collector` label value ("host", "process", "gpu"); also the key in `snapshot.collectors`."""
    interval: float
    """Seconds between two samples."""
    declared: tuple[Family, ...] = ()
    """The families `families` yields (declared in `lmwatch/metrics/telemetry.py`), for `describe()`."""
    keep_last_sample: bool = True
    """Whether the metrics of the last good sample are still served while the latest run fails.
    False for sources whose failure means their objects are gone (a GPU driver unloaded)."""

    @abstractmethod
    def sample(self, snapshot: Snapshot) -> Any:
        """Read the source. BLOCKING: the runner calls it in a worker thread, never two at once.

        `snapshot` shows the configured backends and the other collectors' last samples
        (`snapshot.collectors[name].sample`). Raise to report a failed run.
        """

    @abstractmethod
    def families(self, sample: Any) -> Iterable[Metric]:
        """The metric families for one stored sample; cheap, called at scrape time."""

    def lines(self, sample: Any) -> Mapping[str, str] | None:
        """Family name -> the sample lines of `families`, rendered beforehand (with the sample, off
        the event loop), for a sampler with many series; None: a scrape renders `families`."""
        return None

    def reads_gpus(self, sample: Any) -> bool:
        """Whether this sample shows at least one GPU being read (`lmwatch_gpu_available`)."""
        return False

    def pressure(self, sample: Any) -> dict[str, Any]:
        """Changes for `Registry.record_host_pressure`, from a sample (None after a failed run)."""
        return {}

    def close(self) -> None:
        """Release what the sampler holds (a library handle); called once when sampling stops."""
        return None


class OnceLog:
    """Log a condition once per key, until it clears; repeats in the meantime are silent."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._active: dict[str, str] = {}

    def problem(self, key: str, state: str, level: int, msg: str, *args: object) -> None:
        """Log `msg` unless `key` is already in `state`."""
        if self._active.get(key) != state:
            self._active[key] = state
            self._log.log(level, msg, *args)

    def clear(self, key: str, msg: str | None = None, *args: object) -> None:
        """The condition for `key` is over; log `msg` (at info) if there was one."""
        if self._active.pop(key, None) is not None and msg:
            self._log.info(msg, *args)

    def keep_only(self, keys: Iterable[str]) -> None:
        """Forget, silently, the conditions of keys not in `keys` (a backend that was removed)."""
        wanted = set(keys)
        for key in [k for k in self._active if k not in wanted]:
            del self._active[key]
