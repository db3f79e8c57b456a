"""The OpenAI-compatible `/v1` API: thin handlers over routing (lmwatch/routing) and the proxy.

`setup(app)` adds the routes and closes the shared upstream connection pool on cleanup. Every routed answer
carries X-LMWatch-Backend, -Model, -Task, -Route and -Overhead-Ms (`none` where a request never got
that far); X-LMWatch-Task-Reason explains a classified task. Requests may send X-LMWatch-Task to
force a task and X-LMWatch-Local-Only: true to forbid cloud fallback. Answers on the agent APIs
(`/v1/responses`, `/v1/messages`) say X-LMWatch-Translated: true when the backend got chat
completions instead of the API itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from lmwatch.api import request_ids
from lmwatch.api.auth import Handler, check_task, client_of, is_v1, note_request
from lmwatch.api.dialects import Dialect, MessagesDialect, ResponsesDialect
from lmwatch.api.errors import ApiError, shape_of
from lmwatch.api.proxy import Answer, Exchange, Streamed, Upstream, Verdict
from lmwatch.api.request_ids import request_id, upstream_id
from lmwatch.api.request_metrics import NONE, RequestMetrics, request_metrics
from lmwatch.api.response_store import ResponseStore
from lmwatch.backends.base import error_message
from lmwatch.config import Config
from lmwatch.registry import RecentRequest, RequestOutcomes, Snapshot, request_outcomes
from lmwatch.routing.classify import classifier_for
from lmwatch.routing.context import fit_plan
from lmwatch.routing.request import Endpoint, ParsedRequest, json_object, parse_request
from lmwatch.routing.select import AUTO, TASK_PREFIX, Route, Target, allowed_only, choose_task, plan_request, routable
from lmwatch.services import SERVICES, Services
from lmwatch.translate import messages as anthropic

log = logging.getLogger("lmwatch.api.openai")

UPSTREAM = web.AppKey("lmwatch_upstream", Upstream)
RESPONSES = web.AppKey("lmwatch_responses", ResponseStore)
TRUE = ("1", "true", "yes", "on")


def setup(app: web.Application) -> None:
    services = app[SERVICES]
    placement = services.lifecycle.placer if services.lifecycle is not None else None
    app[UPSTREAM] = Upstream(request_outcomes(services.registry), placement=placement)
    app[RESPONSES] = ResponseStore()
    request_metrics(services.metrics, services.registry)
    app.on_cleanup.append(_close)
    app.middlewares.append(_unknown_routes)
    app.router.add_get("/v1/models", list_models)
    app.router.add_get("/v1/models/{model:.+}", get_model)
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_post("/v1/completions", completions)
    app.router.add_post("/v1/embeddings", embeddings)
    app.router.add_post("/v1/responses", responses)
    app.router.add_post("/v1/messages", messages)
    app.router.add_post("/v1/messages/count_tokens", count_tokens)
    request_ids.setup(app)


async def _close(app: web.Application) -> None:
    app[UPSTREAM].close()


async def chat_completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, Endpoint.CHAT)


async def completions(request: web.Request) -> web.StreamResponse:
    return await _handle(request, Endpoint.COMPLETIONS)


async def embeddings(request: web.Request) -> web.StreamResponse:
    return await _handle(request, Endpoint.EMBEDDINGS)


async def responses(request: web.Request) -> web.StreamResponse:
    return await _handle(request, Endpoint.RESPONSES, ResponsesDialect(request.app[RESPONSES]))


async def messages(request: web.Request) -> web.StreamResponse:
    return await _handle(request, Endpoint.MESSAGES, MessagesDialect())


async def count_tokens(request: web.Request) -> web.Response:
    """`/v1/messages/count_tokens`, answered by lmwatch (LM Studio has no such route): an estimate."""
    try:
        body = json_object(await _read_body(request, request.app[SERVICES].config.config.server.max_body_bytes))
        return web.json_response({"input_tokens": anthropic.count_tokens(body)})
    except ApiError as err:
        return error_response(request, err)


# --- one routed request --------------------------------------------------------------------------


@dataclass
class _Request:
    """What a handler knows so far: enough to label metrics and headers at any point of failure."""

    started: float
    endpoint: Endpoint
    task: str = NONE
    reasons: tuple[str, ...] = ()
    exchanges: list[Exchange] = field(default_factory=list)
    overhead: float | None = None
    dialect: Dialect | None = None

    def headers(self, exchange: Exchange | None = None) -> dict[str, str]:
        """The route headers, computed when the response starts (so the overhead is known)."""
        exchanges = [exchange] if exchange is not None else self.exchanges
        served = _served(exchanges)
        self.overhead = max((e.overhead() for e in exchanges), default=time.perf_counter() - self.started)
        headers = {
            "X-LMWatch-Backend": ",".join(dict.fromkeys(t.backend for _, t in served)) or NONE,
            "X-LMWatch-Model": ",".join(dict.fromkeys(t.model for _, t in served)) or NONE,
            "X-LMWatch-Task": self.task,
            "X-LMWatch-Route": _route(served),
            "X-LMWatch-Overhead-Ms": f"{self.overhead * 1000:.3f}",
        }
        if self.reasons:
            headers["X-LMWatch-Task-Reason"] = ", ".join(self.reasons[:3])
        if self.dialect is not None and served:
            headers["X-LMWatch-Translated"] = "true" if self.dialect.translated else "false"
        return headers


def forbids_cloud(request: web.Request) -> bool:
    """No cloud fallback for this request: `X-LMWatch-Local-Only: true`, or a key marked local_only."""
    if request.headers.get("X-LMWatch-Local-Only", "").strip().lower() in TRUE:
        return True
    client = client_of(request)
    return client is not None and client.local_only


def _served(exchanges: list[Exchange]) -> list[tuple[Exchange, Target]]:
    """The exchanges that reached a target, with that target (the others never left lmwatch)."""
    return [(e, e.target) for e in exchanges if e.target is not None]


def _route(served: list[tuple[Exchange, Target]]) -> str:
    """The route header and label: a cloud or failover step anywhere outranks the first route."""
    routes = [e.route for e, _ in served if e.route is not None]
    for special in (Route.CLOUD, Route.FAILOVER):
        if special in routes:
            return special.value
    return routes[0].value if routes else NONE


async def _handle(request: web.Request, endpoint: Endpoint, dialect: Dialect | None = None) -> web.StreamResponse:
    state = _Request(started=time.perf_counter(), endpoint=endpoint, dialect=dialect)
    services = request.app[SERVICES]
    config = services.config.config
    metrics = request_metrics(services.metrics, services.registry)
    code = "500"
    try:
        response, code = await _serve(request, endpoint, services, config, metrics, state, dialect)
        return response
    except ApiError as err:
        code = str(err.status)
        return error_response(request, err, state.headers())
    except asyncio.CancelledError:
        code = "499"
        raise
    except Exception:
        rid = request_id(request)
        log.exception("unexpected error on %s (request %s)", request.path, rid, extra={"request_id": rid})
        failed = ApiError(500, "lmwatch failed to handle this request; see its log")
        return error_response(request, failed, state.headers())
    finally:
        _record(metrics, request_outcomes(services.registry), config, state, code)
        _note_for_audit(request, state)


async def _serve(
    request: web.Request,
    endpoint: Endpoint,
    services: Services,
    config: Config,
    metrics: RequestMetrics,
    state: _Request,
    dialect: Dialect | None,
) -> tuple[web.StreamResponse, str]:
    """The response and the `code` label of its metrics."""
    routing = config.routing
    raw = await _read_body(request, config.server.max_body_bytes)
    req = parse_request(endpoint, raw, routing.default_model, dialect.translate if dialect is not None else None)
    snap = services.registry.snapshot()
    upstream = request.app[UPSTREAM]
    upstream.outcomes.policy = routing.breaker
    task = choose_task(routing, snap, req, request.headers.get("X-LMWatch-Task"))
    if task is None:
        classification = classifier_for(routing).classify(req.as_chat)
        task, state.reasons = classification.task, classification.reasons
    state.task = task
    check_task(request, task)
    plan = plan_request(snap, routing, req, task, forbids_cloud(request))
    client = client_of(request)
    if client is not None and client.models:
        allowed = allowed_only(plan, client.allows_model)
        if plan.tiers and not allowed.tiers:
            raise ApiError(
                403,
                f"the key {client.name!r} may not use any model that can serve this request",
                code="model_not_allowed",
                param="model",
            )
        plan = allowed
    plan = fit_plan(plan, req, upstream.outcomes)
    if dialect is not None:
        plan = dialect.restrict(plan)

    rid = upstream_id(request)

    def exchange(for_req: ParsedRequest) -> Exchange:
        made = Exchange(
            upstream, routing, metrics, for_req, plan, state.started, services.poll_now, dialect=dialect, request_id=rid
        )
        state.exchanges.append(made)
        return made

    if req.stream:
        ex = exchange(req)
        result = await ex.stream(request, state.headers)
        if isinstance(result, Streamed):
            return result.response, _STREAM_CODES[result.verdict]
        answer = _json(result, state.headers(ex), request)
    elif endpoint is Endpoint.EMBEDDINGS and _batches(req, routing.embedding_batch_size):
        answer = await _embed_in_batches(req, routing.embedding_batch_size, exchange, state)
    else:
        ex = exchange(req)
        answer = _json(await ex.answer(), state.headers(ex), request)
    return answer, str(answer.status)


_STREAM_CODES = {Verdict.SUCCESS: "200", Verdict.UPSTREAM_FAILED: "stream_error", Verdict.CLIENT_GONE: "499"}
"""A stream is answered 200 before it can fail; the metric's code says how it ended."""


