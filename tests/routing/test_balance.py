"""Balancing order, the concurrency gate (cap, FIFO, bounded wait) and the circuit breaker."""

from __future__ import annotations

import asyncio
import random
import statistics
from collections.abc import Iterable

import pytest

from lmwatch.breaker import Breaker, CircuitState
from lmwatch.config import BreakerConfig, parse_config
from lmwatch.failures import FailureReason
from lmwatch.outcomes import RequestOutcomes
from lmwatch.registry import ModelInfo, ModelProfile, ModelType, ProbeResult, Registry
from lmwatch.routing.balance import Gate, expected_seconds, order
from lmwatch.routing.select import Target


def target(backend: str, cap: int | None = 4, weight: float = 1.0) -> Target:
    return Target(backend=backend, model="m", url=f"http://{backend}/v1", cap=cap, weight=weight)


@pytest.fixture
def outcomes() -> RequestOutcomes:
    return Registry().outcomes


def busy(outcomes: RequestOutcomes, **inflight: int) -> None:
    """Set backends' in-flight counts through the outcomes' own methods (its mappings are read-only)."""
    for backend, count in inflight.items():
        while outcomes.inflight.get(backend, 0) < count:
            outcomes.started(backend)
        while outcomes.inflight.get(backend, 0) > count:
            outcomes.finished(backend)


def names(targets: Iterable[Target]) -> list[str]:
    return [t.backend for t in targets]


def test_least_outstanding_first(outcomes: RequestOutcomes) -> None:
    busy(outcomes, a=3, b=1, c=2)
    assert names(order([target("a"), target("b"), target("c")], outcomes, random.Random(1))) == ["b", "c", "a"]


def test_free_slot_beats_a_queue(outcomes: RequestOutcomes) -> None:
    busy(outcomes, a=2, b=1)
    outcomes.queue_changed("b", 1)  # b has people waiting: a newcomer would wait too
    assert names(order([target("b", cap=8), target("a", cap=8)], outcomes, random.Random(1))) == ["a", "b"]
    outcomes.queue_changed("b", -1)
    busy(outcomes, a=2, b=3)  # a is at its cap: b is busier but can start now
    assert names(order([target("a", cap=2), target("b", cap=8)], outcomes, random.Random(1))) == ["b", "a"]


def test_measured_speed_weighs_outstanding_work(outcomes: RequestOutcomes) -> None:
    outcomes.record_speed("fast", "m", ttft=0.1, tokens_per_second=100)  # ~2.1 s per answer
    outcomes.record_speed("slow", "m", ttft=1.0, tokens_per_second=10)  # ~21 s per answer
    busy(outcomes, fast=3, slow=0)
    assert names(order([target("slow"), target("fast")], outcomes, random.Random(1))) == ["fast", "slow"]
    busy(outcomes, fast=12)
    assert names(order([target("slow"), target("fast")], outcomes, random.Random(1))) == ["slow", "fast"]


def test_a_measured_profile_is_the_prior_until_live_averages_exist() -> None:
    registry = Registry()
    outcomes = registry.outcomes
    registry.record_profiles(
        [
            ModelProfile("fast", "m", ModelType.LLM, 1.0, ttft_short_seconds=0.1, generation_tokens_per_second=100),
            ModelProfile("slow", "m", ModelType.LLM, 1.0, ttft_short_seconds=1.0, generation_tokens_per_second=10),
        ]
    )
    busy(outcomes, fast=3, slow=0)  # 4 x 2.1 s beats 1 x 21 s
    assert names(order([target("slow"), target("fast")], outcomes, random.Random(1))) == ["fast", "slow"]
    outcomes.record_speed("slow", "m", ttft=0.05, tokens_per_second=1000)  # live numbers win over the profile
    assert names(order([target("fast"), target("slow")], outcomes, random.Random(1))) == ["slow", "fast"]


