"""The OpenAI-compatible `/v1` API on aiohttp: its routes, `/v1/models`, and API-shaped errors.

`setup(app)` adds the routes and closes the shared upstream connection pool on cleanup. A routed
`POST` is answered by the core (lmwatch/api/core.py; the lean server, lmwatch/api/lean.py, calls
the same core); a `/v1` path or method lmwatch does not serve gets the API's JSON error.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from lmwatch.api import request_ids
from lmwatch.api.auth import client_keys, client_of
from lmwatch.api.calls import AiohttpReply, call_of
from lmwatch.api.core import ROUTES, V1, read_body_within
from lmwatch.api.errors import ApiError, api_error, shape_of
from lmwatch.api.paths import Handler, is_v1
from lmwatch.api.prompt_embedding import admitted
from lmwatch.api.request_ids import IDS, request_id
from lmwatch.api.response_store import ResponseStore
from lmwatch.api.translate import messages as anthropic
from lmwatch.api.upstream import Upstream
from lmwatch.config import Config
from lmwatch.errors import DomainError
from lmwatch.registry import Snapshot
from lmwatch.routing.embedclass import EmbeddingClassifier
from lmwatch.routing.request import Endpoint, json_object
from lmwatch.routing.select import AUTO, TASK_PREFIX, routable
from lmwatch.services import SERVICES

UPSTREAM = web.AppKey("lmwatch_upstream", Upstream)
RESPONSES = web.AppKey("lmwatch_responses", ResponseStore)
CLASSIFIER = web.AppKey("lmwatch_classifier", EmbeddingClassifier)


CORE = web.AppKey("lmwatch_v1", V1)


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    placement = services.lifecycle.placer if services.lifecycle is not None else None
    app[UPSTREAM] = Upstream(services.registry.outcomes, placement=placement)
    services.registry.outcomes.use_policy(lambda: services.config.config.routing.breaker)
    app[RESPONSES] = ResponseStore()
    app[CLASSIFIER] = EmbeddingClassifier(
        admitted(app[UPSTREAM]), services.metrics.classifier, services.router.classifier
    )
    services.router.use_classifier(app[CLASSIFIER].classify)
    app.on_cleanup.append(_close)
    app.middlewares.append(client_keys)
    app.middlewares.append(_unknown_routes)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    for path, endpoint in ROUTES.items():
        app.router.add_post(path, _routed(endpoint))
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    request_ids.setup(app)
    app[CORE] = V1(services, app[UPSTREAM], app[RESPONSES], app[IDS])


def cut_answers(app: web.Application, message: str) -> None:
    """At the end of `shutdown_grace`: answers still coming from backends end now (streams with an
    error event and a proper end), and nothing new is sent upstream."""
    if UPSTREAM in app:
        app[UPSTREAM].pool.cut(message)


async def _close(app: web.Application) -> None:
    app[CLASSIFIER].close()
    app[UPSTREAM].close()


def _routed(endpoint: Endpoint) -> Handler:
    """The aiohttp route of a routed endpoint: the core, answering through the route's response."""

    async def route(request: web.Request) -> web.StreamResponse:
        reply = AiohttpReply(request)
        await request.app[CORE].serve(call_of(request), reply, endpoint)
        return reply.returned()

    return route


async def count_tokens(request: web.Request) -> web.Response:
    """`/v1/messages/count_tokens`, answered by lmwatch (LM Studio has no such route): an estimate."""
    call = call_of(request)
    try:
        body = json_object(await read_body_within(call, request.app[SERVICES].config.config.server.max_body_bytes))
        return web.json_response({"input_tokens": anthropic.count_tokens(body)})
    except (ApiError, DomainError) as caught:
        err = api_error(caught)
        return err.response(
            request.app[SERVICES].config.redactor, shape=shape_of(call.path), request_id=call.request_id
        )


@web.middleware
async def _unknown_routes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A `/v1` path or method lmwatch does not serve: the API's JSON error, not aiohttp's text page."""
    missing = request.match_info.http_exception
    if missing is None or not is_v1(request.path):
        return await handler(request)
    redactor = request.app[SERVICES].config.redactor
    if isinstance(missing, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(missing.allowed_methods))
        error = ApiError(
            405, f"{request.method} is not allowed on {request.path}; use {allowed}", code="method_not_allowed"
        )
        return error.response(redactor, {"Allow": allowed}, shape_of(request.path), request_id(request))
    message = f"lmwatch serves no {request.method} {request.path}; see its README for the /v1 endpoints"
    return ApiError(404, message, code="unknown_url").response(
        redactor, None, shape_of(request.path), request_id(request)
    )


# --- /v1/models ----------------------------------------------------------------------------------


async def list_models(request: web.Request) -> web.Response:
    return web.json_response(_visible_models(request))


def _visible_models(request: web.Request) -> dict[str, Any]:
    services = request.app[SERVICES]
    document = models_document(services.registry.snapshot(), services.config.config)
    client = client_of(request)
    if client is not None and client.models:  # a key sees the models it may use (and the virtual ids)
        document["data"] = [m for m in document["data"] if m["lmwatch"]["virtual"] or client.allows_model(m["id"])]
    return document


async def get_model(request: web.Request) -> web.Response:
    """One entry of `/v1/models` (virtual ids too), as the openai SDKs' `models.retrieve` wants it."""
    model_id = request.match_info["model"]
    for entry in _visible_models(request)["data"]:
        if entry["id"] == model_id:
            return web.json_response(entry)
    message = f"the model {model_id!r} does not exist on any backend; GET /v1/models lists them"
    error = ApiError(404, message, param="model", code="model_not_found")
    return error.response(request.app[SERVICES].config.redactor, None, shape_of(request.path), request_id(request))


def models_document(snap: Snapshot, config: Config) -> dict[str, Any]:
    """Virtual ids first (`auto` is the default), then aliases, then each model once with where it lives."""
    routing = config.routing
    data: list[dict[str, Any]] = [_virtual(AUTO, "auto", "classify the request, then route by task")]
    data += [_virtual(TASK_PREFIX + t, "task", f"route as a {t} request") for t in sorted(routing.task_names())]
    data += [
        _virtual(
            name, "alias", ", ".join(t if isinstance(t, str) else f"{t.backend or '*'}:{t.model}" for t in targets)
        )
        for name, targets in routing.aliases.items()
    ]
    models: dict[str, dict[str, Any]] = {}
    for backend in snap.backends.values():
        if not routable(backend):
            continue
        for m in backend.models:
            if not (m.loaded or routing.allow_jit):
                continue
            entry = models.setdefault(
                m.id,
                {
                    "id": m.id,
                    "object": "model",
                    "created": 0,
                    "owned_by": m.publisher or "lmwatch",
                    "lmwatch": {"virtual": False, "type": m.model_type.value, "backends": []},
                },
            )
            entry["lmwatch"]["backends"].append(
                {"backend": backend.name, "loaded": m.loaded, "instances": list(m.instance_ids)}
            )
    data += sorted(models.values(), key=lambda e: str(e["id"]))
    return {"object": "list", "data": data}


def _virtual(model_id: str, kind: str, description: str) -> dict[str, Any]:
    return {
        "id": model_id,
        "object": "model",
        "created": 0,
        "owned_by": "lmwatch",
        "lmwatch": {"virtual": True, "kind": kind, "description": description},
    }