def _json(answer: Answer, headers: dict[str, str], request: web.Request | None = None) -> web.Response:
    """An answer as it is; an error in the request's API shape, with the request id."""
    raw = answer.raw
    if answer.status != 200 and request is not None:
        message = error_message(answer.obj) or f"HTTP {answer.status}"
        error = answer.obj.get("error")
        code, param = (error.get("code"), error.get("param")) if isinstance(error, dict) else (None, None)
        raw = json.dumps(
            ApiError(answer.status, message, code=code, param=param).body(shape_of(request.path), request_id(request))
        ).encode()
    return web.Response(body=raw, status=answer.status, content_type="application/json", headers=headers)


def error_response(request: web.Request, error: ApiError, headers: dict[str, str] | None = None) -> web.Response:
    """`error` in the shape of the request's API (OpenAI, or Anthropic on /v1/messages), with its id."""
    return error.response(headers, shape_of(request.path), request_id(request))


async def _read_body(request: web.Request, limit: int) -> bytes:
    """The body, refused with 413 past `server.max_body_bytes` (by its length when it says one)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    return raw


def _too_large(limit: int) -> ApiError:
    message = f"the request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
    return ApiError(413, message, code="request_too_large")


def _record(metrics: RequestMetrics, outcomes: RequestOutcomes, config: Config, state: _Request, code: str) -> None:
    served = _served(state.exchanges)
    backend, model = (served[0][1].backend, served[0][1].model) if served else (NONE, NONE)
    duration = time.perf_counter() - state.started
    route = _route(served)
    metrics.finished(state.endpoint.value, backend, model, state.task, route, code, duration)
    outcomes.request_done(
        RecentRequest(
            backend=backend,
            model=model,
            task=state.task,
            route=route,
            code=code,
            duration_seconds=round(duration, 6),
            ttft_seconds=next((e.ttft for e, _ in served if e.ttft is not None), None),
            output_tokens=sum(e.usage.completion for e, _ in served),
        )
    )
    if state.overhead is not None:
        metrics.overhead.observe(state.overhead)
    for ex, target in served:
        if ex.ttft is not None:
            metrics.child(metrics.ttft, target.backend, target.model).observe(ex.ttft)
        metrics.tokens_used(
            config.routing,
            target.backend,
            target.model,
            state.task,
            ex.usage.prompt,
            ex.usage.completion,
            local=not target.is_cloud,
        )


def _note_for_audit(request: web.Request, state: _Request) -> None:
    """The token counts for the request's audit line (model, backend and task come from its headers)."""
    served = _served(state.exchanges)
    if served:
        note_request(
            request,
            prompt_tokens=sum(e.usage.prompt for e, _ in served),
            completion_tokens=sum(e.usage.completion for e, _ in served),
        )


