"""Upstream calls: walking a plan with failover and retries, and relaying answers to the client.

One connection pool (lmwatch/api/upstream.py) serves every backend and cloud provider. A request
walks its plan: within a tier the balancer orders the targets, the breaker and the concurrency gate
admit them, and a failure moves on (the same model elsewhere, then the next tier, then the cloud). Transient errors
(refused or reset connections, 502/503/504) retry the same target after a backoff, once the others
had their turn. All of this happens only before the first byte reaches the client: after that a
failure ends the stream with an OpenAI-style error event, and nothing is replayed.

Timeouts: connecting is bounded by the backend's `timeout`; after that only silence is bounded
(`routing.idle_timeout` between reads), never the total, so a slow local generation is not cut.
The original request bytes are forwarded unless the model id must change or lmwatch must ask for
the usage chunk (`stream_options.include_usage`, stripped again when the client did not ask).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aiohttp import web

from lmwatch.api.dialects import Dialect
from lmwatch.api.errors import ApiError, error_body, error_event, error_type
from lmwatch.api.sse import EventSplitter, Meter, StreamMeter
from lmwatch.api.translate.chat import ChatStream
from lmwatch.api.upstream import (
    AnswerTooLarge,
    ConnectError,
    ConnectionLost,
    LocalResources,
    Pool,
    Response,
    ShuttingDown,
    UpstreamError,
)
from lmwatch.backends import is_context_exceeded, is_model_gone, model_type_refused
from lmwatch.backends.base import error_message
from lmwatch.config import RoutingConfig
from lmwatch.jsondecode import loads
from lmwatch.lifecycle.loads import LoadError
from lmwatch.metrics.requests import RequestMetrics
from lmwatch.registry import RequestOutcomes
from lmwatch.routing.balance import Gate, order
from lmwatch.routing.context import context_in_error, learn
from lmwatch.routing.ids import same_model
from lmwatch.routing.request import Endpoint, ParsedRequest
from lmwatch.routing.select import AUTO, TASK_PREFIX, Plan, Route, Target, Tier

log = logging.getLogger("lmwatch.proxy")

MAX_BACKOFF = 2.0
SUCCESS, FAILURE, NO_VERDICT = "success", "failure", "no_verdict"
"""The `outcome` of an attempt in `lmwatch_backend_attempts_total`, as the breaker sees it."""
SUBSTITUTIONS_LOGGED = 1024
"""Distinct (backend, model) substitutions logged; past it they are still failed over, silently."""
_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_HEADERS = {
    stream: {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    for stream in (False, True)
}


class Verdict(StrEnum):
    """What an attempt tells the breaker."""

    SUCCESS = "success"
    UPSTREAM_FAILED = "upstream_failed"  # after the first byte: counts, but cannot fail over
    CLIENT_GONE = "client_gone"  # no verdict on the backend


@dataclass(frozen=True)
class Failure:
    """An attempt that failed before anything reached the client (so the walk goes on)."""

    reason: str
    """A bounded label: connect, timeout, http_5xx, http_429, auth, model_unavailable, error_body,
    bad_response, bad_config, stream_cut, breaker_open, queue_timeout, queue_full, context_length,
    unsupported_api, local_resources (this host is out of descriptors or memory), answer_too_large,
    shutting_down."""
    message: str
    transient: bool = False
    breaker: bool = True
    attempted: bool = True


@dataclass
class Answer:
    """A complete JSON answer (a success, or an error the client must see as it is)."""

    status: int
    raw: bytes
    obj: dict[str, Any]


@dataclass
class Streamed:
    response: web.StreamResponse
    verdict: Verdict


@dataclass
class Usage:
    prompt: int = 0
    completion: int = 0

    def add(self, usage: Any) -> None:
        """Chat completions' `prompt_tokens`/`completion_tokens`, or the agent APIs' `input_`/`output_tokens`."""
        if isinstance(usage, dict):
            self.prompt += _int(usage.get("prompt_tokens", usage.get("input_tokens")))
            self.completion += _int(usage.get("completion_tokens", usage.get("output_tokens")))


Release = Callable[[], Awaitable[None]]


class Placement(Protocol):
    """Loads a model that is downloaded but loaded nowhere before a request is sent to it
    (lmwatch/lifecycle/placement.py)."""

    def order(self, targets: Sequence[Target]) -> list[Target]:
        """The targets best placement first."""

    async def prepare(self, target: Target, timeout: float) -> Release | None:
        """Make `target`'s model loaded (raises LoadError saying why not); a Release to await after the
        request when the backend's load slot stays held during it."""