def test_unmeasured_targets_are_tried_and_weight_counts(outcomes: RequestOutcomes) -> None:
    outcomes.record_speed("known", "m", ttft=0.5, tokens_per_second=None)
    busy(outcomes, known=1)
    assert names(order([target("known"), target("new")], outcomes, random.Random(1))) == ["new", "known"]
    busy(outcomes, heavy=1, light=0)
    assert names(order([target("light"), target("heavy", weight=4)], outcomes, random.Random(1))) == ["heavy", "light"]


def test_ties_are_shared_at_random(outcomes: RequestOutcomes) -> None:
    rng = random.Random(7)
    firsts = {next(order([target("a"), target("b")], outcomes, rng)).backend for _ in range(50)}
    assert firsts == {"a", "b"}


def test_the_lazy_order_is_the_full_sort_of_every_target() -> None:
    """300 targets, busy, queued, capped, weighted, measured or not: taking them one by one gives the
    order (and the random draws) of sorting them all by (full, cost, random)."""
    registry = Registry()
    outcomes, fleet = registry.outcomes, random.Random(3)
    targets = [target(f"b{i}", cap=fleet.choice([None, 1, 2, 4]), weight=fleet.choice([1.0, 2.0])) for i in range(300)]
    for t in targets:
        busy(outcomes, **{t.backend: fleet.randrange(4)})
        if fleet.random() < 0.2:
            outcomes.queue_changed(t.backend, +1)
        if fleet.random() < 0.7:
            outcomes.record_speed(t.backend, t.model, fleet.choice([0.1, 0.2, 0.3]), fleet.choice([50.0, 100.0]))

    def sort_all(rng: random.Random) -> list[str]:
        estimates = {t: expected_seconds(outcomes, t) for t in targets}
        fallback = statistics.median([e for e in estimates.values() if e is not None])

        def key(t: Target) -> tuple[bool, float, float]:
            work = outcomes.inflight.get(t.backend, 0) + outcomes.queued.get(t.backend, 0)
            full = t.cap is not None and (
                outcomes.inflight.get(t.backend, 0) >= t.cap or outcomes.queued.get(t.backend, 0) > 0
            )
            return (full, (work + 1) * (estimates[t] or fallback) / t.weight, rng.random())

        return names(sorted(targets, key=key))

    for seed in range(5):
        lazy, full = random.Random(seed), random.Random(seed)
        assert names(order(targets, outcomes, lazy)) == sort_all(full)
        assert lazy.random() == full.random()  # the same draws: what comes after is unchanged too


async def test_gate_holds_the_cap_and_serves_in_order(outcomes: RequestOutcomes) -> None:
    gate = Gate(outcomes)
    assert gate.try_acquire("a", 1)
    served: list[int] = []

    async def waiter(i: int) -> None:
        assert await gate.acquire("a", 1, timeout=5, max_queue=10)
        served.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert outcomes.queued["a"] == 3 and outcomes.inflight["a"] == 1
    assert not gate.try_acquire("a", 1)  # a newcomer never jumps the queue
    for expected in range(3):
        gate.release("a")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert served == list(range(expected + 1))
        assert outcomes.inflight["a"] == 1
    await asyncio.gather(*tasks)
    gate.release("a")
    assert (outcomes.inflight["a"], outcomes.queued["a"]) == (0, 0)


async def test_gate_wait_is_bounded_and_queue_is_capped(outcomes: RequestOutcomes) -> None:
    gate = Gate(outcomes)
    assert gate.try_acquire("a", 1)
    assert not await gate.acquire("a", 1, timeout=0.01, max_queue=10)
    assert not await gate.acquire("a", 1, timeout=5, max_queue=0)
    assert outcomes.queued["a"] == 0


