"""Counters the simulator keeps about itself, served at `GET /__sim/stats` (not an LM Studio route).

They let tests and benchmarks see what the server experienced (concurrency, queueing, cancelled
generations) instead of guessing from the client side. Plain integer fields: cheap on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_PATHS = 256
"""Distinct paths counted one by one; any further ones (scanners, typos) share `(other)`."""


@dataclass
class SimStats:
    requests_total: dict[str, int] = field(default_factory=dict)
    """Every HTTP request, by path."""
    inflight: int = 0
    """Inference requests being handled now: waiting for a model load or a slot, or generating."""
    max_inflight_seen: int = 0
    queued: int = 0
    """Inference requests waiting for a parallel slot now (a subset of `inflight`)."""
    max_queued_seen: int = 0
    queued_total: int = 0
    """Inference requests that had to wait for a slot, ever."""
    cancelled_total: int = 0
    """Client disconnected before the answer was complete; generation was stopped."""
    completed_total: int = 0
    """Inference requests answered successfully (to the end, `[DONE]` for streams)."""
    errors_total: int = 0
    """Inference requests answered with an error status (bad model, bad body, injected...)."""
    errors_injected_total: int = 0
    """Faults injected by `error_rate`, `stall_rate` and `drop_rate`."""
    loads_total: int = 0
    jit_loads_total: int = 0
    unloads_total: int = 0
    evictions_total: int = 0
    """Unloads done by auto-evict before a JIT load (also counted in `unloads_total`)."""
    load_failures_total: int = 0
    """Loads refused for want of memory (`settings.memory_bytes`)."""
    tokens_generated_total: int = 0
    embedded_inputs_total: int = 0
    """Texts (or token lists) embedded, ever: one per item of an embeddings `input`."""

    def count_request(self, path: str) -> None:
        counts = self.requests_total
        if path in counts:
            counts[path] += 1
        elif len(counts) < MAX_PATHS:
            counts[path] = 1
        else:
            counts["(other)"] = counts.get("(other)", 0) + 1

    def enter(self) -> None:
        self.inflight += 1
        if self.inflight > self.max_inflight_seen:
            self.max_inflight_seen = self.inflight

    def enqueue(self) -> None:
        self.queued += 1
        self.queued_total += 1
        if self.queued > self.max_queued_seen:
            self.max_queued_seen = self.queued

    def complete(self, tokens: int = 0) -> None:
        """One inference request answered to the end, having generated `tokens`."""
        self.completed_total += 1
        self.tokens_generated_total += tokens

    def reset(self) -> None:
        """Zero the counters; gauges (`inflight`, `queued`) keep their live values."""
        fresh = SimStats(inflight=self.inflight, queued=self.queued)
        fresh.max_inflight_seen = self.inflight
        fresh.max_queued_seen = self.queued
        self.__dict__.update(fresh.__dict__)

    def as_json(self) -> dict[str, object]:
        data = dict(self.__dict__)
        data["requests_total"] = dict(self.requests_total)
        return data
