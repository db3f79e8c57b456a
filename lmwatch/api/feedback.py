"""Breaker feedback: what an attempt's result tells the circuit breaker of its backend and model.
A failure that is the backend's fault counts; a cancelled attempt, a client that left, or a refusal
that never reached the backend (breaker open, queue full, placement) gives no verdict."""

from __future__ import annotations

from collections.abc import Callable

from lmwatch.api.attempts import Answer, Failure, Result, Streamed, Verdict
from lmwatch.registry import RequestOutcomes
from lmwatch.routing.select import Target


def judge(
    outcomes: RequestOutcomes, target: Target, result: Result | None, poll_now: Callable[[str | None], None]
) -> None:
    """Feed the breaker; a model the backend no longer has asks the watcher to poll it now."""
    if isinstance(result, Failure):
        if result.breaker:
            outcomes.breaker_failure(target.backend, target.model, result.reason)
        else:
            outcomes.breaker_abandon(target.backend, target.model)
        if result.reason == "model_unavailable" and not target.is_cloud:
            poll_now(target.backend)
        return
    verdict = (
        Verdict.SUCCESS if isinstance(result, Answer) else result.verdict if isinstance(result, Streamed) else None
    )
    if verdict is Verdict.SUCCESS:
        outcomes.breaker_success(target.backend, target.model)
    elif verdict is Verdict.UPSTREAM_FAILED:
        outcomes.breaker_failure(target.backend, target.model, "stream_cut")
    else:
        outcomes.breaker_abandon(target.backend, target.model)
