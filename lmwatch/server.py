"""The HTTP server: health, readiness, status and metrics handlers, and the app that carries them.

Other concerns (the `/v1` router, `/admin`) attach their routes with a `setup(app)` function, so
this module stays the same when they grow.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from lmwatch import __version__
from lmwatch.api import contract
from lmwatch.api.auth import Handler, is_admin, is_v1
from lmwatch.api.errors import ApiError
from lmwatch.connections import CONNECTIONS, Connections
from lmwatch.registry import BackendInfo, Health, ModelInfo
from lmwatch.routing.select import concurrency_cap
from lmwatch.samplers.status import host_status
from lmwatch.services import SERVICES, Services

Setup = Callable[[web.Application], None]


async def healthz(request: web.Request) -> web.Response:
    """Alive: the event loop answers. Says nothing about backends (that is /readyz and /status)."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    snap = request.app[SERVICES].registry.snapshot()
    if snap.first_round_done:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "starting", "reason": "first poll round not done"}, status=503)


async def metrics(request: web.Request) -> web.Response:
    """The scrape, rendered one collector at a time with the loop let run in between (a scrape of
    hundreds of backends must not stall the requests being proxied)."""
    _, content_type = choose_encoder(request.headers.get("Accept", ""))
    parts = []
    for chunk in request.app[SERVICES].metrics.chunks(content_type.startswith("application/openmetrics-text")):
        parts.append(chunk)
        await asyncio.sleep(0)
    response = web.Response(body="".join(parts).encode())
    response.headers["Content-Type"] = content_type
    return response


async def status(request: web.Request) -> web.Response:
    return web.json_response(status_document(request.app[SERVICES]))


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


class InFlight:
    """Requests being handled now, so a stop can wait exactly `shutdown_grace` for them (aiohttp's
    own shutdown waits its timeout twice: for handlers to finish, then again after asking them to)."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        self._idle.clear()

    def leave(self) -> None:
        self.count -= 1
        if self.count == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:
        """True once nothing is in flight; False when `timeout` passed first."""
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


INFLIGHT = web.AppKey("lmwatch_inflight", InFlight)


@web.middleware
async def in_flight(request: web.Request, handler: Handler) -> web.StreamResponse:
    counter = request.app[INFLIGHT]
    counter.enter()
    try:
        return await handler(request)
    finally:
        counter.leave()


_CODES = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own refusals (unknown route, wrong method, ...) under `/v1` and `/admin` as
    OpenAI-style JSON, so their clients parse every answer they get; outermost, so it sees every
    other layer's (the `/v1` router answers its unknown routes in each API's own shape first)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or not (is_v1(request.path) or is_admin(request.path)):
            raise
        if exc.status == 405:
            message = f"{request.method} is not allowed on {request.path}"
        elif exc.status == 404:
            message = f"no route {request.method} {request.path}"
        else:
            message = exc.reason
        answer = ApiError(exc.status, message, code=_CODES.get(exc.status)).response()
        if allow := exc.headers.get("Allow"):
            answer.headers["Allow"] = allow
        return answer


def build_app(services: Services, extensions: Iterable[Setup] = ()) -> web.Application:
    """The aiohttp app: the core routes here, then each extension's routes and lifecycle hooks."""
    app = web.Application(
        client_max_size=services.config.config.server.max_body_bytes, middlewares=[json_errors, in_flight]
    )
    app[INFLIGHT] = InFlight()
    app[CONNECTIONS] = Connections(services.config, services.metrics.connection_errors)
    app[SERVICES] = services
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    for setup in extensions:
        setup(app)
    return app
