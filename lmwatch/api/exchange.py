"""One client request (or one embeddings batch) walking its plan, with failover and retries.

Within a tier the balancer orders the targets, the breaker and the concurrency gate admit them
(lmwatch/api/admission.py), and a failure moves on: the same model elsewhere, then the next tier,
then the cloud. Transient errors (refused or reset connections, 502/503/504) retry the same target
after a backoff, once the others had their turn. All of this happens only before the first byte
reaches the client: after that a failure ends the stream with an OpenAI-style error event
(lmwatch/api/sse_relay.py), and nothing is replayed.

Timeouts: connecting is bounded by the backend's `timeout`; after that only silence is bounded
(`routing.idle_timeout` between reads), never the total, so a slow local generation is not cut.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from lmwatch.api import admission, feedback
from lmwatch.api.attempts import Failure, Result, Usage, connection_failure
from lmwatch.api.dialects import Dialect
from lmwatch.api.errors import ApiError
from lmwatch.api.rewrite import Bodies
from lmwatch.api.upstream import Release, Upstream
from lmwatch.config import RoutingConfig
from lmwatch.failures import FailureReason
from lmwatch.http_client import Response, UpstreamError
from lmwatch.metrics.requests import RequestMetrics
from lmwatch.redaction import Redactor
from lmwatch.routing.balance import order
from lmwatch.routing.request import Endpoint, ParsedRequest
from lmwatch.routing.select import Plan, Route, Target, Tier

MAX_BACKOFF = 2.0
_HEADERS = {
    stream: {"Content-Type": "application/json", "Accept": "text/event-stream" if stream else "application/json"}
    for stream in (False, True)
}

Attempt = Callable[[Target], Awaitable[Result]]


@dataclass(slots=True)
class Exchange:
    """One client request (or one embeddings batch) walking its plan."""

    upstream: Upstream
    routing: RoutingConfig
    metrics: RequestMetrics
    req: ParsedRequest
    plan: Plan
    started: float
    poll_now: Callable[[str | None], None]
    redactor: Redactor
    """The daemon's secrets: what an upstream wrote is redacted with it where lmwatch reads it."""
    waited: float = 0.0
    """Seconds spent waiting on upstreams, queues and backoffs (not lmwatch's own time)."""
    route: Route | None = None
    target: Target | None = None
    ttft: float | None = None
    usage: Usage = field(default_factory=Usage)
    failures: list[tuple[Target, Failure]] = field(default_factory=list)
    dialect: Dialect | None = None
    """How a Responses or Messages request reaches each target (None: chat, completions, embeddings)."""
    capture: bytearray | None = None
    """When set, a streamed answer's bytes as the client got them are kept here (for the cache)."""
    request_id: str | None = None
    """Sent upstream as X-Request-ID (when it is a UUID, see lmwatch/api/request_ids.py)."""
    _first: Target | None = None
    _bodies: Bodies | None = None

    # --- the walk --------------------------------------------------------------------------------

    async def walk(self, attempt: Attempt) -> Result:
        """The first attempt that is not a failure; ApiError when every target failed."""
        deadline = time.monotonic() + self.routing.queue_timeout  # not the loop's time: a getpid call each
        for tier in self.plan.tiers:
            ranked = iter(self._ordered(tier))  # lazy: failover ranks the rest only when it gets there
            retries: deque[Target] = deque()
            tries: dict[Target, int] = {}
            while (target := next(ranked, None) or (retries.popleft() if retries else None)) is not None:
                tried = tries.get(target, 0) + 1 if tries else 1  # (a target's hash is a Python call)
                result = await self._try(tier, target, tried, deadline, attempt)
                if not isinstance(result, Failure):
                    return result
                tries[target] = tried
                self.failures.append((target, result))
                if result.transient and tried < _attempts(target):
                    retries.append(target)
        raise self._exhausted()

    def _ordered(self, tier: Tier) -> Iterable[Target]:
        """Cloud providers in their configured order; unloaded models by placement; else balanced."""
        placement = self.upstream.placement
        if tier.route is Route.CLOUD or len(tier.targets) == 1:
            return tier.targets  # in order, or nothing to rank
        if placement is not None and all(admission.unloaded(t) for t in tier.targets):
            return placement.order(tier.targets)
        return order(tier.targets, self.upstream.outcomes, self.upstream.rng)

    async def _try(self, tier: Tier, target: Target, attempt_no: int, deadline: float, attempt: Attempt) -> Result:
        outcomes = self.upstream.outcomes
        if attempt_no > 1:
            await self._backoff(attempt_no)
        if self.dialect is not None and self.dialect.untranslatable and not self.dialect.native(target):
            return Failure(FailureReason.UNSUPPORTED_API, self.dialect.untranslatable, breaker=False, attempted=False)
        self._first = self._first or target
        if not outcomes.breaker_allows(target.backend, target.model):
            return Failure(
                FailureReason.BREAKER_OPEN, f"circuit open for {target.model}", breaker=False, attempted=False
            )
        placed: Release | None = None
        if admission.needs_loading(self.upstream, target):
            placing, waited = await admission.place(self.upstream, target, deadline)
            self.waited += waited
            if isinstance(placing, Failure):
                return placing
            placed = placing
        try:
            if not admission.admit_now(self.upstream, target):
                refused, waited = await admission.admit(self.upstream, self.routing, target, deadline)
                self.waited += waited
                if refused is not None:
                    outcomes.breaker_abandon(target.backend, target.model)
                    return refused
            self.route = (
                Route.CLOUD
                if tier.route is Route.CLOUD
                else (tier.route if target is self._first or target == self._first else Route.FAILOVER)
            )
            self.target = target
            self._count_fallback(target)
            result: Result | None = None
            model = target.model_key
            outcomes.model_started(target.backend, model)
            try:
                result = await attempt(target)
                return result
            finally:
                outcomes.model_finished(target.backend, model)
                admission.release(self.upstream, target)
                feedback.judge(outcomes, self.metrics, target, result, self.poll_now)
        finally:
            if placed is not None:
                await placed()

    async def _backoff(self, attempt_no: int) -> None:
        delay = min(self.routing.retry_backoff * 2 ** (attempt_no - 2), MAX_BACKOFF)
        delay *= 0.5 + self.upstream.rng.random() / 2
        self.waited += delay
        await asyncio.sleep(delay)

    def _count_fallback(self, target: Target) -> None:
        if self.failures and self.failures[-1][0] != target:
            failed, failure = self.failures[-1]
            self.metrics.fallbacks.inc((failed.backend, target.backend, failure.reason))

    def _exhausted(self) -> ApiError:
        if self.failures and all(f.reason is FailureReason.UNSUPPORTED_API for _, f in self.failures):
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
        if all(f.reason is FailureReason.CONTEXT_LENGTH for _, f in self.failures):
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

    def native(self, target: Target) -> bool:
        """The target gets the request in its own API (always, for chat completions and the like)."""
        return self.dialect is None or self.dialect.native(target)

    async def post(self, target: Target, stream: bool) -> Response | Failure:
        """Send the request to `target`; its answer's head, or why there is none."""
        connect = target.provider.timeout if target.provider else target.config.timeout if target.config else 30.0
        idle = target.provider.timeout if target.provider else self.routing.idle_timeout
        try:
            token = target.token()
        except OSError as exc:  # an unreadable `api_token_file`: a config problem, the next target may serve
            return Failure(
                FailureReason.BAD_CONFIG, f"cannot read api_token_file: {exc.strerror or exc}", breaker=False
            )
        headers = _HEADERS[stream] if not token else {**_HEADERS[stream], "Authorization": f"Bearer {token}"}
        if self.request_id is not None:
            headers = {**headers, "X-Request-ID": self.request_id}
        native = self.native(target)
        path = self.req.endpoint.path if native else Endpoint.CHAT.path
        if self._bodies is None:
            self._bodies = Bodies(self.req)
        body = self._bodies.body_for(target, stream, native, chat=self.dialect is None or not native)
        try:
            return await self.upstream.pool.post(target.url, path, body, headers, connect, idle)
        except (UpstreamError, TimeoutError) as exc:
            return connection_failure(exc)
        except ValueError as exc:  # a token with a line break: never sent
            return Failure(FailureReason.BAD_CONFIG, str(exc), breaker=False)

    def overhead(self) -> float:
        return max(0.0, time.perf_counter() - self.started - self.waited)


def _attempts(target: Target) -> int:
    """Tries of one target on transient errors: the backend's `retry_attempts`; a cloud provider once."""
    return target.config.retry_attempts if target.config is not None else 1
