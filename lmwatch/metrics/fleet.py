"""Backends, models, measured profiles and readiness, read from the registry at scrape time.

Collect-on-scrape means a removed backend or model simply stops appearing: no stale label sets.
Per-backend series are most of a scrape (about 47 of a backend's 55 with four models), so they are
kept as text per backend and part (`PARTS`): a part is rendered again only when the fields it reads
changed, which for a fleet polled every second is the probe timings and little else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch import __version__, build
from lmwatch.failures import PROBE_REASONS
from lmwatch.metrics.family import Family
from lmwatch.metrics.text import Format, KeptRows, Row, collect_rows
from lmwatch.registry import BackendInfo, Health, ModelType, Registry

BACKEND = ("backend",)
MODEL = ("backend", "model")

BACKEND_UP = Family(
    "lmwatch_backend_up", "gauge", "1 when the backend answered its last probe with a usable API.", BACKEND
)
BACKEND_STATE = Family(
    "lmwatch_backend_state",
    "gauge",
    "1 for the backend's current health state (up, degraded, down, unknown).",
    ("backend", "state"),
)
PROBE_DURATION = Family(
    "lmwatch_backend_probe_duration_seconds", "gauge", "How long the last probe of the backend took.", BACKEND
)
PROBE_FAILURES = Family(
    "lmwatch_backend_probe_failures", "counter", "Failed probes of the backend, by reason.", ("backend", "reason")
)
LAST_SUCCESS = Family(
    "lmwatch_backend_last_success_timestamp_seconds",
    "gauge",
    "Unix time of the backend's last successful probe.",
    BACKEND,
)
CONSECUTIVE_FAILURES = Family(
    "lmwatch_backend_consecutive_failures", "gauge", "Probes failed in a row (0 after a success).", BACKEND
)
DRAINING = Family(
    "lmwatch_backend_draining", "gauge", "1 while the backend takes no new requests (operator drain).", BACKEND
)
BACKEND_INFO = Family("lmwatch_backend", "info", "The API flavour and server version lmwatch detected.", BACKEND)

MODELS = Family(
    "lmwatch_models",
    "gauge",
    "Models a backend knows, by model type and state (loaded, not_loaded).",
    ("backend", "model_type", "state"),
)
MODEL_LOADED = Family(
    "lmwatch_model_loaded",
    "gauge",
    "1 when the model is loaded on the backend, 0 when only downloaded.",
    ("backend", "model", "model_type"),
)
MODEL_INSTANCES = Family(
    "lmwatch_model_instances",
    "gauge",
    "Loaded instances of the model (LM Studio names extra ones model:2, ...).",
    MODEL,
)
MODEL_INFO = Family(
    "lmwatch_model_info",
    "gauge",
    "Static facts about a model; always 1.",
    ("backend", "model", "arch", "quantization", "model_type"),
)
MODEL_CONTEXT = Family(
    "lmwatch_model_context_length_tokens",
    "gauge",
    "Context length: the model's maximum, and the one it is loaded with.",
    ("backend", "model", "kind"),
)
MODEL_SLOTS = Family(
    "lmwatch_model_parallel_slots",
    "gauge",
    "Parallel predictions the server runs for the model (where reported).",
    MODEL,
)

PROFILE_TTFT = Family(
    "lmwatch_model_profile_time_to_first_token_seconds",
    "gauge",
    "Measured time to the first token, for a short and a long prompt.",
    ("backend", "model", "prompt"),
)
PROFILE_PROMPT = Family(
    "lmwatch_model_profile_prompt_tokens_per_second", "gauge", "Measured prompt processing speed.", MODEL
)
PROFILE_GENERATION = Family(
    "lmwatch_model_profile_generation_tokens_per_second", "gauge", "Measured generation speed of one request.", MODEL
)
PROFILE_THROUGHPUT = Family(
    "lmwatch_model_profile_throughput_tokens_per_second",
    "gauge",
    "Measured generation throughput of all requests together, by concurrent requests.",
    ("backend", "model", "concurrency"),
)
PROFILE_MEASURED = Family(
    "lmwatch_model_profile_timestamp_seconds", "gauge", "When the profile was measured (Unix time).", MODEL
)

BUILD = Family("lmwatch_build", "info", "The running lmwatch version and build (mypyc: compiled, or python).")
READY = Family("lmwatch_ready", "gauge", "1 once the config is loaded and the first poll round is done.")


def backend_rows(b: BackendInfo) -> Iterator[Row]:
    yield BACKEND_UP, (b.name,), 1.0 if b.reachable else 0.0, None
    for h in Health:
        yield BACKEND_STATE, (b.name, h.value), 1.0 if b.health is h else 0.0, None
    for reason in PROBE_REASONS:
        yield PROBE_FAILURES, (b.name, reason.value), float(b.probe_failures.get(reason, 0)), None
    yield CONSECUTIVE_FAILURES, (b.name,), float(b.consecutive_failures), None
    yield DRAINING, (b.name,), 1.0 if b.draining else 0.0, None
    if b.flavour:
        yield BACKEND_INFO, (b.name,), 1.0, {"flavour": b.flavour, "version": b.version or ""}


def probe_rows(b: BackendInfo) -> Iterator[Row]:
    if b.probe_duration is not None:
        yield PROBE_DURATION, (b.name,), b.probe_duration, None
    if b.last_success is not None:
        yield LAST_SUCCESS, (b.name,), b.last_success, None


def model_rows(b: BackendInfo) -> Iterator[Row]:
    if not b.reachable:
        return
    tally = {(t, s): 0 for t in ModelType for s in ("loaded", "not_loaded")}
    for m in b.models:
        tally[(m.model_type, "loaded" if m.loaded else "not_loaded")] += 1
        yield MODEL_LOADED, (b.name, m.id, m.model_type.value), 1.0 if m.loaded else 0.0, None
        yield MODEL_INSTANCES, (b.name, m.id), float(len(m.instance_ids)), None
        yield MODEL_INFO, (b.name, m.id, m.arch or "", m.quantization or "", m.model_type.value), 1.0, None
        if m.max_context_length:
            yield MODEL_CONTEXT, (b.name, m.id, "max"), float(m.max_context_length), None
        if m.loaded and m.loaded_context_length:
            yield MODEL_CONTEXT, (b.name, m.id, "loaded"), float(m.loaded_context_length), None
        if m.parallel:
            yield MODEL_SLOTS, (b.name, m.id), float(m.parallel), None
    for (model_type, state), n in tally.items():
        yield MODELS, (b.name, model_type.value, state), float(n), None


@dataclass(frozen=True)
class Part:
    """Families whose rows for one backend depend on `key(backend)` alone."""

    name: str
    families: tuple[Family, ...]
    key: Callable[[BackendInfo], object]
    rows: Callable[[BackendInfo], Iterator[Row]]


PARTS = (
    Part(
        "backend",
        (BACKEND_UP, BACKEND_STATE, PROBE_FAILURES, CONSECUTIVE_FAILURES, DRAINING, BACKEND_INFO),
        lambda b: (b.health, b.probe_failures, b.consecutive_failures, b.draining, b.flavour, b.version),
        backend_rows,
    ),
    Part("probe", (PROBE_DURATION, LAST_SUCCESS), lambda b: (b.probe_duration, b.last_success), probe_rows),
    Part(
        "models",
        (MODELS, MODEL_LOADED, MODEL_INSTANCES, MODEL_INFO, MODEL_CONTEXT, MODEL_SLOTS),
        lambda b: (b.reachable, b.models),
        model_rows,
    ),
)


class BackendCollector(Collector):
    """The per-backend families, in `PARTS` order; `render` reuses the text of unchanged parts."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._kept = {part.name: KeptRows() for part in PARTS}

    def describe(self) -> Iterable[Metric]:
        return [family.new() for part in PARTS for family in part.families]

    def collect(self) -> Iterable[Metric]:
        backends = self._registry.snapshot().backends.values()
        for part in PARTS:
            yield from collect_rows(part.families, (row for b in backends for row in part.rows(b)))

    def chunks(self, fmt: Format) -> Iterator[str]:
        """The text, in pieces with pause points between slices of backends (`KeptRows.chunks`)."""
        backends = self._registry.snapshot().backends.values()
        for part in PARTS:
            groups = ((b.name, part.key(b), partial(part.rows, b)) for b in backends)
            yield from self._kept[part.name].chunks(fmt, part.families, groups)


