"""`/metrics` on a real daemon: Prometheus text and OpenMetrics, promtool-clean, never a 500."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import aiohttp
import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.metrics.table import COLLECTORS, Metrics, Sources
from lmwatch.metrics.text import Format
from lmwatch.registry import Registry
from lmwatch.simulator import SimSettings, start_simulator

REQUIRED = {
    "lmwatch_backend_up",
    "lmwatch_backend_state",
    "lmwatch_backend_probe_duration_seconds",
    "lmwatch_backend_probe_failures",
    "lmwatch_backend_last_success_timestamp_seconds",
    "lmwatch_models",
    "lmwatch_model_loaded",
    "lmwatch_model_info",
    "lmwatch_model_context_length_tokens",
    "lmwatch_build_info",
}


def promtool_check(text: str) -> subprocess.CompletedProcess[str]:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: `make tools` installs Debian's prometheus package")
    return subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)


@pytest.mark.tools
async def test_scrape_has_required_series_and_passes_promtool() -> None:
    sim = await start_simulator(SimSettings(), port=0)
    try:
        text = (
            f'server: {{port: 0}}\nbackends: [{{name: a, url: "{sim.url}"}}, {{name: gone, url: "http://127.0.0.1:9"}}]'
        )
        async with running_daemon(parse_config(text, env={})) as daemon, aiohttp.ClientSession() as http:
            async with http.get(f"{daemon.url}/metrics") as resp:
                assert resp.status == 200
                assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
                body = await resp.text()
            async with http.get(
                f"{daemon.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
            ) as resp:
                assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
                assert (await resp.text()).rstrip().endswith("# EOF")
    finally:
        await sim.stop()
    names = {family.name for family in text_string_to_metric_families(body)}
    assert names >= REQUIRED, REQUIRED - names
    assert not [n for n in names if not n.startswith("lmwatch_")]
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            assert not {"instance", "job", "type"} & set(sample.labels), sample
    result = promtool_check(body)
    assert result.returncode == 0 and result.stdout == result.stderr == "", result.stdout + result.stderr


class Broken(Collector):
    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        raise RuntimeError("boom")


class BrokenMidway(Collector):
    """A collector that renders in pieces and fails after the first."""

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> list[Metric]:
        raise RuntimeError("boom")

    def chunks(self, fmt: Format) -> Iterator[str]:
        yield "lmwatch_half_written 1.0\n"
        raise RuntimeError("boom")


def test_a_failing_collector_costs_only_its_families(caplog: pytest.LogCaptureFixture) -> None:
    def broken(sources: Sources) -> Collector:
        return Broken()

    def midway(sources: Sources) -> Collector:
        return BrokenMidway()

    metrics = Metrics(Registry(), collectors={**COLLECTORS, "broken": broken, "midway": midway})
    for openmetrics in (False, True):
        body = metrics.render(openmetrics).decode()
        assert "lmwatch_half_written" not in body
        families = {f.name: f for f in text_string_to_metric_families(body)}
        assert "lmwatch_backend_up" in families
        success = {s.labels["collector"]: s.value for s in families["lmwatch_scrape_collector_success"].samples}
        assert success == {**dict.fromkeys(COLLECTORS, 1.0), "control": 1.0, "broken": 0.0, "midway": 0.0}
    for name in ("broken", "midway"):
        assert len([r for r in caplog.records if f"collector {name} " in r.getMessage()]) == 1


async def test_health_and_readiness_endpoints() -> None:
    async with running_daemon(parse_config("server: {port: 0}", env={})) as daemon, aiohttp.ClientSession() as http:
        async with http.get(f"{daemon.url}/healthz") as resp:
            assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
        async with http.get(f"{daemon.url}/readyz") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ready"