class Upstream:
    """The shared connection pool, the gate and the balancer's randomness (app-scoped)."""

    def __init__(
        self, outcomes: RequestOutcomes, rng: random.Random | None = None, placement: Placement | None = None
    ) -> None:
        self.outcomes = outcomes
        self.gate = Gate(outcomes)
        self.rng = rng or random.Random()
        self.pool = Pool()
        self.placement = placement
        self._substituted: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.pool.close()

    def substituted(self, target: Target, answered: object) -> Failure:
        """The backend answered with another model than the one asked for (LM Studio with one model
        loaded ignores the name): a failure that fails over, logged once per backend and model."""
        message = f"model substituted: asked for {target.model!r}, answered by {str(answered)[:200]!r}"
        key = (target.backend, target.model)
        if key not in self._substituted and len(self._substituted) < SUBSTITUTIONS_LOGGED:
            self._substituted.add(key)
            log.warning(
                "backend %s: %s; failing over (logged once per backend and model)",
                target.backend,
                message,
                extra={"event": "model_substituted", "backend": target.backend, "model": target.model},
            )
        return Failure("model_unavailable", message)


RouteHeaders = Callable[["Exchange"], dict[str, str]]
Attempt = Callable[[Target], Awaitable["Streamed | Answer | Failure"]]


