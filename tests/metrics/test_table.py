"""`/metrics` as written by `Metrics.render` (cached per-backend rows) is byte for byte what
prometheus-client writes from `collect()`, in both formats, as backends, requests and circuits
change and backends go."""

from __future__ import annotations

import re

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from lmwatch.config import BackendConfig
from lmwatch.failures import FailureReason
from lmwatch.metrics.table import Metrics
from lmwatch.metrics.text import SLICE
from lmwatch.registry import ModelInfo, ModelProfile, ModelType, ProbeResult, Registry, ThroughputPoint

MODELS = (
    ModelInfo(
        id="llm", instance_ids=("llm", "llm:2"), arch="llama", max_context_length=8192, loaded_context_length=4096
    ),
    ModelInfo(id='we"ird\\name', model_type=ModelType.VLM, loaded=False, parallel=4),
    ModelInfo(id="embed", model_type=ModelType.EMBEDDINGS, instance_ids=("embed",), quantization="Q8_0"),
)
DURATION = re.compile(rb"(lmwatch_scrape_collector_duration_seconds\{[^}]*\}) \S+")


def fleet(clock: list[float]) -> Registry:
    registry = Registry(clock=lambda: clock[0])
    registry.configure_backends([BackendConfig(name=f"b{i}", url=f"http://127.0.0.1:{9000 + i}") for i in range(4)])
    for name in ("b0", "b1", "b2"):
        registry.record_success(name, ProbeResult("lmstudio-v1", MODELS, 0.004, version="0.4.1"))
    registry.record_failure("b2", FailureReason.TIMEOUT, "timed out", 2.0)
    registry.record_profiles(
        [
            ModelProfile(
                "b0", "llm", ModelType.LLM, 1.0, ttft_short_seconds=0.1, throughput=(ThroughputPoint(2, 40.0, 20.0),)
            )
        ]
    )
    registry.mark_first_round_done()
    return registry


def assert_same(metrics: Metrics) -> None:
    for fast, slow in (
        (metrics.render(False), generate_latest(metrics)),
        (metrics.render(True), generate_openmetrics(metrics)),
    ):
        assert DURATION.sub(rb"\1 D", fast).decode() == DURATION.sub(rb"\1 D", slow).decode()


def test_render_matches_prometheus_client_as_the_fleet_changes() -> None:
    clock = [1000.0]
    registry = fleet(clock)
    metrics = Metrics(registry)
    assert_same(metrics)
    assert b'lmwatch_model_loaded{backend="b0",model="we\\"ird\\\\name",model_type="vlm"} 0.0' in metrics.render(False)
    outcomes = registry.outcomes
    outcomes.started("b0")
    outcomes.started("cloud:openai")
    outcomes.queue_changed("b1", 2)
    outcomes.breaker_failure("b0", "llm", "timeout")
    assert_same(metrics)
    outcomes.finished("b0")
    assert_same(metrics)
    clock[0] += 1
    registry.record_success("b0", ProbeResult("lmstudio-v1", MODELS[:1], 0.007, version="0.4.2"))  # models, timings
    registry.record_success("b2", ProbeResult("lmstudio-v1", MODELS, 0.002))  # back up
    registry.record_failure("b1", FailureReason.CONNECT, "refused", 0.001)  # down: its models go
    registry.set_draining("b3", True)
    assert_same(metrics)
    registry.configure_backends([BackendConfig(name="b0", url="http://127.0.0.1:9000")])
    assert_same(metrics)
    assert b'backend="b1"' not in metrics.render(False)


def test_a_large_fleet_renders_in_slices_and_two_scrapes_at_once_agree() -> None:
    """Past `SLICE` backends the big collectors pause between slices (where the handler lets the
    loop run); two scrapes interleaved at those pauses give the same body as one alone."""
    clock = [1000.0]
    registry = Registry(clock=lambda: clock[0])
    names = [f"b{i}" for i in range(3 * SLICE + 1)]
    configs = [BackendConfig(name=n, url=f"http://127.0.0.1:{9000 + i}") for i, n in enumerate(names)]
    registry.configure_backends(configs)
    for name in names:
        registry.record_success(name, ProbeResult("lmstudio-v1", MODELS, 0.004, version="0.4.1"))
    metrics = Metrics(registry)
    assert_same(metrics)
    alone = DURATION.sub(rb"\1 D", metrics.render(False))
    for name in names[::2]:  # a round of polls: the probe timings of half the fleet change
        registry.record_success(name, ProbeResult("lmstudio-v1", MODELS, 0.005, version="0.4.1"))
    pieces = list(metrics.chunks(False))
    assert pieces.count("") > 3 * 3  # every part of every big collector paused more than three times
    first, second = metrics.chunks(False), metrics.chunks(False)
    bodies: tuple[list[str], list[str]] = ([], [])
    for a, b in zip(first, second, strict=True):
        bodies[0].append(a)
        bodies[1].append(b)
    one, two = (DURATION.sub(rb"\1 D", "".join(body).encode()) for body in bodies)
    assert one == two == DURATION.sub(rb"\1 D", "".join(pieces).encode()) != alone
    assert_same(metrics)