async def test_cancelled_waiter_leaves_the_line_and_a_late_grant_is_passed_on(outcomes: RequestOutcomes) -> None:
    gate = Gate(outcomes)
    assert gate.try_acquire("a", 1)
    first = asyncio.create_task(gate.acquire("a", 1, timeout=5, max_queue=10))
    second = asyncio.create_task(gate.acquire("a", 1, timeout=5, max_queue=10))
    await asyncio.sleep(0)
    gate.release("a")  # granted to `first`...
    first.cancel()  # ...which is cancelled before it runs: the slot must reach `second`
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second
    assert outcomes.inflight["a"] == 1 and outcomes.queued["a"] == 0


async def test_a_grown_cap_admits_waiters(outcomes: RequestOutcomes) -> None:
    gate = Gate(outcomes)
    assert gate.try_acquire("a", 1)
    waiting = asyncio.create_task(gate.acquire("a", 1, timeout=5, max_queue=10))
    await asyncio.sleep(0)
    assert await gate.acquire("a", 3, timeout=5, max_queue=10)  # the config now allows 3
    assert await waiting
    assert outcomes.inflight["a"] == 3


# --- the breaker ---------------------------------------------------------------------------------

POLICY = BreakerConfig(failures=3, cooldown=10, max_cooldown=40)


def test_breaker_opens_after_consecutive_failures_and_half_opens_after_cooldown() -> None:
    breaker = Breaker()
    breaker.failure(0, POLICY, "timeout")
    breaker.success()  # a success resets the count
    for t in range(3):
        assert breaker.allow(t)
        breaker.failure(t, POLICY, "timeout")
    assert breaker.current(3) is CircuitState.OPEN and not breaker.allow(5)
    assert breaker.current(12) is CircuitState.HALF_OPEN
    assert breaker.allow(12)  # one trial...
    assert not breaker.allow(12)  # ...at a time
    breaker.success()
    assert breaker.current(12) is CircuitState.CLOSED


def test_failed_trial_doubles_the_cooldown_up_to_the_cap() -> None:
    breaker = Breaker()
    for _ in range(3):
        breaker.failure(0, POLICY, "http_5xx")
    for expected in (20, 40, 40):
        now = breaker.opened_at + breaker.cooldown
        assert breaker.allow(now)
        breaker.failure(now, POLICY, "http_5xx")
        assert breaker.cooldown == expected


def test_abandoned_trial_lets_the_next_request_try() -> None:
    breaker = Breaker()
    for _ in range(3):
        breaker.failure(0, POLICY, "timeout")
    assert breaker.allow(10)
    breaker.abandon()
    assert breaker.allow(10)


def test_reopening_never_shortens_the_deadline() -> None:
    breaker = Breaker(state=CircuitState.OPEN, opened_at=0, cooldown=40)
    breaker.force_open(5, POLICY, "backend down")
    assert breaker.retry_at() == 40


def test_watcher_health_events_feed_the_breakers() -> None:
    clock = [1000.0]
    registry = Registry(clock=lambda: clock[0])
    registry.configure_backends(parse_config("backends: [{name: a, url: 'http://a:1'}]", env={}).config.backends)
    registry.record_success("a", ProbeResult("lmstudio-v1", (ModelInfo("m", instance_ids=("m",)),), 0.01))
    outcomes = registry.outcomes
    assert registry.outcomes is outcomes
    registry.record_failure("a", FailureReason.CONNECT, "refused", 0.01)
    [view] = outcomes.view().breakers
    assert (view.backend, view.model, view.state, view.reason) == ("a", "m", CircuitState.OPEN, "backend down")
    assert not outcomes.breaker_allows("a", "m")
    registry.record_success("a", ProbeResult("lmstudio-v1", (ModelInfo("m", instance_ids=("m",)),), 0.01))
    assert outcomes.view().breakers[0].state is CircuitState.HALF_OPEN
    assert outcomes.breaker_allows("a", "m")
    outcomes.breaker_success("a", "m")
    assert outcomes.view().breakers[0].state is CircuitState.CLOSED
    registry.configure_backends([])
    assert outcomes.view().breakers == ()
