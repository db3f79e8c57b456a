"""What every request's exchange shares (app-scoped): the connection pool, the concurrency gate,
the balancer's randomness, the request outcomes, and the demand placement of unloaded models."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from lmwatch.api.attempts import Failure
from lmwatch.failures import FailureReason
from lmwatch.http_client import Pool
from lmwatch.outcomes import RequestOutcomes
from lmwatch.routing.balance import Gate
from lmwatch.routing.select import Target

log = logging.getLogger("lmwatch.proxy")

Release = Callable[[], Awaitable[None]]
SUBSTITUTIONS_LOGGED = 1024
"""Distinct (backend, model) substitutions logged; past it they are still failed over, silently."""


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
        return Failure(FailureReason.MODEL_UNAVAILABLE, message)
