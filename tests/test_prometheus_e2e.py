"""End to end: a real Prometheus (Debian's package) scrapes a real lmwatch that watches a simulated LM
Studio in its own process, with the shipped scrape config and alert rules. The backend shows as up in
Prometheus; when the simulator is stopped, LMWatchBackendDown becomes pending.

The rule keeps its `for: 2m`: an alert is pending from the first evaluation where its expression
holds, which is what this test waits for (firing would take two minutes)."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
SCRAPE = REPO / "prometheus" / "scrape.yml"
ALERTS = REPO / "prometheus" / "alerts.yml"
LMWATCH = Path(sys.executable).parent / "lmwatch"

T = TypeVar("T")

pytestmark = pytest.mark.tools


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    """Poll `probe` until it returns something, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = probe()
        if result is not None:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@contextmanager
def process(cmd: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process that is stopped (then killed if it must be) whatever happens."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def query(prometheus: str, promql: str) -> list[dict[str, Any]]:
    status, body = get(f"{prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    if status != 200:
        return []
    result: list[dict[str, Any]] = json.loads(body)["data"]["result"]
    return result


def prometheus_config(lmwatch_port: int) -> dict[str, Any]:
    """The shipped scrape.yml, made fast (1 s scrapes and evaluations) and pointed at this lmwatch."""
    config = yaml.safe_load(SCRAPE.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS)]
    [job] = config["scrape_configs"]
    job.update(scrape_interval="1s", scrape_timeout="1s")
    job["static_configs"] = [{"targets": [f"127.0.0.1:{lmwatch_port}"]}]
    return dict(config)


@pytest.mark.timeout(180)
def test_prometheus_sees_the_backend_up_then_the_backend_down_alert_pending(tmp_path: Path) -> None:
    assert shutil.which("prometheus"), "Debian's prometheus package is needed (make tools)"
    sim_port, lmwatch_port, prom_port = free_port(), free_port(), free_port()
    config = tmp_path / "lmwatch.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {lmwatch_port}}}\n"
        f"backends: [{{name: sim-a, url: 'http://127.0.0.1:{sim_port}', poll_interval: 0.5}}]\n"
        "sampling: {gpu: 'off'}\n"
    )
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(lmwatch_port)))
    prometheus = f"http://127.0.0.1:{prom_port}"

    simulator = [sys.executable, "-m", "lmwatch", "simulate", "--port", str(sim_port)]
    with (
        process(simulator, tmp_path / "simulator.log") as sim,
        process([str(LMWATCH), "run", "--config", str(config)], tmp_path / "lmwatch.log"),
        process(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prom_port}",
            ],
            tmp_path / "prometheus.log",
        ),
    ):
        try:
            wait_for("lmwatch to be ready", lambda: get(f"http://127.0.0.1:{lmwatch_port}/readyz")[0] == 200 or None)
            wait_for("Prometheus to be ready", lambda: get(f"{prometheus}/-/ready")[0] == 200 or None)
            [up] = wait_for("Prometheus to see sim-a up", lambda: query(prometheus, "lmwatch_backend_up == 1") or None)
            assert up["metric"]["backend"] == "sim-a"
            assert up["metric"]["job"] == "lmwatch"

            sim.terminate()
            sim.wait(timeout=20)

            [alert] = wait_for(
                "LMWatchBackendDown to be pending",
                lambda: query(prometheus, 'ALERTS{alertname="LMWatchBackendDown", alertstate="pending"}') or None,
            )
            assert alert["metric"]["backend"] == "sim-a"
            assert alert["metric"]["severity"] == "critical"
            assert query(prometheus, 'ALERTS{alertname="LMWatchBackendDown", alertstate="firing"}') == []
        except BaseException:
            for name in ("simulator", "lmwatch", "prometheus"):
                print(f"--- {name}.log\n{(tmp_path / f'{name}.log').read_text(errors='replace')[-3000:]}")
            raise


DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target, Grafana's variables as match-all and its macros as durations."""
    from tests.test_dashboards import lint

    found = []
    for path in DASHBOARDS:
        for where, expr in lint.expressions(json.loads(path.read_text())):
            if where.startswith("panel "):
                found.append((f"{path.name} {where}", lint.with_sample_values(expr)))
    return found


@pytest.mark.timeout(180)
async def test_every_dashboard_panel_has_a_value_against_prometheus_scraping_the_demo(tmp_path: Path) -> None:
    """The demo (three simulated servers, simulated GPUs, the cache on) under a little traffic, scraped
    by a real Prometheus: every panel's expression answers something, never "No data" (a share of
    cloud requests with none is 0, not an empty result)."""
    import aiohttp

    from tests.demos import running_demo

    assert shutil.which("prometheus"), "Debian's prometheus package is needed (make tools)"
    prom_port = free_port()
    prometheus = f"http://127.0.0.1:{prom_port}"
    async with running_demo("--fake-gpus", "--poll-interval", "0.5") as demo:
        port = int(demo.url.rsplit(":", 1)[1])
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(prometheus_config(port)))
        command = [
            "prometheus",
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ]
        with process(command, tmp_path / "prometheus.log"):
            async with aiohttp.ClientSession() as http:
                chat = {"messages": [{"role": "user", "content": "Write a haiku about GPUs."}]}
                for body in (
                    {**chat, "model": "auto"},
                    {**chat, "model": "auto"},  # the same again: a cache hit
                    {**chat, "model": "auto", "stream": True},
                    {**chat, "model": "auto", "stream": True, "messages": [{"role": "user", "content": "Fix f(:"}]},
                ):
                    async with http.post(demo.url + "/v1/chat/completions", json=body) as resp:
                        assert resp.status == 200, await resp.text()
                        await resp.read()
                embed = {"model": "text-embedding-nomic-embed-text-v1.5", "input": ["a", "b"]}
                async with http.post(demo.url + "/v1/embeddings", json=embed) as resp:
                    assert resp.status == 200, await resp.text()
            expressions = dashboard_expressions()
            empty: list[str] = []

            def all_answer() -> bool | None:
                empty[:] = [f"{where}: {expr}" for where, expr in expressions if not query(prometheus, expr)]
                return True if not empty else None

            try:
                await asyncio.to_thread(wait_for, "every panel to have data", all_answer, 60)
            except AssertionError:
                raise AssertionError("panels without data:\n" + "\n".join(empty)) from None
