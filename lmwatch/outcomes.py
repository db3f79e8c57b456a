"""Request outcomes: the request path's state about the fleet, written by the router and read by
routing, lifecycle, metrics and /status.

In-flight and queued requests per backend, speed averages and learned prompt sizes per (backend,
model), and the circuit breaker per (backend, model). The registry owns the one instance of a
daemon (`Registry.outcomes`) and tells it what the pollers saw: a backend down or back, a model
reloaded, a backend removed.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from lmwatch.breaker import Breaker, CircuitState
from lmwatch.config import BreakerConfig

if TYPE_CHECKING:
    from lmwatch.registry import ModelProfile

RECENT_REQUESTS = 50
"""How many finished `/v1` requests `/status` lists (the console's "recent requests")."""

SPEED_EWMA_ALPHA = 0.3
"""Weight of the newest sample in the moving averages of time to first token and tokens/s."""


class Speed(NamedTuple):
    """Replaced on every answer: a tuple is the cheapest immutable value to make."""

    ttft: float | None = None
    """Moving average of the seconds to the first streamed token."""
    tokens_per_second: float | None = None
    samples: int = 0


@dataclass(frozen=True)
class BreakerView:
    backend: str
    model: str
    state: CircuitState
    failures: int
    retry_at: float | None
    reason: str


class RecentRequest(NamedTuple):
    """One finished `/v1` request: where it went and how it ended. Never its prompt or its key.
    A tuple: one is made per request, and a frozen dataclass costs a `__setattr__` per field."""

    backend: str
    model: str
    task: str
    route: str
    code: str
    duration_seconds: float
    ttft_seconds: float | None
    output_tokens: int
    time: float = 0.0
    """When it finished; stamped by RequestOutcomes.request_done with the registry's clock."""


@dataclass(frozen=True)
class OutcomesView:
    """An immutable copy for metrics and /status."""

    inflight: Mapping[str, int]
    queued: Mapping[str, int]
    speeds: Mapping[tuple[str, str], Speed]
    breakers: tuple[BreakerView, ...]
    recent: tuple[RecentRequest, ...] = ()
    """Newest first."""

    def document(self) -> dict[str, Any]:
        """The `/status` section: per backend in-flight and queued, per model speed and breaker."""
        return {
            "inflight": dict(self.inflight),
            "queued": dict(self.queued),
            "speeds": [
                {
                    "backend": b,
                    "model": m,
                    "ttft_seconds": s.ttft,
                    "tokens_per_second": s.tokens_per_second,
                    "samples": s.samples,
                }
                for (b, m), s in self.speeds.items()
            ],
            "breakers": [
                {
                    "backend": v.backend,
                    "model": v.model,
                    "state": v.state.value,
                    "failures": v.failures,
                    "retry_at": v.retry_at,
                    "reason": v.reason,
                }
                for v in self.breakers
            ],
            "recent": [r._asdict() for r in self.recent],
        }


@dataclass
class _Floors:
    """Lower bounds of what the context check reads per target, kept as values are recorded, so a
    request that fits even the tightest of them skips the check of every target (300 backends)."""

    chars_per_token: float = math.inf
    context: int | None = None
    profiles: object = None
    """The profiles mapping `profiled` was computed from (the snapshot's, compared by identity)."""
    profiled: float = math.inf


class RequestOutcomes:
    """Mutable request-path state of one registry; every method is O(1) and runs on the loop.

    Its counters are written only through its methods; the mappings it shows are read-only views."""

    def __init__(
        self, profiles: Callable[[], Mapping[tuple[str, str], ModelProfile]], clock: Callable[[], float]
    ) -> None:
        self._profiles = profiles
        self._clock = clock
        self._policy: Callable[[], BreakerConfig] = BreakerConfig
        self._inflight: dict[str, int] = {}
        self._queued: dict[str, int] = {}
        self._model_inflight: dict[tuple[str, str], int] = {}
        self._last_used: dict[tuple[str, str], float] = {}
        self.inflight: Mapping[str, int] = MappingProxyType(self._inflight)
        """backend -> requests running on it now."""
        self.queued: Mapping[str, int] = MappingProxyType(self._queued)
        """backend -> requests waiting for one of its slots."""
        self.model_inflight: Mapping[tuple[str, str], int] = MappingProxyType(self._model_inflight)
        """(backend, model) -> requests running on that model now (lifecycle: never unload under them)."""
        self.last_used: Mapping[tuple[str, str], float] = MappingProxyType(self._last_used)
        """(backend, model) -> when a request on it last finished (idle unload)."""
        self._drained: dict[tuple[str, str], list[asyncio.Future[None]]] = {}
        self._speeds: dict[tuple[str, str], Speed] = {}
        self._breakers: dict[tuple[str, str], Breaker] = {}
        self._recent: deque[tuple[str, str, str, str, str, float, float | None, int, float]] = deque(
            maxlen=RECENT_REQUESTS
        )
        """RecentRequest's fields, as plain tuples (made into RecentRequests when viewed: views are rare)."""
        self._chars_per_token: dict[tuple[str, str], float] = {}
        self._learned_context: dict[tuple[str, str], int] = {}
        self._floors = _Floors()

    def use_policy(self, policy: Callable[[], BreakerConfig]) -> None:
        """Where the breaker policy in force comes from (the router: the current config's); read when a
        breaker trips, so a reload applies to the next failure."""
        self._policy = policy

    # --- in-flight and queued --------------------------------------------------------------------

    def started(self, backend: str) -> None:
        self._inflight[backend] = self._inflight.get(backend, 0) + 1

    def finished(self, backend: str) -> None:
        self._inflight[backend] = max(0, self._inflight.get(backend, 0) - 1)

    def request_done(
        self,
        backend: str,
        model: str,
        task: str,
        route: str,
        code: str,
        duration: float,
        ttft: float | None,
        output_tokens: int,
    ) -> None:
        """A `/v1` request finished (a `RecentRequest`); only the last RECENT_REQUESTS are kept."""
        self._recent.appendleft((backend, model, task, route, code, duration, ttft, output_tokens, self._clock()))

    def queue_changed(self, backend: str, delta: int) -> None:
        self._queued[backend] = max(0, self._queued.get(backend, 0) + delta)

    def model_started(self, backend: str, model: str) -> None:
        key = (backend, model)
        self._model_inflight[key] = self._model_inflight.get(key, 0) + 1

    def model_finished(self, backend: str, model: str) -> None:
        key = (backend, model)
        left = max(0, self._model_inflight.get(key, 0) - 1)
        self._model_inflight[key] = left
        self._last_used[key] = self._clock()
        if left == 0:
            for waiter in self._drained.pop(key, []):
                if not waiter.done():
                    waiter.set_result(None)

    async def model_drained(self, backend: str, model: str, timeout: float) -> bool:
        """Wait until no request runs on (backend, model); False when `timeout` passed first."""
        key = (backend, model)
        if not self._model_inflight.get(key):
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._drained.setdefault(key, []).append(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except TimeoutError:
            return False
        return True

    # --- speed -----------------------------------------------------------------------------------

    def speed(self, backend: str, model: str) -> Speed | None:
        return self._speeds.get((backend, model))

    def record_speed(self, backend: str, model: str, ttft: float | None, tokens_per_second: float | None) -> None:
        key = (backend, model)
        old = self._speeds.get(key)
        if old is None:
            self._speeds[key] = Speed(ttft, tokens_per_second, 1)
        else:
            self._speeds[key] = Speed(
                _ewma(old.ttft, ttft), _ewma(old.tokens_per_second, tokens_per_second), old.samples + 1
            )

    # --- prompt size: calibration and learned context -------------------------------------------

    def chars_per_token(self, backend: str, model: str) -> float | None:
        """Characters per prompt token of this model, learned from the usage its backend reports."""
        return self._chars_per_token.get((backend, model))

    def record_prompt(self, backend: str, model: str, chars: int, tokens: int) -> None:
        if chars > 0 and tokens > 0:
            key = (backend, model)
            value = _ewma(self._chars_per_token.get(key), chars / tokens)
            assert value is not None
            self._chars_per_token[key] = value
            self._floors.chars_per_token = min(self._floors.chars_per_token, value)

    def profile(self, backend: str, model: str) -> ModelProfile | None:
        """The measured profile of a model: the balancer's prior before live averages exist."""
        return self._profiles().get((backend, model))

    def learned_context(self, backend: str, model: str) -> int | None:
        """A context the backend itself said it has (in a context-length error), until the model reloads."""
        return self._learned_context.get((backend, model))

    def record_context(self, backend: str, model: str, tokens: int) -> None:
        self._learned_context[(backend, model)] = tokens
        floor = self._floors.context
        self._floors.context = tokens if floor is None else min(floor, tokens)

    def chars_per_token_floor(self) -> float | None:
        """No (backend, model) has fewer characters per token than this, learned or profiled (None:
        nothing known). A bound, not an exact minimum: it never rises, so the context check can trust it."""
        profiles = self._profiles()
        floors = self._floors
        if floors.profiles is not profiles:
            measured = [p.chars_per_token for p in profiles.values() if p.chars_per_token]
            floors.profiles, floors.profiled = profiles, min(measured, default=math.inf)
        floor = min(floors.chars_per_token, floors.profiled)
        return None if floor == math.inf else floor

    def learned_context_floor(self) -> int | None:
        """No context learned from a backend's error is smaller than this (None: none learned); it never rises."""
        return self._floors.context

    # --- breakers --------------------------------------------------------------------------------

    def breaker_allows(self, backend: str, model: str) -> bool:
        breaker = self._breakers.get((backend, model))
        return breaker is None or breaker.allow(self._clock())

    def breaker_success(self, backend: str, model: str) -> None:
        breaker = self._breakers.get((backend, model))
        if breaker is not None:
            breaker.success()

    def breaker_failure(self, backend: str, model: str, reason: str) -> None:
        breaker = self._breakers.setdefault((backend, model), Breaker())
        breaker.failure(self._clock(), self._policy(), reason)

    def breaker_abandon(self, backend: str, model: str) -> None:
        breaker = self._breakers.get((backend, model))
        if breaker is not None:
            breaker.abandon()

    def breaker_wait(self, backend: str, model: str) -> float | None:
        """Seconds until an open breaker lets a trial through; None when it is not open."""
        breaker = self._breakers.get((backend, model))
        retry_at = breaker.retry_at() if breaker is not None else None
        return None if retry_at is None else max(0.0, retry_at - self._clock())

    # --- reading ---------------------------------------------------------------------------------

    def view(self) -> OutcomesView:
        now = self._clock()
        return OutcomesView(
            inflight=MappingProxyType(dict(self._inflight)),
            queued=MappingProxyType(dict(self._queued)),
            speeds=MappingProxyType(dict(self._speeds)),
            breakers=tuple(
                BreakerView(b, m, br.current(now), br.failures, br.retry_at(), br.reason)
                for (b, m), br in self._breakers.items()
            ),
            recent=tuple(RecentRequest._make(r) for r in self._recent),
        )

    # --- fed by the registry: what the pollers saw ---------------------------------------------

    def model_changed(self, backend: str, model: str) -> None:
        """A model was loaded or unloaded: the context it said it has may differ now."""
        self._learned_context.pop((backend, model), None)

    def forget(self, backend: str) -> None:
        """A backend left the fleet."""
        for table in (self._speeds, self._breakers, self._chars_per_token, self._learned_context):
            for key in [k for k in table if k[0] == backend]:
                del table[key]
        self._inflight.pop(backend, None)
        self._queued.pop(backend, None)

    def backend_down(self, backend: str, models: Iterable[str]) -> None:
        """Open the breakers of a backend that went down: of `models` and of every model it has one for."""
        for model in set(models) | {m for b, m in self._breakers if b == backend}:
            breaker = self._breakers.setdefault((backend, model), Breaker())
            breaker.force_open(self._clock(), self._policy(), "backend down")

    def backend_back(self, backend: str) -> None:
        """A backend is back from down: its open breakers let a trial through."""
        for (b, _), breaker in self._breakers.items():
            if b == backend:
                breaker.force_half_open()


def _ewma(old: float | None, new: float | None) -> float | None:
    if new is None:
        return old
    return new if old is None else old + SPEED_EWMA_ALPHA * (new - old)
