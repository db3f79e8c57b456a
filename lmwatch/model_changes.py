"""Loads and unloads the admin API asks for, through the lifecycle's loader (the backend's one load
slot, failure reasons, warm-up), with the refusals said in domain errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lmwatch import backends
from lmwatch.backend_changes import unknown_backend
from lmwatch.backends import BackendClient, Flavour
from lmwatch.errors import Conflict, DomainError, InvalidRequest, NotFound, Unavailable, UpstreamFailed
from lmwatch.lifecycle.loads import LoadError, LoadFailure
from lmwatch.services import Services
from lmwatch.watcher import Watcher

if TYPE_CHECKING:
    from lmwatch.lifecycle.manager import Lifecycle


class ModelChanges:
    def __init__(self, services: Services, watcher: Watcher) -> None:
        self._services = services
        self._watcher = watcher

    async def load(self, name: str, model: str, context_length: int | None) -> dict[str, Any]:
        """Load through the lifecycle's loader: the backend's one load slot, failure reasons, warm-up."""
        self._loader(name, "load")
        self.check_context(name, model, context_length)
        loader = self.lifecycle().loader
        try:
            async with loader.slot(name, model, loader.config.load_timeout):
                result = await loader.load(name, model, why="admin", context_length=context_length)
        except LoadError as exc:
            raise _load_failed(exc, f"backend {name!r} did not load {model!r}") from None
        return {
            "instance_id": result.instance_id,
            "load_seconds": round(result.load_seconds, 3),
            "warm_up_seconds": None if result.warm_up_seconds is None else round(result.warm_up_seconds, 3),
            "warm_up_error": result.warm_up_error,
        }

    def check_context(self, name: str, model: str, context_length: int | None) -> None:
        """A context the model cannot hold is the request's mistake (400), said before the backend
        refuses it in its own words (LM Studio answers HTTP 400, which would read as a backend failure)."""
        backend = self._services.registry.snapshot().backends.get(name)
        known = backend.model(model) if backend is not None else None
        most = known.max_context_length if known is not None else None
        if context_length is not None and most and context_length > most:
            raise InvalidRequest(
                f"context_length {context_length} is more than {model!r} can hold on backend {name!r} ({most} tokens)",
                param="context_length",
                code="context_length_exceeded",
            )

    async def unload(self, name: str, model: str) -> list[str]:
        self._loader(name, "unload")
        backend = self._services.registry.snapshot().backends[name]
        if not any(m.loaded and (m.id == model or model in m.instance_ids) for m in backend.models):
            message = f"backend {name!r} has no loaded model {model!r}"
            raise NotFound(message, param="model", code="model_not_found")
        try:
            return await self.lifecycle().loader.unload(name, model, why="admin")
        except LoadError as exc:
            raise _load_failed(exc, f"backend {name!r} did not unload {model!r}") from None

    def lifecycle(self) -> Lifecycle:
        """The model lifecycle (keep_loaded, placement, swap); 503 in apps built without one."""
        lifecycle = self._services.lifecycle
        if lifecycle is None:
            raise Unavailable("this lmwatch runs without model lifecycle", code="no_lifecycle")
        return lifecycle

    def _loader(self, name: str, verb: str) -> tuple[Flavour, BackendClient]:
        backend = self._services.registry.snapshot().backends.get(name)
        if backend is None:
            raise unknown_backend(name)
        flavour, client = backends.detected(backend.flavour), self._watcher.client_of(name)
        if flavour is None or client is None:
            raise Conflict(
                f"backend {name!r} has not answered a probe yet, so its API is unknown; try again once it is up",
                code="backend_not_probed",
            )
        if not flavour.supports_load:
            raise Conflict(
                f"backend {name!r} speaks {flavour.name}, which cannot {verb} models over HTTP "
                "(LM Studio 0.4+ can: /api/v1/models/load and /unload)",
                code="not_supported",
            )
        return flavour, client


def _load_failed(exc: LoadError, what: str) -> DomainError:
    """What the request asked for does not exist (404) or is not ours to do (409); the rest is the
    backend failing (502). Only that last is a server-side error."""
    if exc.kind is LoadFailure.NOT_FOUND:
        return NotFound(f"{what}: {exc}", code="model_not_found")
    if exc.kind in (LoadFailure.NOT_OWNER, LoadFailure.OUT_OF_MEMORY):  # the request does not fit the backend now
        return Conflict(f"{what}: {exc}", code=f"load_{exc.kind.value}")
    return UpstreamFailed(f"{what}: {exc}", code="upstream_error")
