"""Breaker feedback: what an attempt's result tells the circuit breaker of its backend and model.
A failure that is the backend's fault counts; a cancelled attempt, a client that left, or a refusal
that never reached the backend (breaker open, queue full, placement) gives no verdict."""

from __future__ import annotations

from collections.abc import Callable

from lmwatch.api.attempts import Answer, Failure, Result, Streamed, Verdict
from lmwatch.failures import FailureReason
from lmwatch.metrics.requests import RequestMetrics
from lmwatch.outcomes import RequestOutcomes
from lmwatch.routing.select import Target

SUCCESS, FAILURE, NO_VERDICT = "success", "failure", "no_verdict"
"""The `outcome` of an attempt in `lmwatch_backend_attempts_total`, as the breaker sees it."""


def judge(
    outcomes: RequestOutcomes,
    metrics: RequestMetrics,
    target: Target,
    result: Result | None,
    poll_now: Callable[[str | None], None],
) -> None:
    """Feed the breaker and count the attempt (`lmwatch_backend_attempts_total`, so a backend that
    fails behind a successful failover still shows); a model the backend no longer has asks the
    watcher to poll it now."""
    outcome = NO_VERDICT
    if isinstance(result, Failure):
        if result.breaker:
            outcomes.breaker_failure(target.backend, target.model, result.reason)
            outcome = FAILURE
        else:
            outcomes.breaker_abandon(target.backend, target.model)
        if result.reason is FailureReason.MODEL_UNAVAILABLE and not target.is_cloud:
            poll_now(target.backend)
        if not result.attempted:
            return  # never sent (this host is out of descriptors): not an attempt
    else:
        verdict = (
            Verdict.SUCCESS if isinstance(result, Answer) else result.verdict if isinstance(result, Streamed) else None
        )
        if verdict is Verdict.SUCCESS:
            outcomes.breaker_success(target.backend, target.model)
            outcome = SUCCESS
        elif verdict is Verdict.UPSTREAM_FAILED:
            outcomes.breaker_failure(target.backend, target.model, FailureReason.STREAM_CUT)
            outcome = FAILURE
        else:
            outcomes.breaker_abandon(target.backend, target.model)
    metrics.attempts.inc((target.backend, target.model, outcome))
