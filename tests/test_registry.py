"""The registry's record of a poll: an answer like the last one moves only the probe's timings."""

from __future__ import annotations

import dataclasses
import itertools

from lmwatch.config import parse_config
from lmwatch.failures import FailureReason
from lmwatch.registry import Event, Health, ModelInfo, ProbeResult, Registry

CONFIG = "backends: [{name: a, url: 'http://a:1234'}]"


def polled(models: tuple[ModelInfo, ...], duration: float = 0.01, **more: object) -> ProbeResult:
    return ProbeResult(flavour="lmstudio-v1", models=models, duration=duration, **more)  # type: ignore[arg-type]


def test_a_poll_with_the_last_answer_moves_only_its_timings_and_any_change_is_told() -> None:
    ticks = itertools.count(100.0)
    registry = Registry(clock=lambda: next(ticks))
    registry.configure_backends(parse_config(CONFIG, env={}).config.backends)
    events: list[Event] = []
    registry.subscribe(events.append)
    models = (ModelInfo(id="x"), ModelInfo(id="y", loaded=False))
    registry.record_success("a", polled(models))
    first = registry.snapshot()
    assert [e.kind for e in events] == ["backend_health", "model_loaded"]
    events.clear()

    registry.record_success("a", polled(models, duration=0.02))
    again = registry.snapshot()
    probed = again.backends["a"]
    before = first.backends["a"]
    assert probed.last_probe == probed.last_success > before.last_probe and probed.probe_duration == 0.02
    timings = {"last_probe": before.last_probe, "last_success": before.last_success, "probe_duration": 0.01}
    assert dataclasses.replace(probed, **timings) == before  # type: ignore[arg-type]
    assert again.generation > first.generation and again.routes is first.routes and events == []

    registry.record_success("a", polled((models[0], dataclasses.replace(models[1], loaded=True))))
    assert [(e.kind, e.detail) for e in events] == [("model_loaded", {"model": "y"})]
    assert registry.snapshot().routes is not again.routes
    registry.record_success("a", polled(models, version="0.4.1"))
    assert registry.snapshot().backends["a"].version == "0.4.1"
    registry.record_success("a", polled(models, warnings=("skipped an entry",)))
    assert registry.snapshot().backends["a"].health is Health.DEGRADED

    registry.record_failure("a", FailureReason.TIMEOUT, "timed out", 5.0)
    registry.record_success("a", polled(models, warnings=("skipped an entry",)))  # back, as before it failed
    back = registry.snapshot().backends["a"]
    assert (back.health, back.consecutive_failures, back.last_error_reason) == (Health.DEGRADED, 0, None)
