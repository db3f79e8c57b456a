"""What every request's exchange shares (app-scoped): the connection pool, the concurrency gate,
the balancer's randomness, the request outcomes, and the demand placement of unloaded models."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

from lmwatch.http_client import Pool
from lmwatch.registry import RequestOutcomes
from lmwatch.routing.balance import Gate
from lmwatch.routing.select import Target

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

    def close(self) -> None:
        self.pool.close()
