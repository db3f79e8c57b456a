"""The HTTP server: health, readiness, status and metrics handlers, and the app that carries them.

Other concerns (the `/v1` router, `/admin`) attach their routes with a `setup(app)` function, so
this module stays the same when they grow.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from lmwatch.api.connections import CONNECTIONS, Connections
from lmwatch.api.errors import ApiError
from lmwatch.api.paths import Handler, is_admin, is_v1
from lmwatch.api.status import status_document
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


PAUSE_SECONDS = 0.0005
"""A scrape lets the event loop run at the first pause point after this much rendering."""


async def metrics(request: web.Request) -> web.Response:
    """The scrape, rendered in pieces with the loop let run in between (a scrape of hundreds of
    backends must not stall the requests being proxied)."""
    _, content_type = choose_encoder(request.headers.get("Accept", ""))
    parts = []
    resumed = time.perf_counter()
    for chunk in request.app[SERVICES].metrics.chunks(content_type.startswith("application/openmetrics-text")):
        parts.append(chunk)
        if time.perf_counter() - resumed > PAUSE_SECONDS:
            await asyncio.sleep(0)
            resumed = time.perf_counter()
    response = web.Response(body="".join(parts).encode())
    response.headers["Content-Type"] = content_type
    return response


async def status(request: web.Request) -> web.Response:
    return web.json_response(status_document(request.app[SERVICES]))


class InFlight:
    """Requests being handled now, so a stop can wait exactly `shutdown_grace` for them (aiohttp's
    own shutdown waits its timeout twice: for handlers to finish, then again after asking them to)."""

    def __init__(self) -> None:
        self.count = 0
        self._idle = asyncio.Event()
        self._idle.set()

    def enter(self) -> None:
        self.count += 1
        if self.count == 1:  # an Event's `clear` is a Python call: only when it was idle
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
        error = ApiError(exc.status, message, code=_CODES.get(exc.status))
        answer = error.response(request.app[SERVICES].config.redactor)
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