@dataclass
class Exchange:
    """One client request (or one embeddings batch) walking its plan."""

    upstream: Upstream
    routing: RoutingConfig
    metrics: RequestMetrics
    req: ParsedRequest
    plan: Plan
    started: float
    poll_now: Callable[[str | None], None]
    waited: float = 0.0
    """Seconds spent waiting on upstreams, queues and backoffs (not lmwatch's own time)."""
    route: Route | None = None
    target: Target | None = None
    ttft: float | None = None
    usage: Usage = field(default_factory=Usage)
    failures: list[tuple[Target, Failure]] = field(default_factory=list)
    dialect: Dialect | None = None
    capture: bytearray | None = None
    """When set, a streamed answer's bytes as the client got them are kept here (for the cache)."""
    """How a Responses or Messages request reaches each target (None: chat, completions, embeddings)."""
    request_id: str | None = None
    """Sent upstream as X-Request-ID (when it is a UUID, see lmwatch/api/request_ids.py)."""
    _first: Target | None = None
    _bodies: dict[tuple[object, ...], bytes] = field(default_factory=dict)

    # --- the walk --------------------------------------------------------------------------------

    async def answer(self) -> Answer:
        """Walk the plan for a complete (non-streamed) answer."""
        result = await self.walk(self.call_json)
        assert isinstance(result, Answer)  # call_json never streams
        return result

    async def stream(self, request: web.Request, headers: RouteHeaders) -> Streamed | Answer:
        """Walk the plan relaying a stream (or the JSON error a backend answered instead)."""
        return await self.walk(lambda target: self.call_stream(target, request, headers))

    async def walk(self, attempt: Attempt) -> Streamed | Answer:
        deadline = asyncio.get_running_loop().time() + self.routing.queue_timeout
        for tier in self.plan.tiers:
            placement = self.upstream.placement
            if tier.route is Route.CLOUD:
                targets: Sequence[Target] = tier.targets
            elif placement is not None and all(_unloaded(t) for t in tier.targets):
                targets = placement.order(tier.targets)
            else:
                targets = order(tier.targets, self.upstream.outcomes, self.upstream.rng)
            pending = deque(targets)
            tries: dict[Target, int] = {}
            while pending:
                target = pending.popleft()
                tries[target] = tries.get(target, 0) + 1
                result = await self._try(tier, target, tries[target], deadline, attempt)
                if not isinstance(result, Failure):
                    return result
                self.failures.append((target, result))
                if result.transient and tries[target] < _attempts(target):
                    pending.append(target)
        raise self._exhausted()

    async def _try(
        self, tier: Tier, target: Target, attempt_no: int, deadline: float, attempt: Attempt
    ) -> Streamed | Answer | Failure:
        outcomes = self.upstream.outcomes
        if attempt_no > 1:
            await self._backoff(attempt_no)
        if self.dialect is not None and self.dialect.untranslatable and not self.dialect.native(target):
            return Failure("unsupported_api", self.dialect.untranslatable, breaker=False, attempted=False)
        self._first = self._first or target
        if not outcomes.breaker_allows(target.backend, target.model):
            return Failure("breaker_open", f"circuit open for {target.model}", breaker=False, attempted=False)
        placed = await self._place(target, deadline)
        if isinstance(placed, Failure):
            return placed
        try:
            admitted = await self._admit(target, deadline)
            if admitted is not None:
                outcomes.breaker_abandon(target.backend, target.model)
                return admitted
            self.route = (
                Route.CLOUD if tier.route is Route.CLOUD else (tier.route if target == self._first else Route.FAILOVER)
            )
            self.target = target
            self._count_fallback(target)
            result: Streamed | Answer | Failure | None = None
            model = target.info.id if target.info is not None else target.model
            outcomes.model_started(target.backend, model)
            try:
                result = await attempt(target)
                return result
            finally:
                outcomes.model_finished(target.backend, model)
                self._release(target)
                self._judge(target, result)
        finally:
            if placed is not None:
                await placed()

    async def _place(self, target: Target, deadline: float) -> Failure | Release | None:
        """Load the model of a target that is not loaded (demand placement); the wait counts as queueing."""
        placement = self.upstream.placement
        if placement is None or not _unloaded(target):
            return None
        began = time.perf_counter()
        try:
            return await placement.prepare(target, max(0.0, deadline - asyncio.get_running_loop().time()))
        except LoadError as exc:
            return Failure("load_failed", str(exc), breaker=False, attempted=False)
        finally:
            self.waited += time.perf_counter() - began

    async def _admit(self, target: Target, deadline: float) -> Failure | None:
        if target.cap is None:
            self.upstream.outcomes.started(target.backend)
            return None
        gate = self.upstream.gate
        if gate.try_acquire(target.backend, target.cap):
            return None
        if gate.waiting(target.backend) >= self.routing.max_queue:
            return Failure("queue_full", "its queue is full", breaker=False, attempted=False)
        began = time.perf_counter()
        remaining = deadline - asyncio.get_running_loop().time()
        ok = remaining > 0 and await gate.acquire(target.backend, target.cap, remaining, self.routing.max_queue)
        self.waited += time.perf_counter() - began
        if ok:
            return None
        return Failure(
            "queue_timeout", f"no free slot within {self.routing.queue_timeout:g} s", breaker=False, attempted=False
        )

    def _release(self, target: Target) -> None:
        if target.cap is None:
            self.upstream.outcomes.finished(target.backend)
        else:
            self.upstream.gate.release(target.backend)

    def _judge(self, target: Target, result: object) -> None:
        """Feed the breaker and count the attempt (`lmwatch_backend_attempts_total`, so a backend that
        fails behind a successful failover still shows); a cancelled attempt or a client that left
        gives no verdict."""
        outcomes = self.upstream.outcomes
        verdict = (
            Verdict.SUCCESS if isinstance(result, Answer) else result.verdict if isinstance(result, Streamed) else None
        )
        outcome = NO_VERDICT
        if isinstance(result, Failure):
            if result.breaker:
                outcomes.breaker_failure(target.backend, target.model, result.reason)
                outcome = FAILURE
            else:
                outcomes.breaker_abandon(target.backend, target.model)
            if result.reason == "model_unavailable" and not target.is_cloud:
                self.poll_now(target.backend)
            if not result.attempted:
                return  # never sent (this host is out of descriptors): not an attempt
        elif verdict is Verdict.SUCCESS:
            outcomes.breaker_success(target.backend, target.model)
            outcome = SUCCESS
        elif verdict is Verdict.UPSTREAM_FAILED:
            outcomes.breaker_failure(target.backend, target.model, "stream_cut")
            outcome = FAILURE
        else:
            outcomes.breaker_abandon(target.backend, target.model)
        self.metrics.child(self.metrics.attempts, target.backend, target.model, outcome).inc()

    async def _backoff(self, attempt_no: int) -> None:
        delay = min(self.routing.retry_backoff * 2 ** (attempt_no - 2), MAX_BACKOFF)
        delay *= 0.5 + self.upstream.rng.random() / 2
        self.waited += delay
        await asyncio.sleep(delay)

    def _count_fallback(self, target: Target) -> None:
        if self.failures and self.failures[-1][0] != target:
            failed, failure = self.failures[-1]
            self.metrics.child(self.metrics.fallbacks, failed.backend, target.backend, failure.reason).inc()

    def _exhausted(self) -> ApiError:
        if self.failures and all(f.reason == "unsupported_api" for _, f in self.failures):
            message = f"{self.failures[0][1].message}, and no backend that does can serve this request"
            return ApiError(400, message, code="unsupported_api")
        if not self.failures:
            return ApiError(
                503,
                f"no backend can serve this request: {self.plan.unavailable}",
                code="no_backend_available",
                headers={"Retry-After": "5"},
            )
        notes = "; ".join(f"{t.backend} ({t.model}): {f.reason}: {f.message}" for t, f in self.failures[-6:])
        if all(f.reason == "context_length" for _, f in self.failures):
            return ApiError(400, self.failures[-1][1].message, param="messages", code="context_length_exceeded")
        if any(f.attempted for _, f in self.failures):
            return ApiError(502, f"every backend failed: {notes}", code="upstream_failed")
        return ApiError(
            503,
            f"no backend could take the request: {notes}",
            code="no_backend_available",
            headers={"Retry-After": str(self._retry_after())},
        )

    def _retry_after(self) -> int:
        """Seconds until the first open breaker lets a trial through (1 when it was a full queue)."""
        outcomes = self.upstream.outcomes
        waits = [w for t, _ in self.failures if (w := outcomes.breaker_wait(t.backend, t.model)) is not None]
        return max(1, math.ceil(min(waits))) if waits else 1

    # --- one upstream call ------------------------------------------------------------------------

    def _native(self, target: Target) -> bool:
        """The target gets the request in its own API (always, for chat completions and the like)."""
        return self.dialect is None or self.dialect.native(target)

    def body_for(self, target: Target, stream: bool) -> bytes:
        """The original bytes when nothing must change; else re-encoded once per model and flavour.

        A translated request sends its chat-completions body; bodies get the flavour's rewrite
        (LM Studio's json_object), chat streams the usage chunk."""
        native = self._native(target)
        chat = self.dialect is None or not native
        source = self.req.body if native else self.req.as_chat
        inject = chat and stream and (not native or not self.req.wants_usage)
        rewrite = target.flavour.rewrite(source) if target.flavour is not None else None
        if native and rewrite is None and self.req.raw and not inject and source.get("model") == target.model:
            return self.req.raw
        key = (target.model, inject, native, target.flavour.name if rewrite is not None and target.flavour else None)
        if key not in self._bodies:
            body = dict(rewrite or source, model=target.model)
            if inject:
                options = source.get("stream_options")
                body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
            self._bodies[key] = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return self._bodies[key]

    async def _post(self, target: Target, stream: bool) -> Response | Failure:
        connect = target.provider.timeout if target.provider else target.config.timeout if target.config else 30.0
        idle = target.provider.timeout if target.provider else self.routing.idle_timeout
        try:
            token = target.token()
        except OSError as exc:  # an unreadable `api_token_file`: a config problem, the next target may serve
            return Failure("bad_config", f"cannot read api_token_file: {exc.strerror or exc}", breaker=False)
        headers = _HEADERS[stream] if not token else {**_HEADERS[stream], "Authorization": f"Bearer {token}"}
        if self.request_id is not None:
            headers = {**headers, "X-Request-ID": self.request_id}
        path = self.req.endpoint.path if self._native(target) else Endpoint.CHAT.path
        body = self.body_for(target, stream)
        try:
            return await self.upstream.pool.post(target.url, path, body, headers, connect, idle)
        except (UpstreamError, TimeoutError) as exc:
            return _connection_failure(exc)
        except ValueError as exc:  # a token with a line break: never sent
            return Failure("bad_config", str(exc), breaker=False)

    async def call_json(self, target: Target) -> Answer | Failure:
        """A non-streamed attempt: the whole answer, judged."""
        sent = time.perf_counter()
        resp = await self._post(target, stream=False)
        if isinstance(resp, Failure):
            self.waited += time.perf_counter() - sent
            return resp
        try:
            raw = await resp.read(self.routing.max_answer_bytes)
        except (UpstreamError, TimeoutError) as exc:
            return _connection_failure(exc)
        finally:
            elapsed = time.perf_counter() - sent
            self.waited += elapsed
            resp.close()
        result = self._judge_json(target, resp.status, raw)
        if isinstance(result, Answer) and result.status == 200 and self.usage.completion and not target.is_cloud:
            # no first-token time without a stream; tokens/s here includes reading the prompt
            self.upstream.outcomes.record_speed(target.backend, target.model, None, self.usage.completion / elapsed)
        return result

    def _judge_json(self, target: Target, status: int, raw: bytes) -> Answer | Failure:
        try:
            obj = loads(raw)
        except ValueError:
            obj = None
        message = error_message(obj)
        if status == 200 and message is None and isinstance(obj, dict):
            if target.substitutes_model and not _answered_by(obj, target):
                return self.upstream.substituted(target, obj.get("model"))
            self.usage.add(obj.get("usage"))
            if self.usage.prompt:
                learn(self.req, target, self.upstream.outcomes, self.usage.prompt)
            wanted = self.client_model(target)
            changed = wanted is not None and isinstance(obj.get("model"), str) and obj["model"] != wanted
            if changed:
                obj["model"] = wanted
            if self.dialect is not None:
                self.dialect.translated = not self._native(target)
                if self.dialect.translated:
                    obj, changed = self.dialect.answer(obj, wanted or target.model), True
                self.dialect.served(target, obj.get("id") if isinstance(obj.get("id"), str) else None)
            if changed:
                raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            return Answer(status, raw, obj)
        if message is None:
            message = raw[:300].decode("utf-8", "replace") or f"HTTP {status}"
        return self._upstream_error(target, status, message, obj)

    def _upstream_error(self, target: Target, status: int, message: str, obj: Any) -> Answer | Failure:
        """A context-length error fails over (another instance may hold more) and teaches lmwatch the
        backend's context; every other error is judged by `_error_outcome`."""
        code = (
            obj.get("error", {}).get("code") if isinstance(obj, dict) and isinstance(obj.get("error"), dict) else None
        )
        if status < 500 and (code == "context_length_exceeded" or is_context_exceeded(target.flavour, message)):
            context = context_in_error(message)
            if context is not None and not target.is_cloud:
                self.upstream.outcomes.record_context(target.backend, target.model_key, context)
            return Failure("context_length", message, breaker=False)
        return _error_outcome(target, status, message, obj)

    def client_model(self, target: Target) -> str | None:
        """The model id a local answer carries: the id the client asked for (an alias too), or the
        served model without its instance suffix for `auto` and `task:`; None for cloud answers."""
        if target.is_cloud:
            return None
        if self.req.model == AUTO or self.req.model.startswith(TASK_PREFIX):
            return target.model_key
        return self.req.model

    async def call_stream(
        self, target: Target, request: web.Request, headers: RouteHeaders
    ) -> Streamed | Answer | Failure:
        """A streamed attempt: relay events as they come; fail over only while nothing was sent."""
        sent = time.perf_counter()
        resp = await self._post(target, stream=True)
        if isinstance(resp, Failure):
            self.waited += time.perf_counter() - sent
            return resp
        if resp.status != 200 or "text/event-stream" not in resp.headers.get("content-type", ""):
            try:
                raw = await resp.read(self.routing.max_answer_bytes)
            except (UpstreamError, TimeoutError) as exc:
                return _connection_failure(exc)
            finally:
                self.waited += time.perf_counter() - sent
                resp.close()
            return self._judge_json(target, resp.status, raw)
        try:
            return await self._relay(target, resp, sent, request, headers)
        finally:
            resp.close()  # read to the end it goes back to the pool; otherwise it is cut (LM Studio stops)

    async def _relay(
        self, target: Target, resp: Response, sent: float, request: web.Request, headers: RouteHeaders
    ) -> Streamed | Answer | Failure:
        splitter = EventSplitter()
        native = self._native(target)
        meter: Meter
        translator: ChatStream | None = None
        if self.dialect is not None and native:
            meter = self.dialect.meter()
        else:
            meter = StreamMeter(strip_usage=not native or not self.req.wants_usage)
        if self.dialect is not None:
            self.dialect.translated = not native
            if not native:
                translator = self.dialect.stream(target.model, lambda: _stream_tokens(meter))
        rename: list[tuple[bytes, bytes]] | None = None
        out: web.StreamResponse | None = None
        failure: str | None = None
        shutdown = False
        try:
            async for chunk in resp.chunks():
                now = time.perf_counter()
                events = splitter.feed(chunk)
                kept = [e for e in events if meter.keep(e, now)]
                if out is None:
                    if meter.first_at is None and not meter.done:
                        continue  # nothing but comments yet: keep the chance to fail over
                    self.waited += now - sent
                    early = self._early_failure(meter, target)
                    if early is not None:
                        return early
                    rename = _rename(meter.first, self.client_model(target))
                    self.ttft = now - sent
                    out = await open_stream(request, headers(self))
                if translator is not None:
                    data = translator.translate(kept)
                else:
                    data = b"".join(kept) if len(kept) > 1 else kept[0] if kept else b""
                for old, new in rename or ():
                    data = data.replace(old, new)
                if data and not await _write(out, data):
                    return Streamed(out, Verdict.CLIENT_GONE)
                if data and self.capture is not None:
                    self.capture += data
                if meter.error is not None:
                    failure = error_message(meter.error) or "the backend reported an error"
                    break
        except (UpstreamError, TimeoutError) as exc:
            if out is None:
                return _connection_failure(exc)
            failure = _describe(exc)
            shutdown = isinstance(exc, ShuttingDown)
        if out is None:
            return Failure("stream_cut", "the stream ended before any event", transient=True)
        if failure is None and not meter.done:
            failure = "the backend closed the stream before it was complete"
        self._account_stream(target, meter, sent)
        if failure is not None:
            message, code = f"upstream {target.backend} failed mid-stream: {failure}", "upstream_failed"
            if shutdown:
                message, code = failure, "shutting_down"
            if translator is not None:
                await _write(out, translator.error(message, code))
            elif self.dialect is not None:
                await _write(out, self.dialect.stream_error(message, code))
            else:
                await _write(out, error_event(message, code))
            return Streamed(out, Verdict.UPSTREAM_FAILED)
        if self.dialect is not None:
            self.dialect.served(target, str((meter.first or {}).get("id") or "") or None)
        try:
            await out.write_eof()
        except ConnectionResetError:  # the client left just before the end: not lmwatch's error (no 500)
            return Streamed(out, Verdict.CLIENT_GONE)
        return Streamed(out, Verdict.SUCCESS)

    def _early_failure(self, meter: Meter, target: Target) -> Answer | Failure | None:
        """A stream whose first event is an error, or comes from another model, can still fail over."""
        if meter.error is not None:
            return self._upstream_error(target, 200, error_message(meter.error) or "error event", meter.error)
        if meter.first is None and meter.first_at is not None and not meter.done:
            return Failure("bad_response", "the stream's first event is not a JSON object")
        if target.substitutes_model and meter.first is not None and not _answered_by(meter.first, target):
            return self.upstream.substituted(target, meter.first.get("model"))
        return None

    def _account_stream(self, target: Target, meter: Meter, sent: float) -> None:
        if meter.usage is not None:
            self.usage.add(meter.usage)
            if self.usage.prompt:
                learn(self.req, target, self.upstream.outcomes, self.usage.prompt)
        else:  # no usage chunk (llama-cpp-python ignores stream_options): one token per text chunk
            self.usage.completion += meter.text_chunks
        if self.ttft is not None and meter.first_at is not None:
            generating = time.perf_counter() - meter.first_at
            tps = self.usage.completion / generating if generating > 0 and self.usage.completion else None
            if not target.is_cloud:
                self.upstream.outcomes.record_speed(target.backend, target.model, self.ttft, tps)

    def overhead(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.waited)


