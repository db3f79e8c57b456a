"""The registry: the one in-memory source of truth about the fleet.

Pollers and samplers write it through the `record_*` methods; routing, metrics and the API read it
through `snapshot()`, which returns an immutable view, so a reader never sees a half-applied poll.
Every change that matters to an operator (a backend going up or down, a model loaded or unloaded) is
emitted as an event to subscribers and logged as one structured line.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from lmwatch.config import BackendConfig
from lmwatch.failures import FailureReason
from lmwatch.outcomes import RequestOutcomes

log = logging.getLogger("lmwatch.registry")

SLOW_PROBE_SECONDS = 2.0
"""A backend that takes longer than this to list its models is `degraded` (it is struggling)."""


class Health(StrEnum):
    UNKNOWN = "unknown"  # not probed yet
    UP = "up"
    DEGRADED = "degraded"  # reachable but erroring, slow, or no model loaded
    DOWN = "down"


class ModelType(StrEnum):
    LLM = "llm"
    VLM = "vlm"  # an LLM that takes images
    EMBEDDINGS = "embeddings"


@dataclass(frozen=True)
class ModelInfo:
    """One model a backend knows: loaded, or downloaded and loadable (JIT)."""

    id: str
    model_type: ModelType = ModelType.LLM
    loaded: bool = True
    instance_ids: tuple[str, ...] = ()
    """Ids of the loaded instances (`name`, `name:2`, ...); empty when not loaded."""
    publisher: str | None = None
    arch: str | None = None
    quantization: str | None = None
    format: str | None = None
    max_context_length: int | None = None
    loaded_context_length: int | None = None
    tool_use: bool = False
    vision: bool = False
    parallel: int | None = None
    """Parallel prediction slots the server reports for this model (LM Studio 0.4+)."""
    size_bytes: int | None = None
    instance_contexts: tuple[int | None, ...] = ()
    """The loaded context of each instance, in `instance_ids` order, where the server says it per
    instance (LM Studio 0.4's `loaded_instances[].config.context_length`)."""
    capabilities_reported: bool = True
    """False when the server lists the model without saying its type, vision or tool use (a plain
    OpenAI-compatible `/v1`): the registry then fills them in from the capability table."""

    def context_of(self, instance_id: str) -> int | None:
        """Tokens an instance can hold: its own loaded context, else the model's loaded, else its max."""
        if instance_id in self.instance_ids:
            index = self.instance_ids.index(instance_id)
            if index < len(self.instance_contexts) and self.instance_contexts[index]:
                return self.instance_contexts[index]
        return self.loaded_context_length or self.max_context_length


@dataclass(frozen=True)
class ProbeResult:
    """What one successful poll learned from a backend."""

    flavour: str
    models: tuple[ModelInfo, ...]
    duration: float
    version: str | None = None
    warnings: tuple[str, ...] = ()
    """Partial problems (a richer API failed, an entry was skipped): they make the backend degraded."""


@dataclass(frozen=True)
class BackendInfo:
    """Everything known about one backend at one moment."""

    name: str
    url: str
    config: BackendConfig
    health: Health = Health.UNKNOWN
    health_reason: str = "not probed yet"
    public_reason: str = "not probed yet"
    """`health_reason` without text the backend wrote, for the unauthenticated `/status`."""
    flavour: str | None = None
    version: str | None = None
    models: tuple[ModelInfo, ...] = ()
    last_success: float | None = None
    last_probe: float | None = None
    last_error: str | None = None
    last_error_reason: FailureReason | None = None
    probe_duration: float | None = None
    consecutive_failures: int = 0
    probe_failures: Mapping[FailureReason, int] = field(default_factory=dict)
    draining: bool = False
    retiring: frozenset[str] = frozenset()
    """Models lmwatch is about to unload (swap, idle unload): routing sends new requests elsewhere first."""

    @property
    def reachable(self) -> bool:
        return self.health in (Health.UP, Health.DEGRADED)

    @property
    def loaded_models(self) -> tuple[ModelInfo, ...]:
        return tuple(m for m in self.models if m.loaded)

    def model(self, model_id: str) -> ModelInfo | None:
        return next((m for m in self.models if m.id == model_id), None)


@dataclass(frozen=True)
class GpuPressure:
    index: int
    uuid: str
    name: str
    memory_total_bytes: int
    memory_free_bytes: int
    utilization_ratio: float | None = None


@dataclass(frozen=True)
class HostPressure:
    """The resource summary routing reads to steer away from a starved machine."""

    cpu_load_ratio: float | None = None
    """1-minute load average divided by the number of CPUs."""
    memory_total_bytes: int | None = None
    memory_available_bytes: int | None = None
    gpus: tuple[GpuPressure, ...] = ()
    backend_gpu_memory_bytes: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectorStatus:
    """The outcome of a sampler's last run (node_exporter's per-collector health)."""

    name: str
    success: bool
    duration: float
    last_success: float | None
    error: str | None = None
    sample: Any = None
    """The sampler's last good sample; its metrics are rendered from it at scrape time."""


@dataclass(frozen=True)
class ThroughputPoint:
    """Generation throughput with `concurrency` requests at once (up to the model's parallel slots)."""

    concurrency: int
    tokens_per_second: float
    """All requests together: completion tokens of all of them / the wall time."""
    per_request_tokens_per_second: float | None
    """The mean generation speed one of those requests saw."""


@dataclass(frozen=True)
class ModelProfile:
    """What `lmwatch profile` measured for one model on one backend (kept in the state directory).

    For an embedding model the short and long "first token" times are the latencies of one short and
    one long input, and the prompt speed is tokens embedded per second.
    """

    backend: str
    model: str
    model_type: ModelType
    measured_at: float
    quantization: str | None = None
    context_length: int | None = None
    """The loaded context when measured: a profile of another load configuration is measured again."""
    ttft_short_seconds: float | None = None
    ttft_long_seconds: float | None = None
    prompt_tokens_short: int | None = None
    prompt_tokens_long: int | None = None
    prompt_tokens_per_second: float | None = None
    generation_tokens_per_second: float | None = None
    chars_per_token: float | None = None
    throughput: tuple[ThroughputPoint, ...] = ()
    error: str | None = None
    """Why the measurement is incomplete (the numbers it has are still kept)."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.backend, self.model)

    def summary(self) -> dict[str, Any]:
        """The headline numbers (what `/status`, `/admin/route/explain` and `lmwatch compare` show)."""
        best = max(self.throughput, key=lambda p: p.tokens_per_second, default=None)
        return {
            "backend": self.backend,
            "model": self.model,
            "model_type": self.model_type.value,
            "measured_at": self.measured_at,
            "quantization": self.quantization,
            "context_length": self.context_length,
            "ttft_short_seconds": self.ttft_short_seconds,
            "ttft_long_seconds": self.ttft_long_seconds,
            "prompt_tokens_per_second": self.prompt_tokens_per_second,
            "generation_tokens_per_second": self.generation_tokens_per_second,
            "peak_tokens_per_second": best.tokens_per_second if best else None,
            "peak_concurrency": best.concurrency if best else None,
        }


@dataclass(frozen=True)
class Snapshot:
    """An immutable view of the registry; readers keep it as long as they like."""

    backends: Mapping[str, BackendInfo]
    first_round_done: bool
    generation: int
    taken_at: float
    host: HostPressure = field(default_factory=HostPressure)
    collectors: Mapping[str, CollectorStatus] = field(default_factory=dict)
    profiles: Mapping[tuple[str, str], ModelProfile] = field(default_factory=dict)
    """Measured profiles by (backend, model), loaded from the state directory at start."""
    routes: object = field(default_factory=object, compare=False)
    """The same object in every snapshot whose backends route alike: what routing reads of them
    (health, models, flavour, draining, config...) is unchanged, only probe timings and counts
    moved. Plans made for one snapshot hold for the next with the same `routes`."""

    def backend(self, name: str) -> BackendInfo | None:
        return self.backends.get(name)


@dataclass(frozen=True)
class Event:
    """A change worth telling: `backend_added`, `backend_removed`, `backend_health`,
    `model_loaded`, `model_unloaded`, `backend_draining`, `model_retiring`."""

    kind: str
    backend: str
    detail: Mapping[str, Any] = field(default_factory=dict)


Listener = Callable[[Event], None]


class Registry:
    """Holds the fleet state. All methods run on the event loop; none of them blocks."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._backends: dict[str, BackendInfo] = {}
        self._first_round_done = False
        self._generation = 0
        self._routes = object()
        self._host = HostPressure()
        self._pressure_parts: dict[str, dict[str, Any]] = {}
        """Each sampler's part of `_host`, by sampler name: two GPU vendors each own their GPUs."""
        self._collectors: dict[str, CollectorStatus] = {}
        self._profiles: dict[tuple[str, str], ModelProfile] = {}
        self._snapshot = self._build()
        self._listeners: list[Listener] = []
        self._waiters: list[tuple[Callable[[Snapshot], bool], asyncio.Future[Snapshot]]] = []
        self._describe: Callable[[ModelInfo], ModelInfo] | None = None
        self.outcomes = RequestOutcomes(lambda: self._snapshot.profiles, clock)
        """The request path's state (in-flight, speeds, breakers), kept beside the fleet it is about."""
        self.subscribe(self._tell_outcomes)

    def _tell_outcomes(self, event: Event) -> None:
        """What the pollers saw that the request path's state depends on (the first listener)."""
        if event.kind in ("model_loaded", "model_unloaded"):
            self.outcomes.model_changed(event.backend, str(event.detail.get("model")))
        elif event.kind == "backend_removed":
            self.outcomes.forget(event.backend)
        elif event.kind == "backend_health" and event.detail.get("to") == Health.DOWN.value:
            backend = self._snapshot.backend(event.backend)
            self.outcomes.backend_down(event.backend, [m.id for m in backend.models] if backend else [])
        elif event.kind == "backend_health" and event.detail.get("from") == Health.DOWN.value:
            self.outcomes.backend_back(event.backend)

    # --- reading ---------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Call `listener` for every event; returns the function that unsubscribes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def wait_for(self, predicate: Callable[[Snapshot], bool], timeout: float | None = None) -> Snapshot:
        """Wait until a snapshot satisfies `predicate` (tests and readiness await this, never sleep)."""
        if predicate(self._snapshot):
            return self._snapshot
        future: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # --- writing ---------------------------------------------------------------------------------

    def configure_backends(self, configs: Sequence[BackendConfig]) -> None:
        """Make the set of backends match `configs`; a backend whose URL is unchanged keeps its state."""
        wanted = {c.name: c for c in configs}
        events: list[Event] = []
        for name in list(self._backends):
            if name not in wanted:
                del self._backends[name]
                events.append(Event("backend_removed", name))
        for name, cfg in wanted.items():
            current = self._backends.get(name)
            if current is None or current.url != cfg.base_url:
                self._backends[name] = BackendInfo(name=name, url=cfg.base_url, config=cfg)
                if current is None:
                    events.append(Event("backend_added", name, {"url": cfg.public_url}))
            else:
                self._backends[name] = dataclasses.replace(current, config=cfg)
        self._publish(events)

    def describe_models(self, describe: Callable[[ModelInfo], ModelInfo]) -> None:
        """How a model the server says nothing about is described (the capability table in force);
        applied from the next poll on."""
        self._describe = describe

    def record_success(self, name: str, result: ProbeResult) -> None:
        current = self._backends.get(name)
        if current is None:  # removed while its poll was in flight
            return
        describe = self._describe
        models = result.models
        if describe is not None and not all(m.capabilities_reported for m in models):
            models = tuple(m if m.capabilities_reported else describe(m) for m in models)
        health, reason, public = _judge(result)
        now = self._clock()
        if _same_answer(current, result, models, health, reason, public):
            self._backends[name] = _probed_again(current, now, result.duration)
            self._publish((), routes=False)
            return
        updated = dataclasses.replace(
            current,
            health=health,
            health_reason=reason,
            public_reason=public,
            flavour=result.flavour,
            version=result.version or current.version,
            models=models,
            last_success=now,
            last_probe=now,
            last_error=None if health is Health.UP else reason,
            last_error_reason=None,
            probe_duration=result.duration,
            consecutive_failures=0,
        )
        self._backends[name] = updated
        events = [*_health_events(current, updated), *_model_events(current, updated)]
        self._publish(events, routes=_routes_differently(current, updated))

    def record_failure(self, name: str, reason: FailureReason, message: str, duration: float) -> None:
        current = self._backends.get(name)
        if current is None:
            return
        failures = dict(current.probe_failures)
        failures[reason] = failures.get(reason, 0) + 1
        updated = dataclasses.replace(
            current,
            health=Health.DOWN,
            health_reason=f"{reason.value}: {message}",
            public_reason=reason.value,
            last_probe=self._clock(),
            last_error=message,
            last_error_reason=reason,
            probe_duration=duration,
            consecutive_failures=current.consecutive_failures + 1,
            probe_failures=MappingProxyType(failures),
        )
        self._backends[name] = updated
        self._publish(list(_health_events(current, updated)), routes=_routes_differently(current, updated))

    def set_draining(self, name: str, draining: bool) -> bool:
        current = self._backends.get(name)
        if current is None:
            return False
        if current.draining != draining:
            self._backends[name] = dataclasses.replace(current, draining=draining)
            self._publish([Event("backend_draining", name, {"draining": draining})])
        return True

    def set_retiring(self, name: str, model: str, retiring: bool) -> None:
        """Mark `model` on backend `name` as about to go (or no longer): new requests prefer other models."""
        current = self._backends.get(name)
        if current is None:
            return
        models = current.retiring | {model} if retiring else current.retiring - {model}
        if models != current.retiring:
            self._backends[name] = dataclasses.replace(current, retiring=frozenset(models))
            self._publish([Event("model_retiring", name, {"model": model, "retiring": retiring})])

    def record_collector(
        self, name: str, success: bool, duration: float, sample: Any = None, error: str | None = None
    ) -> None:
        """A sampler reports its run; a failed run keeps the last good sample."""
        previous = self._collectors.get(name)
        self._collectors[name] = CollectorStatus(
            name=name,
            success=success,
            duration=duration,
            last_success=self._clock() if success else (previous.last_success if previous else None),
            error=error,
            sample=sample if success else (previous.sample if previous else None),
        )
        self._publish([], routes=False)

    def record_host_pressure(self, source: str, **changes: Any) -> None:
        """Set `source`'s part of the host summary (the host sampler CPU/memory, each GPU sampler its
        GPUs); the parts are merged, so one GPU vendor's report never drops another's GPUs."""
        self._pressure_parts[source] = changes
        gpus: list[GpuPressure] = []
        per_backend: dict[str, int] = {}
        scalars: dict[str, Any] = {}
        for part in self._pressure_parts.values():
            for key, value in part.items():
                if key == "gpus":
                    gpus.extend(value)
                elif key == "backend_gpu_memory_bytes":
                    for backend, used in value.items():
                        per_backend[backend] = per_backend.get(backend, 0) + used
                else:
                    scalars[key] = value
        self._host = HostPressure(**scalars, gpus=tuple(gpus), backend_gpu_memory_bytes=per_backend)
        self._publish([], routes=False)

    def record_profiles(self, profiles: Iterable[ModelProfile]) -> None:
        """Store measured profiles (a new measurement of a model replaces the old one)."""
        for profile in profiles:
            self._profiles[profile.key] = profile
        self._publish([])

    def mark_first_round_done(self) -> None:
        if not self._first_round_done:
            self._first_round_done = True
            self._publish([])

    # --- internals -------------------------------------------------------------------------------

    def _build(self) -> Snapshot:
        return Snapshot(
            backends=MappingProxyType(dict(self._backends)),
            first_round_done=self._first_round_done,
            generation=self._generation,
            taken_at=self._clock(),
            host=self._host,
            collectors=MappingProxyType(dict(self._collectors)),
            profiles=MappingProxyType(dict(self._profiles)),
            routes=self._routes,
        )

    def _publish(self, events: Iterable[Event], routes: bool = True) -> None:
        """A new snapshot; `routes`: what routing reads of the backends may have changed."""
        self._generation += 1
        if routes:
            self._routes = object()
        self._snapshot = self._build()
        for event in events:
            log.info(
                "%s %s %s",
                event.kind,
                event.backend,
                " ".join(f"{k}={v}" for k, v in event.detail.items()),
                extra={"event": event.kind, "backend": event.backend, **dict(event.detail)},
            )
            for listener in list(self._listeners):
                try:
                    listener(event)
                except Exception:  # a broken listener must not break the poller
                    log.exception("registry listener failed on %s", event.kind)
        for predicate, future in list(self._waiters):
            if not future.done() and predicate(self._snapshot):
                future.set_result(self._snapshot)


def _judge(result: ProbeResult) -> tuple[Health, str, str]:
    """The health, its reason and the reason without backend-written text (warnings quote it)."""
    if result.warnings:
        return Health.DEGRADED, "; ".join(result.warnings), f"partial answer ({len(result.warnings)} warnings)"
    if not any(m.loaded for m in result.models):
        return Health.DEGRADED, "no model loaded", "no model loaded"
    if result.duration > SLOW_PROBE_SECONDS:
        slow = f"slow probe ({result.duration:.1f} s)"
        return Health.DEGRADED, slow, slow
    return Health.UP, "ok", "ok"


def _same_answer(
    current: BackendInfo, result: ProbeResult, models: tuple[ModelInfo, ...], health: Health, reason: str, public: str
) -> bool:
    """Whether a successful poll told what the last one did: the same models (the very objects when
    the answer's bytes were the same, so the compare is one identity check each), health, flavour."""
    return (
        health is current.health
        and current.consecutive_failures == 0
        and current.last_error_reason is None
        and reason == current.health_reason
        and public == current.public_reason
        and result.flavour == current.flavour
        and (result.version is None or result.version == current.version)
        and models == current.models
    )


def _probed_again(info: BackendInfo, at: float, duration: float) -> BackendInfo:
    """`info` polled again with the same answer: new probe times, every other field as it was.
    A copy of its fields, since `dataclasses.replace` runs the whole constructor again (a third of
    the registry's part of an unchanged poll)."""
    probed = object.__new__(BackendInfo)
    fields = probed.__dict__
    fields.update(info.__dict__)
    fields["last_success"] = fields["last_probe"] = at
    fields["probe_duration"] = duration
    return probed


def _routes_differently(old: BackendInfo, new: BackendInfo) -> bool:
    """Whether routing may treat `new` otherwise than `old` (a poll that only refreshed the
    timings of an unchanged backend does not: its model list is the same objects)."""
    facts = ("health", "public_reason", "flavour", "version", "models", "draining", "retiring", "config")
    return any(getattr(old, f) != getattr(new, f) for f in facts)


def _health_events(old: BackendInfo, new: BackendInfo) -> Iterable[Event]:
    if old.health != new.health:
        yield Event(
            "backend_health",
            new.name,
            {"from": old.health.value, "to": new.health.value, "reason": new.health_reason},
        )


def _model_events(old: BackendInfo, new: BackendInfo) -> Iterable[Event]:
    before = {m.id for m in old.models if m.loaded}
    after = {m.id for m in new.models if m.loaded}
    for model in sorted(after - before):
        yield Event("model_loaded", new.name, {"model": model})
    for model in sorted(before - after):
        yield Event("model_unloaded", new.name, {"model": model})