class ProfileCollector(Collector):
    """The measured profiles (`lmwatch profile`): what the balancer assumes before live averages."""

    FAMILIES = (PROFILE_TTFT, PROFILE_PROMPT, PROFILE_GENERATION, PROFILE_THROUGHPUT, PROFILE_MEASURED)

    def __init__(self, registry: Registry) -> None:
        self._registry = registry

    def describe(self) -> Iterable[Metric]:
        return [family.new() for family in self.FAMILIES]

    def collect(self) -> Iterable[Metric]:
        snap = self._registry.snapshot()
        ttft, prompt, generation, throughput, measured = (family.new() for family in self.FAMILIES)
        for p in snap.profiles.values():
            if p.backend not in snap.backends:
                continue
            labels = (p.backend, p.model)
            for kind, value in (("short", p.ttft_short_seconds), ("long", p.ttft_long_seconds)):
                if value is not None:
                    PROFILE_TTFT.add(ttft, (*labels, kind), value)
            if p.prompt_tokens_per_second is not None:
                PROFILE_PROMPT.add(prompt, labels, p.prompt_tokens_per_second)
            if p.generation_tokens_per_second is not None:
                PROFILE_GENERATION.add(generation, labels, p.generation_tokens_per_second)
            for point in p.throughput:
                PROFILE_THROUGHPUT.add(throughput, (*labels, str(point.concurrency)), point.tokens_per_second)
            PROFILE_MEASURED.add(measured, labels, p.measured_at)
        return [ttft, prompt, generation, throughput, measured]


class DaemonCollector(Collector):
    """The version and readiness."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._build = {"version": __version__, "build": build.kind()}

    def describe(self) -> Iterable[Metric]:
        return [BUILD.new(), READY.new()]

    def collect(self) -> Iterable[Metric]:
        info = BUILD.new()
        BUILD.add(info, (), 1.0, self._build)
        return [info, READY.value(1.0 if self._registry.snapshot().first_round_done else 0.0)]