async def open_stream(request: web.Request, headers: dict[str, str]) -> web.StreamResponse:
    """Start an SSE answer to the client (a relayed stream, or one replayed from the cache)."""
    out = web.StreamResponse(status=200)
    out.content_type = "text/event-stream"
    out.headers.update(_STREAM_HEADERS)
    out.headers.update(headers)
    await out.prepare(request)
    return out


# --- judging answers -----------------------------------------------------------------------------


def _unloaded(target: Target) -> bool:
    return not target.is_cloud and target.info is not None and not target.info.loaded


def _attempts(target: Target) -> int:
    """Tries of one target on transient errors: the backend's `retry_attempts`; a cloud provider once."""
    return target.config.retry_attempts if target.config is not None else 1


def _answered_by(obj: dict[str, Any], target: Target) -> bool:
    model = obj.get("model")
    return not isinstance(model, str) or not model or same_model(model, target.model) or same_model(target.model, model)


def _stream_tokens(meter: Meter) -> tuple[int, int]:
    """(prompt, completion) tokens of a stream so far: its usage, else one token per text chunk."""
    usage = meter.usage or {}
    return _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens")) or meter.text_chunks


def _rename(first: dict[str, Any] | None, wanted: str | None) -> list[tuple[bytes, bytes]] | None:
    """Byte replacements that give each event the client's model id (None when it already has it)."""
    served = first.get("model") if first is not None else None
    if wanted is None or not isinstance(served, str) or served == wanted:
        return None
    old, new = json.dumps(served).encode(), json.dumps(wanted).encode()
    return [(b'"model":' + old, b'"model":' + new), (b'"model": ' + old, b'"model": ' + new)]


