"""The documents `/status` and `/admin` show (the shapes are `contract.py`'s): the registry snapshot
as an operator reads it."""

from __future__ import annotations

from typing import Any

from lmwatch import __version__
from lmwatch.api import contract
from lmwatch.registry import BackendInfo, Health, ModelInfo
from lmwatch.routing.select import concurrency_cap
from lmwatch.samplers.status import host_status
from lmwatch.services import Services


def status_document(services: Services) -> dict[str, Any]:
    """The `/status` JSON: the registry snapshot as an operator reads it. Unauthenticated, so it
    never carries a secret nor text a backend wrote (the full reasons are in `/admin/backends`)."""
    snap = services.registry.snapshot()
    document: contract.Status = {
        "version": __version__,
        "ready": snap.first_round_done,
        "generation": snap.generation,
        "backends": [backend_document(b, public=True) for b in snap.backends.values()],
        "host": host_status(snap),
        "requests": services.registry.outcomes.view().document(),
    }
    return {**document, **{name: section() for name, section in services.status_sections.items()}}


def backend_document(b: BackendInfo, public: bool = False) -> contract.Backend:
    """A backend as `/admin` shows it; `public` keeps only the kind of a failure (`auth`,
    `http_status`, ...) where the full reason quotes what the backend answered."""
    reason, last_error = b.health_reason, b.last_error
    if public:
        reason = b.public_reason
        last_error = None if b.last_error is None else reason
    cap, cap_from = concurrency_cap(b)
    return {
        "name": b.name,
        "url": b.config.public_url,
        "health": b.health.value,
        "reason": reason,
        "flavour": b.flavour,
        "version": b.version,
        "draining": b.draining,
        "labels": dict(b.config.labels),
        "weight": b.config.weight,
        "max_concurrency": cap,
        "max_concurrency_from": cap_from,
        "last_success": b.last_success,
        "last_probe": b.last_probe,
        "last_error": last_error,
        "probe_duration_seconds": b.probe_duration,
        "consecutive_failures": b.consecutive_failures,
        "models": [model_document(m, stale=b.health is Health.DOWN) for m in b.models],
    }


def model_document(m: ModelInfo, stale: bool) -> contract.Model:
    """`stale`: the backend is down, so this is what it reported at `last_success`, not what it holds now."""
    return {
        "id": m.id,
        "stale": stale,
        "model_type": m.model_type.value,
        "loaded": m.loaded,
        "instances": list(m.instance_ids),
        "publisher": m.publisher,
        "arch": m.arch,
        "quantization": m.quantization,
        "max_context_length": m.max_context_length,
        "loaded_context_length": m.loaded_context_length,
        "instance_context_lengths": {i: m.context_of(i) for i in m.instance_ids},
        "tool_use": m.tool_use,
        "vision": m.vision,
        "parallel": m.parallel,
    }