# --- embeddings in batches -----------------------------------------------------------------------


def _batches(req: ParsedRequest, size: int) -> bool:
    """Split only a list of several inputs (strings or token lists), never one tokenized input."""
    items = req.body.get("input")
    return isinstance(items, list) and len(items) > size and not all(isinstance(i, int) for i in items)


async def _embed_in_batches(
    req: ParsedRequest, size: int, exchange: Callable[[ParsedRequest], Exchange], state: _Request
) -> web.Response:
    items: list[Any] = req.body["input"]
    parts = [
        exchange(dataclasses.replace(req, body={**req.body, "input": items[i : i + size]}, raw=b""))
        for i in range(0, len(items), size)
    ]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(part.answer()) for part in parts]
    except ExceptionGroup as group_error:  # one batch failed (the others were cancelled): answer its error
        raise next((e for e in group_error.exceptions if isinstance(e, ApiError)), group_error) from None
    answers: list[Answer] = [t.result() for t in tasks]
    failed = next((a for a in answers if a.status != 200), None)
    if failed is not None:
        return _json(failed, state.headers())
    data: list[Any] = []
    for offset, answer in zip(range(0, len(items), size), answers, strict=True):
        for position, item in enumerate(answer.obj.get("data") or []):
            if isinstance(item, dict):
                index = item.get("index")
                item["index"] = offset + (index if isinstance(index, int) else position)
            data.append(item)
    prompt = sum(e.usage.prompt for e in parts)
    body = {
        "object": "list",
        "data": data,
        "model": answers[0].obj.get("model"),
        "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
    }
    raw = json.dumps(body, separators=(",", ":")).encode()
    return _json(Answer(200, raw, body), state.headers())


@web.middleware
async def _unknown_routes(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A `/v1` path or method lmwatch does not serve: the API's JSON error, not aiohttp's text page."""
    missing = request.match_info.http_exception
    if missing is None or not is_v1(request.path):
        return await handler(request)
    if isinstance(missing, web.HTTPMethodNotAllowed):
        allowed = ", ".join(sorted(missing.allowed_methods))
        error = ApiError(
            405, f"{request.method} is not allowed on {request.path}; use {allowed}", code="method_not_allowed"
        )
        return error_response(request, error, {"Allow": allowed})
    message = f"lmwatch serves no {request.method} {request.path}; see its README for the /v1 endpoints"
    return error_response(request, ApiError(404, message, code="unknown_url"))


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
    return error_response(request, ApiError(404, message, param="model", code="model_not_found"))


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
