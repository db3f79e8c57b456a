"""Admission of one attempt: the model loaded first when it is not (demand placement), then a slot
under the backend's concurrency cap, waiting in its bounded queue until the request's deadline.
Both waits are queueing, not lmwatch's own time: each call says how long it waited. Deadlines
are `time.monotonic()` seconds."""

from __future__ import annotations

import time

from lmwatch.api.attempts import Failure
from lmwatch.api.upstream import Release, Upstream
from lmwatch.config import RoutingConfig
from lmwatch.failures import FailureReason
from lmwatch.lifecycle.loads import LoadError
from lmwatch.routing.select import Target


def unloaded(target: Target) -> bool:
    """A local target whose model is downloaded but not loaded (demand placement loads it)."""
    return not target.is_cloud and target.info is not None and not target.info.loaded


def needs_loading(upstream: Upstream, target: Target) -> bool:
    """`place` has work to do: demand placement is on and the target's model is not loaded."""
    return upstream.placement is not None and unloaded(target)


async def place(upstream: Upstream, target: Target, deadline: float) -> tuple[Failure | Release | None, float]:
    """Load the model of a target that is not loaded; (a failure, or a Release to await after the
    request, or None; seconds waited)."""
    placement = upstream.placement
    if placement is None or not unloaded(target):
        return None, 0.0
    began = time.perf_counter()
    try:
        return await placement.prepare(target, max(0.0, deadline - time.monotonic())), _since(began)
    except LoadError as exc:
        return Failure(FailureReason.LOAD_FAILED, str(exc), breaker=False, attempted=False), _since(began)


def admit_now(upstream: Upstream, target: Target) -> bool:
    """A slot for `target` at once when it has no cap or one is free (most requests: no await)."""
    if target.cap is None:
        upstream.outcomes.started(target.backend)
        return True
    return upstream.gate.try_acquire(target.backend, target.cap)


async def admit(
    upstream: Upstream, routing: RoutingConfig, target: Target, deadline: float
) -> tuple[Failure | None, float]:
    """A slot for `target` (None) or why not; and the seconds spent waiting for it in its bounded
    queue. The hot path tries `admit_now` first and comes here only when that found none."""
    if admit_now(upstream, target):
        return None, 0.0
    gate, cap = upstream.gate, target.cap
    assert cap is not None  # admit_now admits every target without a cap
    if gate.waiting(target.backend) >= routing.max_queue:
        return Failure(FailureReason.QUEUE_FULL, "its queue is full", breaker=False, attempted=False), 0.0
    began = time.perf_counter()
    remaining = deadline - time.monotonic()
    ok = remaining > 0 and await gate.acquire(target.backend, cap, remaining, routing.max_queue)
    if ok:
        return None, _since(began)
    failure = Failure(
        FailureReason.QUEUE_TIMEOUT, f"no free slot within {routing.queue_timeout:g} s", breaker=False, attempted=False
    )
    return failure, _since(began)


def release(upstream: Upstream, target: Target) -> None:
    """The slot `admit` gave back."""
    if target.cap is None:
        upstream.outcomes.finished(target.backend)
    else:
        upstream.gate.release(target.backend)


def _since(began: float) -> float:
    return time.perf_counter() - began
