"""The `/v1` core: one routed request, from its body to its answer, for either server.

Both aiohttp's routes (lmwatch/api/openai.py) and the lean server (lmwatch/api/lean.py) hand a
`Call` and a `Reply` to `V1.serve`: parse, classify, route, look in the cache, walk the plan
(lmwatch/api/exchange.py), answer, and record the request's metrics and usage. Every routed answer
carries X-LMWatch-Backend, -Model, -Task, -Route and -Overhead-Ms (`none` where a request never got
that far); X-LMWatch-Task-Reason explains a classified task, X-LMWatch-Cache says hit, miss or
bypass (lmwatch/cache/response.py), X-LMWatch-Cache-Similarity how close a semantic hit's prompt
was. Requests may send X-LMWatch-Task to force a task, X-LMWatch-Local-Only: true to forbid cloud
fallback and X-LMWatch-Cache: on / off. Answers on the agent APIs (`/v1/responses`, `/v1/messages`)
say X-LMWatch-Translated: true when the backend got chat completions instead of the API itself.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from lmwatch.api import json_call, sse_relay
from lmwatch.api.attempts import Answer, Streamed, Verdict
from lmwatch.api.auth import note_request
from lmwatch.api.calls import JSON, JSON_UTF8, Call, Reply
from lmwatch.api.dialects import Dialect, MessagesDialect, ResponsesDialect
from lmwatch.api.errors import ApiError, api_error, shape_of
from lmwatch.api.exchange import Exchange
from lmwatch.api.prompt_embedding import prompt_embedder
from lmwatch.api.request_ids import RequestIds, upstream_id
from lmwatch.api.response_store import ResponseStore
from lmwatch.api.sse_relay import open_stream
from lmwatch.api.upstream import Upstream
from lmwatch.backends.base import error_message
from lmwatch.cache import embeddings as embedding_cache
from lmwatch.cache import response as response_cache
from lmwatch.cache.keys import response_key
from lmwatch.cache.response import BYPASS, Decision, Entry, Result
from lmwatch.cache.semantic import Found, prompt_of
from lmwatch.cache.service import Cache
from lmwatch.config import Config
from lmwatch.credentials import ANONYMOUS, ClientKey
from lmwatch.errors import DomainError
from lmwatch.metrics.requests import NONE, cloud_price
from lmwatch.redaction import Redactor
from lmwatch.registry import Snapshot
from lmwatch.routing.request import Endpoint, ParsedRequest, parse_request
from lmwatch.routing.select import Route, Target
from lmwatch.services import Services

log = logging.getLogger("lmwatch.api.core")

TRUE = ("1", "true", "yes", "on")
CACHE_ROUTE = "cache"
"""The route of an answer the cache gave (header and metric label)."""


ROUTES = {
    "/v1/chat/completions": Endpoint.CHAT,
    "/v1/completions": Endpoint.COMPLETIONS,
    "/v1/embeddings": Endpoint.EMBEDDINGS,
    "/v1/responses": Endpoint.RESPONSES,
    "/v1/messages": Endpoint.MESSAGES,
}
"""The routed `POST` endpoints."""


@dataclass(frozen=True, slots=True)
class V1:
    """The `/v1` core: what a routed request needs, for either server (aiohttp's routes or lmwatch/api/lean.py)."""

    services: Services
    upstream: Upstream
    responses: ResponseStore
    ids: RequestIds

    async def serve(self, call: Call, reply: Reply, endpoint: Endpoint) -> None:
        """Answer one routed request through `reply`."""
        dialect: Dialect | None = None
        if endpoint is Endpoint.RESPONSES:
            dialect = ResponsesDialect(self.responses)
        elif endpoint is Endpoint.MESSAGES:
            dialect = MessagesDialect()
        state = _Request(time.perf_counter(), endpoint, dialect)  # by position: half the cost
        services = self.services
        config = services.config.config
        code = "500"
        try:
            code = await _serve(self, call, reply, config, state, dialect)
        except (ApiError, DomainError) as caught:
            err = api_error(caught)
            code = str(err.status)
            error_response(call, reply, services.config.redactor, err, state.headers())
        except asyncio.CancelledError:
            code = "499"
            raise
        except Exception:
            rid = call.request_id
            log.exception("unexpected error on %s (request %s)", call.path, rid, extra={"request_id": rid})
            failed = ApiError(500, "lmwatch failed to handle this request; see its log")
            error_response(call, reply, services.config.redactor, failed, state.headers())
        finally:
            _record(services, call, config, state, code)


@dataclass(slots=True)
class _Request:
    """What a handler knows so far: enough to label metrics and headers at any point of failure."""

    started: float
    endpoint: Endpoint
    dialect: Dialect | None
    task: str = NONE
    reasons: tuple[str, ...] = ()
    exchanges: list[Exchange] = field(default_factory=list)
    overhead: float | None = None
    cache: Result = Result.BYPASS
    hit: Entry | None = None
    """The stored answer served instead of a backend's."""
    cache_hits: str | None = None
    """Embeddings: `<inputs from the cache>/<inputs>`."""
    similarity: float | None = None
    """A semantic cache hit: the cosine similarity of the stored prompt to this one."""

    def headers(self, exchange: Exchange | None = None) -> dict[str, str]:
        """The route headers, computed when the response starts (so the overhead is known)."""
        exchanges = [exchange] if exchange is not None else self.exchanges
        served = _served(exchanges)
        if len(exchanges) == 1:  # most requests
            self.overhead = exchanges[0].overhead()
        else:
            self.overhead = max((e.overhead() for e in exchanges), default=time.perf_counter() - self.started)
        backend, model, route = self.source(served)
        headers = {
            "X-LMWatch-Backend": backend,
            "X-LMWatch-Model": model,
            "X-LMWatch-Task": self.task,
            "X-LMWatch-Route": route,
            "X-LMWatch-Overhead-Ms": f"{self.overhead * 1000:.3f}",
            response_cache.HEADER: self.cache,
        }
        if self.reasons:
            headers["X-LMWatch-Task-Reason"] = ", ".join(self.reasons[:3])
        if self.cache_hits is not None:
            headers["X-LMWatch-Cache-Hits"] = self.cache_hits
        if self.similarity is not None:
            headers["X-LMWatch-Cache-Similarity"] = f"{self.similarity:.4f}"
        if self.dialect is not None and served:
            headers["X-LMWatch-Translated"] = "true" if self.dialect.translated else "false"
        return headers

    def source(self, served: list[tuple[Exchange, Target]]) -> tuple[str, str, str]:
        """Backend(s), model(s) and route of the answer: the cache's entry, or the targets that served."""
        if self.hit is not None and not served:
            return self.hit.backend, self.hit.model, CACHE_ROUTE
        if len(served) == 1:  # most requests: one target answered
            ((exchange, target),) = served
            return target.backend, target.model, exchange.route if exchange.route is not None else NONE
        backends = ",".join(dict.fromkeys(t.backend for _, t in served)) or NONE
        return backends, ",".join(dict.fromkeys(t.model for _, t in served)) or NONE, _route(served)


def forbids_cloud(headers: Mapping[str, str], client: ClientKey | None) -> bool:
    """No cloud fallback for this request: `X-LMWatch-Local-Only: true`, or a key marked local_only."""
    local = headers.get("X-LMWatch-Local-Only")
    if local is not None and local.strip().lower() in TRUE:
        return True
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


async def _serve(api: V1, call: Call, reply: Reply, config: Config, state: _Request, dialect: Dialect | None) -> str:
    """Answers through `reply`; returns the `code` label of its metrics."""
    services = api.services
    endpoint = state.endpoint
    metrics = services.metrics.requests
    routing = config.routing
    raw = call.raw  # the lean server's, when the body came with the head
    if raw is None or len(raw) > config.server.max_body_bytes:
        raw = await read_body_within(call, config.server.max_body_bytes)
    req = parse_request(endpoint, raw, routing.default_model, dialect.translate if dialect is not None else None)
    snap = services.registry.snapshot()
    upstream = api.upstream
    router = services.router
    client = call.client
    local_only = forbids_cloud(call.headers, client)
    task_header = call.headers.get("X-LMWatch-Task")
    choice = await router.choose_task(snap, routing, req, task_header)
    if choice.classification is not None:
        state.reasons = choice.classification.reasons
    task = state.task = choice.task
    plan = router.decide(snap, routing, upstream.outcomes, req, task, local_only=local_only, key=client).plan
    if dialect is not None:
        plan = dialect.restrict(plan)

    rid = upstream_id(call.headers, call.request_id)

    def exchange(for_req: ParsedRequest) -> Exchange:
        made = Exchange(
            upstream,
            routing,
            metrics,
            for_req,
            plan,
            state.started,
            services.poll_now,
            services.config.redactor,
            dialect=dialect,
            request_id=rid,
        )
        state.exchanges.append(made)
        return made

    cache = services.cache
    decision = BYPASS
    # the agent APIs keep state: never cached
    if cache is not None and config.cache.enabled and plan.tiers and dialect is None:
        repeatable = endpoint is Endpoint.EMBEDDINGS or response_cache.deterministic(req.body)
        decision = response_cache.decide(config.cache, call.headers, client is None or client.cache, repeatable)
    # the first tier's models: what cache keys hold (only a cache that may keep the answer reads them)
    models = sorted({t.model for t in plan.tiers[0].targets}) if decision.write else []
    if endpoint is Endpoint.EMBEDDINGS:
        vectors = cache if decision.write and config.cache.embeddings else None
        answer = await _embeddings(req, routing.embedding_batch_size, exchange, state, vectors, models)
        _json(call, reply, services.config.redactor, answer, state.headers())
        return str(answer.status)
    key = None
    if cache is not None and decision.write:
        key = await _look_up(
            cache, decision, state, response_key(endpoint, models, req.body, req.raw, req.stream, req.wants_usage)
        )
    elif cache is not None:
        cache.metrics.count("response", Result.BYPASS)
    similar = None
    if key is not None and config.cache.semantic.enabled:
        similar = await _look_up_similar(api, snap, state, req, models, decision.read)
        if state.hit is not None:
            key = None
    if state.hit is not None:
        await _replay(reply, state.hit, state.headers())
        return "200"
    ex = exchange(req)
    if req.stream:
        if key is not None:
            ex.capture = bytearray()
        streamed = await sse_relay.stream(ex, reply, state.headers)
        if isinstance(streamed, Streamed):
            if key is not None and ex.capture and streamed.verdict is Verdict.SUCCESS:
                _keep(cache, key, ex, state, bytes(ex.capture), sse=True, similar=similar)
            return _STREAM_CODES[streamed.verdict]
        result = streamed
    else:
        result = await json_call.answer(ex)
        if key is not None and result.status == 200:
            _keep(cache, key, ex, state, result.raw, sse=False, similar=similar)
    _json(call, reply, services.config.redactor, result, state.headers(ex))
    return str(result.status)


_STREAM_CODES = {Verdict.SUCCESS: "200", Verdict.UPSTREAM_FAILED: "stream_error", Verdict.CLIENT_GONE: "499"}
"""A stream is answered 200 before it can fail; the metric's code says how it ended."""


# --- the response cache --------------------------------------------------------------------------


async def _look_up(cache: Cache, decision: Decision, state: _Request, key: str) -> str | None:
    """For a request whose answer the cache may keep: `key` when it should be stored under it
    (None: not cached), and `state.hit` when one is stored."""
    if decision.read:
        found = await cache.get_many([key])
        entry = Entry.decode(found[0]) if found and found[0] is not None else None
        state.cache = Result.BYPASS if found is None else Result.HIT if entry is not None else Result.MISS
        state.hit = entry
    elif cache.store is not None and cache.store.available:
        state.cache = Result.MISS
    cache.metrics.count("response", state.cache)
    return key if state.cache is Result.MISS else None


async def _look_up_similar(
    api: V1,
    snap: Snapshot,
    state: _Request,
    req: ParsedRequest,
    models: list[str],
    read: bool,
) -> Found | None:
    """After an exact miss: the prompt's vector, and `state.hit` when a stored prompt means the same
    (looked for only when `read`: `Cache-Control: no-cache` stores, but does not read)."""
    cache, config = api.services.cache, api.services.config.config
    if cache is None or cache.store is None:
        return None
    semantic = config.cache.semantic
    embed = prompt_embedder(api.upstream, config.routing, snap, semantic.model)
    prompt = prompt_of(state.endpoint.value, models, req.body, req.stream, req.wants_usage)
    found = await cache.semantic.look_up(cache.store, semantic, prompt, embed, read)
    if found is not None and found.entry is not None:
        state.hit, state.cache, state.similarity = found.entry, Result.HIT, found.similarity
    return found


def _keep(
    cache: Cache | None, key: str, ex: Exchange, state: _Request, body: bytes, sse: bool, similar: Found | None = None
) -> None:
    if cache is not None and ex.target is not None:
        entry = Entry(ex.target.backend, ex.target.model, state.task, sse, ex.usage.prompt, ex.usage.completion, body)
        cache.put_many([(key, entry)])
        if similar is not None and cache.store is not None:
            cache.semantic.keep(cache.store, cache.config.semantic, similar, key, cache.config.ttl)


async def _replay(reply: Reply, entry: Entry, headers: dict[str, str]) -> None:
    """A stored answer: the JSON body, or the SSE bytes again as a stream."""
    if not entry.sse:
        reply.answer(200, headers, entry.body, JSON)
        return
    out = await open_stream(reply, headers)
    await out.write(entry.body)
    await out.write_eof()


def _json(call: Call, reply: Reply, redactor: Redactor, answer: Answer, headers: dict[str, str]) -> None:
    """An answer as it is; an error in the request's API shape, with the request id."""
    raw = answer.raw
    if answer.status != 200:
        message = error_message(answer.obj) or f"HTTP {answer.status}"
        error = answer.obj.get("error")
        code, param = (error.get("code"), error.get("param")) if isinstance(error, dict) else (None, None)
        raw = json.dumps(
            ApiError(answer.status, message, code=code, param=param).body(
                redactor, shape_of(call.path), call.request_id
            )
        ).encode()
    reply.answer(answer.status, headers, raw, JSON)


def error_response(
    call: Call, reply: Reply, redactor: Redactor, error: ApiError, headers: dict[str, str] | None = None
) -> None:
    """`error` in the shape of the request's API (OpenAI, or Anthropic on /v1/messages), with its id."""
    body = json.dumps(error.body(redactor, shape_of(call.path), call.request_id)).encode()
    reply.answer(error.status, {**error.headers, **(headers or {})}, body, JSON_UTF8)


async def read_body_within(call: Call, limit: int) -> bytes:
    """The body, refused with 413 past `server.max_body_bytes` (by its length when it says one)."""
    if call.content_length is not None and call.content_length > limit:
        raise _too_large(limit)
    try:
        raw = await call.read()
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None
    if len(raw) > limit:
        raise _too_large(limit)
    call.raw = raw
    return raw


def _too_large(limit: int) -> ApiError:
    message = f"the request body is larger than the limit of {limit} bytes (server.max_body_bytes)"
    return ApiError(413, message, code="request_too_large")


def _record(services: Services, call: Call, config: Config, state: _Request, code: str) -> None:
    """A finished request's metrics, recent-request entry, usage row and audit tokens. The endpoint,
    route and cache result are StrEnums, used as they are (their members are the label strings)."""
    metrics = services.metrics.requests
    served = _served(state.exchanges)
    backend, model, route = state.source(served)
    if len(served) > 1:  # a failover or batches: the labels name the first
        backend, model = backend.split(",", 1)[0], model.split(",", 1)[0]
    duration = time.perf_counter() - state.started
    latency = round(duration, 6)
    task = state.task
    hit = state.hit if not served else None
    metrics.finished(state.endpoint, backend, model, task, route, code, duration)
    ttft: float | None = None
    prompt = completion = 0
    local = True
    saved = 0.0
    """What `routing.prices` would have charged for the tokens served locally (or from the cache)."""
    prices = config.routing.prices
    if hit is not None:
        saved = cloud_price(config.routing, task, hit.prompt_tokens, hit.completion_tokens) if prices else 0.0
        metrics.avoided(backend, task, saved)
    for ex, target in served:  # one pass: usually one exchange
        usage = ex.usage
        prompt += usage.prompt
        completion += usage.completion
        if ex.ttft is not None:
            ttft = ex.ttft if ttft is None else ttft
            metrics.ttft.observe((target.backend, target.model), ex.ttft)
        if target.is_cloud:
            local = False
        elif prices:
            dollars = cloud_price(config.routing, task, usage.prompt, usage.completion)
            saved += dollars
            metrics.avoided(target.backend, task, dollars)
        metrics.tokens_used(target.backend, target.model, usage.prompt, usage.completion)
    services.registry.outcomes.request_done(backend, model, task, route, code, latency, ttft, completion)
    if state.overhead is not None:
        metrics.overhead.observe((), state.overhead)
    if services.usage is not None:  # added up, written off the request path; never the prompt
        if hit is not None:
            prompt, completion = hit.prompt_tokens, hit.completion_tokens
        client = call.client
        services.usage.record(
            (
                client.name if client is not None else ANONYMOUS,
                backend,
                model,
                task,
                route,
                state.endpoint,
                code,
                state.cache,
                local,
            ),
            prompt,
            completion,
            latency,
            ttft,
            saved if local else 0.0,
        )
    if served and call.note is not None:  # the token counts for the audit line (the rest: its headers)
        note_request(call, prompt_tokens=prompt, completion_tokens=completion)


# --- embeddings: the cache per input, then batches ---------------------------------------------

Exchanger = Callable[[ParsedRequest], Exchange]


async def _embeddings(
    req: ParsedRequest, size: int, exchange: Exchanger, state: _Request, cache: Cache | None, models: list[str]
) -> Answer:
    """The inputs the cache holds from it, only the others upstream, reassembled in order."""
    items = embedding_cache.inputs(req.body["input"])
    found = None
    if cache is not None:
        keys = embedding_cache.keys(",".join(models), req.body, items)
        found = await cache.get_many(keys)
    if cache is None or found is None:
        if cache is not None:
            cache.metrics.count("embedding", Result.BYPASS, len(items))
        return await _embed_upstream(req, size, exchange)
    cached = [embedding_cache.Vector.decode(v) if v is not None else None for v in found]
    missing = [i for i, v in enumerate(cached) if v is None]
    cache.metrics.count("embedding", Result.HIT, len(items) - len(missing))
    cache.metrics.count("embedding", Result.MISS, len(missing))
    state.cache_hits = f"{len(items) - len(missing)}/{len(items)}"
    state.cache = Result.MISS if missing else Result.HIT
    if missing:
        sub = req if len(missing) == len(items) else _with_input(req, [items[i] for i in missing])
        answer = await _embed_upstream(sub, size, exchange)
        served = _served(state.exchanges)
        fresh = (
            embedding_cache.vectors(
                answer.status, answer.obj, [items[i] for i in missing], served[0][1].backend, served[0][1].model
            )
            if served
            else None
        )
        if fresh is None:  # an error, or an answer of another shape: the client gets it as it is
            return answer
        cache.put_many([(keys[i], vector.encode()) for i, vector in zip(missing, fresh, strict=True)])
        for i, vector in zip(missing, fresh, strict=True):
            cached[i] = vector
    done = [v for v in cached if v is not None]
    if not missing:
        state.hit = Entry(done[0].backend, done[0].model, state.task, False, sum(v.tokens for v in done), 0, b"")
    return _answer(embedding_cache.answer_body(done, sum(e.usage.prompt for e in state.exchanges)))


def _answer(body: dict[str, Any]) -> Answer:
    return Answer(200, json.dumps(body, separators=(",", ":")).encode(), body)


def _with_input(req: ParsedRequest, items: list[Any]) -> ParsedRequest:
    return dataclasses.replace(req, body={**req.body, "input": items}, raw=b"")


def _batches(req: ParsedRequest, size: int) -> bool:
    """Split only a list of several inputs (strings or token lists), never one tokenized input."""
    items = req.body.get("input")
    return isinstance(items, list) and len(items) > size and not all(isinstance(i, int) for i in items)


async def _embed_upstream(req: ParsedRequest, size: int, exchange: Exchanger) -> Answer:
    """One upstream request, or batches of `size` inputs spread over backends, answered as one."""
    if not _batches(req, size):
        return await json_call.answer(exchange(req))
    items: list[Any] = req.body["input"]
    parts = [exchange(_with_input(req, items[i : i + size])) for i in range(0, len(items), size)]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(json_call.answer(part)) for part in parts]
    except ExceptionGroup as group_error:  # one batch failed (the others were cancelled): answer its error
        raise next((e for e in group_error.exceptions if isinstance(e, ApiError | DomainError)), group_error) from None
    answers: list[Answer] = [t.result() for t in tasks]
    failed = next((a for a in answers if a.status != 200), None)
    if failed is not None:
        return failed
    data: list[Any] = []
    for offset, answer in zip(range(0, len(items), size), answers, strict=True):
        for position, item in enumerate(answer.obj.get("data") or []):
            if isinstance(item, dict):
                index = item.get("index")
                item["index"] = offset + (index if isinstance(index, int) else position)
            data.append(item)
    prompt = sum(e.usage.prompt for e in parts)
    return _answer(
        {
            "object": "list",
            "data": data,
            "model": answers[0].obj.get("model"),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
    )