def _error_outcome(target: Target, status: int, message: str, obj: Any) -> Answer | Failure:
    """Which upstream errors fail over, and which the client must see (its own request is wrong)."""
    code = obj.get("error", {}).get("code") if isinstance(obj, dict) and isinstance(obj.get("error"), dict) else None
    wrong_type = model_type_refused(target.flavour, message)
    if wrong_type is not None and status < 500:
        wanted = "a text (llm)" if wrong_type == "llm" else "an embedding"
        body = error_body(
            f"{message} (this endpoint needs {wanted} model)", error_type(400), "model_type_mismatch", "model"
        )
        return Answer(400, json.dumps(body).encode(), body)
    if status == 404 or code == "model_not_found" or is_model_gone(target.flavour, message):
        return Failure("model_unavailable", message, breaker=False)
    if status in (401, 403):
        return Failure("auth", f"the backend refused lmwatch's credentials (HTTP {status})")
    if status == 429:
        return Failure("http_429", message, breaker=False)
    if status == 408:
        return Failure("timeout", message)
    if status in (502, 503, 504):
        return Failure("http_5xx", f"HTTP {status}: {message}", transient=True)
    if status >= 500:
        return Failure("http_5xx", f"HTTP {status}: {message}")
    if status == 200:
        return Failure("error_body", message)
    param = obj["error"].get("param") if isinstance(obj, dict) and isinstance(obj.get("error"), dict) else None
    body = error_body(
        message, error_type(status), code if isinstance(code, str) else None, param if isinstance(param, str) else None
    )
    return Answer(status, json.dumps(body).encode(), body)


def _connection_failure(exc: BaseException) -> Failure:
    if isinstance(exc, LocalResources):  # this host's limits: the backend did nothing wrong
        return Failure("local_resources", _describe(exc), breaker=False, attempted=False)
    if isinstance(exc, ShuttingDown):
        return Failure("shutting_down", _describe(exc), breaker=False, attempted=False)
    if isinstance(exc, AnswerTooLarge):
        return Failure("answer_too_large", _describe(exc), breaker=False)
    if isinstance(exc, TimeoutError):
        return Failure("timeout", _describe(exc))
    if isinstance(exc, ConnectError):
        return Failure("connect", _describe(exc), transient=True)
    if isinstance(exc, ConnectionLost):
        return Failure("connect" if exc.before_answer else "stream_cut", _describe(exc), transient=True)
    return Failure("bad_response", _describe(exc))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "no data within the idle timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _write(out: web.StreamResponse, data: bytes) -> bool:
    """Write to the client; False when it has gone away."""
    try:
        await out.write(data)
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one too
        return False
    return True


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0
