"""The circuit breaker of one (backend, model): closed, open, half-open.

Pure state and transitions; the clock and the policy are passed in, so the registry can hold the
breakers, the watcher and the router can both feed them, and tests need no sleeping. Only real
upstream failures count: a client that hangs up or times out on its own side never opens it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from lmwatch.config import BreakerConfig


class CircuitState(StrEnum):
    CLOSED = "closed"  # traffic flows; failures are counted
    OPEN = "open"  # no traffic until the cooldown ends
    HALF_OPEN = "half_open"  # one trial request decides


@dataclass
class Breaker:
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    """Consecutive failures while closed."""
    opened_at: float = 0.0
    cooldown: float = 0.0
    """Seconds the current opening lasts; doubles on each failed trial."""
    trial_in_flight: bool = False
    reason: str = ""
    """Why it last opened (a failure reason or `backend down`)."""

    def current(self, now: float) -> CircuitState:
        """The state as of `now`: an open breaker whose cooldown is over reads as half-open."""
        if self.state is CircuitState.OPEN and now >= self.opened_at + self.cooldown:
            return CircuitState.HALF_OPEN
        return self.state

    def retry_at(self) -> float | None:
        return self.opened_at + self.cooldown if self.state is CircuitState.OPEN else None

    def allow(self, now: float) -> bool:
        """May a request go through now? In half-open, only one trial at a time."""
        state = self.current(now)
        if state is CircuitState.CLOSED:
            return True
        if state is CircuitState.OPEN or self.trial_in_flight:
            return False
        self.state = CircuitState.HALF_OPEN
        self.trial_in_flight = True
        return True

    def success(self) -> None:
        self.state = CircuitState.CLOSED
        self.failures = 0
        self.cooldown = 0.0
        self.trial_in_flight = False
        self.reason = ""

    def failure(self, now: float, policy: BreakerConfig, reason: str) -> None:
        if self.state is CircuitState.CLOSED:
            self.failures += 1
            if self.failures >= policy.failures:
                self._open(now, policy.cooldown, reason)
        elif self.state is CircuitState.HALF_OPEN:
            self._open(now, min(max(self.cooldown, policy.cooldown) * 2, policy.max_cooldown), reason)
        else:  # already open: keep the later deadline, never shorten it
            self._open(now, policy.cooldown, reason, keep_later=True)

    def abandon(self) -> None:
        """A trial ended without a verdict (the client went away): let the next request try."""
        self.trial_in_flight = False

    def force_open(self, now: float, policy: BreakerConfig, reason: str) -> None:
        """The watcher saw the backend go down."""
        self._open(now, policy.cooldown, reason, keep_later=True)

    def force_half_open(self) -> None:
        """The watcher saw the backend come back: the next request is a trial."""
        if self.state is not CircuitState.CLOSED:
            self.state = CircuitState.HALF_OPEN
            self.trial_in_flight = False

    def _open(self, now: float, cooldown: float, reason: str, keep_later: bool = False) -> None:
        if keep_later and self.state is CircuitState.OPEN and self.opened_at + self.cooldown > now + cooldown:
            return
        self.state = CircuitState.OPEN
        self.opened_at = now
        self.cooldown = cooldown
        self.trial_in_flight = False
        self.reason = reason
