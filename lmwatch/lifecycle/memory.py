"""How much GPU memory a model needs and how much a backend has free: the basis of placement and `lmwatch fit`.

A loaded model holds its weights (the `size_bytes` LM Studio reports) plus a KV cache that grows with
the context: a rule of thumb of `size_bytes / 32768` bytes per token (about 140 KiB per token for a
7B Q4 model). Free memory comes from `backends[].gpu_memory` minus what its loaded models hold, and
from GPU telemetry for a backend whose process runs on this host (the free memory of the GPUs it
uses); with both, the smaller counts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lmwatch import backends
from lmwatch.registry import BackendInfo, ModelInfo, Snapshot
from lmwatch.samplers.gpu import GpuSample

KV_BYTES_DIVISOR = 32768
DEFAULT_CONTEXT = 4096
"""The context an API load gets when none is asked for (LM Studio's usual default)."""


def kv_bytes_per_token(size_bytes: int) -> int:
    return max(1, size_bytes // KV_BYTES_DIVISOR)


def footprint(size_bytes: int, context_length: int) -> int:
    """Bytes a model of `size_bytes` holds once loaded with `context_length` tokens of context."""
    return size_bytes + context_length * kv_bytes_per_token(size_bytes)


def held(model: ModelInfo) -> int:
    """What a loaded model holds, per the same rule (each loaded instance counts)."""
    size = model.size_bytes or 0
    return footprint(size, model.loaded_context_length or DEFAULT_CONTEXT) * max(1, len(model.instance_ids))


def default_context(model: ModelInfo) -> int:
    return min(DEFAULT_CONTEXT, model.max_context_length or DEFAULT_CONTEXT)


@dataclass(frozen=True)
class Free:
    bytes: int
    source: str
    """`gpu_memory` (the configured budget) or `telemetry` (the GPUs the backend's process uses)."""


def free_memory(backend: BackendInfo, snap: Snapshot, exclude: frozenset[str] = frozenset()) -> Free | None:
    """The backend's free memory, counting the models in `exclude` as already unloaded; None = unknown."""
    found: list[Free] = []
    released = sum(held(m) for m in backend.loaded_models if m.id in exclude)
    budget = backend.config.gpu_memory
    if budget is not None:
        used = sum(held(m) for m in backend.loaded_models)
        found.append(Free(max(0, int(budget) - used + released), "gpu_memory"))
    telemetry = _telemetry_free(backend.name, snap)
    if telemetry is not None:
        found.append(Free(telemetry + released, "telemetry"))
    return min(found, key=lambda f: f.bytes) if found else None


def _telemetry_free(backend: str, snap: Snapshot) -> int | None:
    """Free memory of the GPUs the backend's process holds memory on, by every GPU vendor's sampler."""
    free: list[int] = []
    for status in snap.collectors.values():
        sample = status.sample
        if not isinstance(sample, GpuSample):
            continue
        uuids = {g.uuid for g in sample.gpus}
        indices = {entry.gpu for entry in sample.backend_memory if entry.backend == backend}
        free += [g.memory_free_bytes for g in snap.host.gpus if g.index in indices and g.uuid in uuids]
    return sum(free) if free else None


def gib(value: int) -> str:
    return f"{value / 1024**3:.1f} GiB"


@dataclass(frozen=True)
class Fit:
    """Whether `model` fits on `backend` now; `fits` None = cannot tell."""

    backend: str
    model: str
    fits: bool | None
    reason: str
    can_load: bool = False
    """The server loads over HTTP (LM Studio 0.4+); otherwise only its just-in-time loading can."""
    loaded: bool = False
    need_bytes: int | None = None
    free_bytes: int | None = None
    context_length: int | None = None
    """The context the estimate is for."""
    max_context_length: int | None = None
    """The largest context that fits in the free memory now (capped by the model's maximum)."""

    def document(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "model": self.model,
            "fits": self.fits,
            "reason": self.reason,
            "can_load": self.can_load,
            "loaded": self.loaded,
            "need_bytes": self.need_bytes,
            "free_bytes": self.free_bytes,
            "context_length": self.context_length,
            "max_context_length": self.max_context_length,
        }


def can_load(backend: BackendInfo) -> bool:
    flavour = backends.detected(backend.flavour)
    return flavour is not None and flavour.supports_load


def fit(
    backend: BackendInfo,
    snap: Snapshot,
    model_id: str,
    context_length: int | None = None,
    exclude: frozenset[str] = frozenset(),
) -> Fit:
    """Where `model_id` stands on `backend`: loaded, fits (with what context), does not fit, or unknown."""
    loadable = can_load(backend)
    info = backend.model(model_id)
    if info is None:
        return Fit(backend.name, model_id, False, "not downloaded on this backend", loadable)
    if info.loaded:
        return Fit(backend.name, model_id, True, "already loaded", loadable, loaded=True)
    if not backend.reachable:
        return Fit(backend.name, model_id, False, f"the backend is {backend.health.value}", loadable)
    if info.size_bytes is None:
        return Fit(backend.name, model_id, None, "the server does not report the model's size", loadable)
    ctx = context_length or default_context(info)
    need = footprint(info.size_bytes, ctx)
    free = free_memory(backend, snap, exclude)
    if free is None:
        return Fit(
            backend.name,
            model_id,
            None,
            f"needs {gib(need)} with {ctx} tokens of context; free memory unknown (set backends[].gpu_memory, "
            "or run lmwatch on the backend's host with GPU sampling)",
            loadable,
            need_bytes=need,
            context_length=ctx,
        )
    room = (free.bytes - info.size_bytes) // kv_bytes_per_token(info.size_bytes)
    most = max(0, min(room, info.max_context_length or room))
    fits = need <= free.bytes
    verdict = "fits" if fits else "does not fit"
    reason = f"{verdict}: needs {gib(need)} with {ctx} tokens of context, {gib(free.bytes)} free ({free.source})"
    reason += f"; up to {most} tokens of context would fit" if most else "; not even the weights fit"
    return Fit(backend.name, model_id, fits, reason, loadable, False, need, free.bytes, ctx, most)
