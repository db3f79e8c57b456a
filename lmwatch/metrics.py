"""Prometheus series built at scrape time from the registry.

Collect-on-scrape means a removed backend or model simply stops appearing: no stale label sets. A
family that fails to build is logged and left out; the scrape itself always answers 200.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch import __version__
from lmwatch.registry import Health, ModelType, ProbeFailure, Registry, Snapshot

log = logging.getLogger("lmwatch.metrics")

FamilyBuilder = Callable[[Snapshot], Iterable[Metric]]


def backend_families(snap: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily(
        "lmwatch_backend_up", "1 when the backend answered its last probe with a usable API.", labels=["backend"]
    )
    state = GaugeMetricFamily(
        "lmwatch_backend_state",
        "1 for the backend's current health state (up, degraded, down, unknown).",
        labels=["backend", "state"],
    )
    duration = GaugeMetricFamily(
        "lmwatch_backend_probe_duration_seconds", "How long the last probe of the backend took.", labels=["backend"]
    )
    failures = CounterMetricFamily(
        "lmwatch_backend_probe_failures", "Failed probes of the backend, by reason.", labels=["backend", "reason"]
    )
    last_success = GaugeMetricFamily(
        "lmwatch_backend_last_success_timestamp_seconds",
        "Unix time of the backend's last successful probe.",
        labels=["backend"],
    )
    consecutive = GaugeMetricFamily(
        "lmwatch_backend_consecutive_failures", "Probes failed in a row (0 after a success).", labels=["backend"]
    )
    draining = GaugeMetricFamily(
        "lmwatch_backend_draining", "1 while the backend takes no new requests (operator drain).", labels=["backend"]
    )
    info = InfoMetricFamily(
        "lmwatch_backend",
        "The API flavour and server version lmwatch detected.",
        labels=["backend"],
    )
    for b in snap.backends.values():
        up.add_metric([b.name], 1.0 if b.reachable else 0.0)
        for h in Health:
            state.add_metric([b.name, h.value], 1.0 if b.health is h else 0.0)
        if b.probe_duration is not None:
            duration.add_metric([b.name], b.probe_duration)
        for reason in ProbeFailure:
            failures.add_metric([b.name, reason.value], float(b.probe_failures.get(reason, 0)))
        if b.last_success is not None:
            last_success.add_metric([b.name], b.last_success)
        consecutive.add_metric([b.name], float(b.consecutive_failures))
        draining.add_metric([b.name], 1.0 if b.draining else 0.0)
        if b.flavour:
            info.add_metric([b.name], {"flavour": b.flavour, "version": b.version or ""})
    yield from (up, state, duration, failures, last_success, consecutive, draining, info)


def model_families(snap: Snapshot) -> Iterator[Metric]:
    counts = GaugeMetricFamily(
        "lmwatch_models",
        "Models a backend knows, by model type and state (loaded, not_loaded).",
        labels=["backend", "model_type", "state"],
    )
    loaded = GaugeMetricFamily(
        "lmwatch_model_loaded",
        "1 when the model is loaded on the backend, 0 when only downloaded.",
        labels=["backend", "model", "model_type"],
    )
    instances = GaugeMetricFamily(
        "lmwatch_model_instances",
        "Loaded instances of the model (LM Studio names extra ones model:2, ...).",
        labels=["backend", "model"],
    )
    info = GaugeMetricFamily(
        "lmwatch_model_info",
        "Static facts about a model; always 1.",
        labels=["backend", "model", "arch", "quantization", "model_type"],
    )
    context = GaugeMetricFamily(
        "lmwatch_model_context_length_tokens",
        "Context length: the model's maximum, and the one it is loaded with.",
        labels=["backend", "model", "kind"],
    )
    slots = GaugeMetricFamily(
        "lmwatch_model_parallel_slots",
        "Parallel predictions the server runs for the model (where reported).",
        labels=["backend", "model"],
    )
    for b in snap.backends.values():
        if not b.reachable:
            continue
        tally = {(t, s): 0 for t in ModelType for s in ("loaded", "not_loaded")}
        for m in b.models:
            tally[(m.model_type, "loaded" if m.loaded else "not_loaded")] += 1
            loaded.add_metric([b.name, m.id, m.model_type.value], 1.0 if m.loaded else 0.0)
            instances.add_metric([b.name, m.id], float(len(m.instance_ids)))
            info.add_metric([b.name, m.id, m.arch or "", m.quantization or "", m.model_type.value], 1.0)
            if m.max_context_length:
                context.add_metric([b.name, m.id, "max"], float(m.max_context_length))
            if m.loaded and m.loaded_context_length:
                context.add_metric([b.name, m.id, "loaded"], float(m.loaded_context_length))
            if m.parallel:
                slots.add_metric([b.name, m.id], float(m.parallel))
        for (model_type, state), n in tally.items():
            counts.add_metric([b.name, model_type.value, state], float(n))
    yield from (counts, loaded, instances, info, context, slots)


def profile_families(snap: Snapshot) -> Iterator[Metric]:
    """The measured profiles (`lmwatch profile`): what the balancer assumes before live averages."""
    ttft = GaugeMetricFamily(
        "lmwatch_model_profile_time_to_first_token_seconds",
        "Measured time to the first token, for a short and a long prompt.",
        labels=["backend", "model", "prompt"],
    )
    prompt = GaugeMetricFamily(
        "lmwatch_model_profile_prompt_tokens_per_second",
        "Measured prompt processing speed.",
        labels=["backend", "model"],
    )
    generation = GaugeMetricFamily(
        "lmwatch_model_profile_generation_tokens_per_second",
        "Measured generation speed of one request.",
        labels=["backend", "model"],
    )
    throughput = GaugeMetricFamily(
        "lmwatch_model_profile_throughput_tokens_per_second",
        "Measured generation throughput of all requests together, by concurrent requests.",
        labels=["backend", "model", "concurrency"],
    )
    measured = GaugeMetricFamily(
        "lmwatch_model_profile_timestamp_seconds",
        "When the profile was measured (Unix time).",
        labels=["backend", "model"],
    )
    for p in snap.profiles.values():
        if p.backend not in snap.backends:
            continue
        labels = [p.backend, p.model]
        for kind, value in (("short", p.ttft_short_seconds), ("long", p.ttft_long_seconds)):
            if value is not None:
                ttft.add_metric([*labels, kind], value)
        if p.prompt_tokens_per_second is not None:
            prompt.add_metric(labels, p.prompt_tokens_per_second)
        if p.generation_tokens_per_second is not None:
            generation.add_metric(labels, p.generation_tokens_per_second)
        for point in p.throughput:
            throughput.add_metric([*labels, str(point.concurrency)], point.tokens_per_second)
        measured.add_metric(labels, p.measured_at)
    yield from (ttft, prompt, generation, throughput, measured)


def daemon_families(snap: Snapshot) -> Iterator[Metric]:
    build = InfoMetricFamily("lmwatch_build", "The running lmwatch version.", labels=[])
    build.add_metric([], {"version": __version__})
    ready = GaugeMetricFamily("lmwatch_ready", "1 once the config is loaded and the first poll round is done.")
    ready.add_metric([], 1.0 if snap.first_round_done else 0.0)
    yield from (build, ready)


class RegistryCollector(Collector):
    """Renders the registry's snapshot; one broken builder costs its families, never the scrape."""

    def __init__(self, registry: Registry, builders: Iterable[FamilyBuilder] | None = None) -> None:
        self._registry = registry
        self._builders = list(builders or (daemon_families, backend_families, model_families, profile_families))

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        snap = self._registry.snapshot()
        for build in self._builders:
            try:
                families = list(build(snap))
            except Exception:
                log.exception("metric builder %s failed; its series are left out of this scrape", build.__name__)
                continue
            yield from families


def new_metrics_registry(registry: Registry) -> CollectorRegistry:
    """A private Prometheus registry (no default `process_`/`python_` collectors: all series are lmwatch_).

    The `_created` series prometheus-client adds to counters and histograms are turned off: they double
    the series count and Prometheus does not need them to compute rates.
    """
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus-client leaves it unannotated
    metrics = CollectorRegistry(auto_describe=False)
    metrics.register(RegistryCollector(registry))
    return metrics
