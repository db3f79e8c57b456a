"""The Grafana dashboards: the shipped files pass dashboards/lint.py (each of whose rules can fail),
every PromQL expression parses, they show what the issue asks for, and every metric a dashboard or
an alert uses is one that a running lmwatch exports."""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp
import pytest
import yaml

from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
DASHBOARDS = sorted((REPO / "dashboards").glob("*.json"))
FLEET = REPO / "dashboards" / "lmwatch-fleet.json"
BACKEND = REPO / "dashboards" / "lmwatch-backend.json"
LINT = REPO / "dashboards" / "lint.py"
ALERTS = REPO / "prometheus" / "alerts.yml"
LMWATCH = Path(sys.executable).parent / "lmwatch"

tools = pytest.mark.tools


def load_lint() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboard_lint", LINT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


lint = load_lint()


def run_lint(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(LINT), *map(str, args)], capture_output=True, text=True, check=False)


def test_shipped_dashboards_pass_the_lint() -> None:
    assert [p.name for p in DASHBOARDS] == ["lmwatch-backend.json", "lmwatch-fleet.json"]
    done = run_lint(*DASHBOARDS)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


@tools
def test_every_promql_expression_parses() -> None:
    """Panel targets and variable queries, macros replaced, through `promtool check rules`."""
    done = run_lint("--promtool", *DASHBOARDS)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert sum(len(list(lint.expressions(json.loads(p.read_text())))) for p in DASHBOARDS) > 40


# --- each lint rule can fail -------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def first_panel(d: dict[str, Any]) -> dict[str, Any]:
    return next(p for p in d["panels"] if p["type"] != "row")


def variable(d: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in d["templating"]["list"] if v["name"] == name)


def set_expr(expr: str) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        first_panel(d)["targets"][0]["expr"] = expr

    return mutate


S = 'job=~"$job", instance=~"$instance"'

MUTATIONS: dict[str, tuple[Mutation, str]] = {
    "uid too long": (lambda d: d.update(uid="x" * 41), "uid must be a fixed string"),
    "no uid": (lambda d: d.pop("uid"), "uid must be a fixed string"),
    "fixed id": (lambda d: d.update(id=7), "id must be null"),
    "no title": (lambda d: d.pop("title"), ": title is missing"),
    "schemaVersion a string": (lambda d: d.update(schemaVersion="39"), "schemaVersion must be an integer"),
    "no tags": (lambda d: d.update(tags=[]), "tags must be a non-empty list"),
    "no refresh": (lambda d: d.update(refresh=""), "refresh must be set"),
    "no time": (lambda d: d.pop("time"), "time must have from and to"),
    "__inputs": (lambda d: d.update(__inputs=[{"name": "DS_PROMETHEUS"}]), "__inputs"),
    "${DS_...}": (lambda d: first_panel(d).update(datasource={"uid": "${DS_PROMETHEUS}"}), "__inputs"),
    "datasource variable label": (
        lambda d: variable(d, "datasource").update(label="Prometheus"),
        'needs exactly one datasource variable, named "datasource"',
    ),
    "no $gpu variable": (
        lambda d: d["templating"]["list"].remove(variable(d, "gpu")),
        "query variable $gpu is missing",
    ),
    "variable with a fixed datasource": (
        lambda d: variable(d, "backend").update(datasource={"type": "prometheus", "uid": "prom-1"}),
        "variable $backend: datasource must be",
    ),
    "variable not refreshed on time change": (
        lambda d: variable(d, "model").update(refresh=1),
        "variable $model: refresh must be 2",
    ),
    "variable query not label_values": (
        lambda d: variable(d, "backend").update(query="backend_a,backend_b"),
        "variable $backend: query must be label_values",
    ),
    "unused variable": (
        lambda d: d["templating"]["list"].append({**variable(d, "gpu"), "name": "spare"}),
        "variable $spare is defined but never used",
    ),
    "undefined variable": (
        set_expr(f'sum(lmwatch_backend_up{{{S}, backend=~"$nope"}})'),
        "variable $nope is used but not defined",
    ),
    "no unit": (lambda d: first_panel(d)["fieldConfig"]["defaults"].pop("unit"), "fieldConfig.defaults.unit"),
    "no description": (lambda d: first_panel(d).pop("description"), "description is missing"),
    "panel with a fixed datasource": (
        lambda d: first_panel(d).update(datasource={"type": "prometheus", "uid": "prom-1"}),
        "datasource must be",
    ),
    "target with a fixed datasource": (
        lambda d: first_panel(d)["targets"][0].update(datasource={"type": "prometheus", "uid": "prom-1"}),
        "target A: datasource must be",
    ),
    "fixed range": (
        set_expr(f"sum(rate(lmwatch_requests_total{{{S}}}[5m]))"),
        "range selector [5m] must be [$__rate_interval]",
    ),
    "no instance filter": (
        set_expr('sum(lmwatch_backend_up{job=~"$job"})'),
        "lmwatch_backend_up must be filtered by job",
    ),
    "empty expr": (set_expr(" "), "expr is empty"),
    "no targets": (lambda d: first_panel(d).update(targets=[]), "has no targets"),
    "overlapping panels": (
        lambda d: first_panel(d).update(gridPos={**first_panel(d)["gridPos"], "x": 2}),
        "overlaps",
    ),
    "outside the grid": (
        lambda d: first_panel(d).update(gridPos={"x": 20, "y": 50, "w": 12, "h": 4}),
        "does not fit the 24-column grid",
    ),
    "duplicate panel id": (
        lambda d: first_panel(d).update(id=d["panels"][0]["id"]),
        "panel id must be a unique integer",
    ),
}


@pytest.mark.parametrize("case", MUTATIONS, ids=list(MUTATIONS))
def test_each_rule_catches_its_mistake(tmp_path: Path, case: str) -> None:
    mutate, message = MUTATIONS[case]
    dashboard = copy.deepcopy(json.loads(FLEET.read_text()))
    mutate(dashboard)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dashboard))
    done = run_lint(broken)
    assert done.returncode == 1
    assert message in done.stdout, done.stdout
    assert all(line.startswith(f"{broken}: ") for line in done.stdout.splitlines())


def test_unreadable_json_and_a_shared_uid_are_reported(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "copy.json").write_text(FLEET.read_text())
    done = run_lint(tmp_path / "bad.json", FLEET, tmp_path / "copy.json")
    assert done.returncode == 1
    assert f"{tmp_path / 'bad.json'}: cannot read the dashboard" in done.stdout
    assert f"{tmp_path / 'copy.json'}: uid 'lmwatch-fleet' is also used by {FLEET}" in done.stdout


@tools
def test_promql_that_does_not_parse_is_reported(tmp_path: Path) -> None:
    dashboard = json.loads(FLEET.read_text())
    set_expr(f"sum(rate(lmwatch_requests_total{{{S}}}[$__rate_interval])")(dashboard)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(dashboard))
    done = run_lint("--promtool", broken)
    assert done.returncode == 1
    panel = first_panel(dashboard)
    assert f"panel {panel['id']} {panel['title']!r} target A: PromQL does not parse" in done.stdout
    assert "unclosed left parenthesis" in done.stdout


# --- what the dashboards show ------------------------------------------------------------------


def used_metrics(path: Path) -> set[str]:
    return {name for _, expr in lint.expressions(json.loads(path.read_text())) for name in lint.metric_names(expr)}


def all_expressions(path: Path) -> str:
    return "\n".join(expr for _, expr in lint.expressions(json.loads(path.read_text())))


def test_fleet_overview_shows_what_the_issue_asks() -> None:
    """Backends up, models loaded, request rate by route, TTFT p50/p95, tokens/s, fallbacks and cloud
    share, cost avoided."""
    assert used_metrics(FLEET) >= {
        "lmwatch_backend_up",
        "lmwatch_model_loaded",
        "lmwatch_requests_total",
        "lmwatch_time_to_first_token_seconds_bucket",
        "lmwatch_tokens_total",
        "lmwatch_fallbacks_total",
        "lmwatch_cloud_cost_avoided_dollars_total",
    }
    exprs = all_expressions(FLEET)
    assert "sum by (route)" in exprs and 'route="cloud"' in exprs
    assert "histogram_quantile(0.5," in exprs and "histogram_quantile(0.95," in exprs


def test_fleet_overview_shows_every_cache_family() -> None:
    """Lookups, hit ratio, size, availability, store errors, semantic-cache embedding failures,
    writes and evictions: what an operator asks when the cache misbehaves."""
    from lmwatch.metrics import cache
    from lmwatch.metrics.family import Family

    families = [f for f in vars(cache).values() if isinstance(f, Family)]
    assert len(families) == 7
    assert {f.sample_name for f in families} <= used_metrics(FLEET)


def panel_expr(path: Path, title: str) -> str:
    [panel] = [p for p in lint.panels(json.loads(path.read_text())) if p.get("title") == title]
    return str(lint.with_sample_values(panel["targets"][0]["expr"]))


@tools
def test_the_error_ratio_panel_shows_a_backend_failing_behind_failover(tmp_path: Path) -> None:
    """promtool evaluates the panel's expression: studio fails 40 % of its attempts while every
    request succeeds (failover); llamacpp, with no failed attempt at all, is 0, not missing."""
    labels = 'job="lmwatch", instance="gpu-box:9234"'
    series = [
        (f'lmwatch_backend_attempts_total{{{labels}, backend="studio", model="qwen", outcome="success"}}', "0+36x20"),
        (f'lmwatch_backend_attempts_total{{{labels}, backend="studio", model="qwen", outcome="failure"}}', "0+24x20"),
        (f'lmwatch_backend_attempts_total{{{labels}, backend="llamacpp", model="qwen", outcome="success"}}', "0+60x20"),
        (f'lmwatch_requests_total{{{labels}, backend="llamacpp", model="qwen", code="200"}}', "0+60x20"),
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "promql_expr_test": [
                    {
                        "expr": panel_expr(FLEET, "Error ratio by backend"),
                        "eval_time": "15m",
                        "exp_samples": [
                            {"labels": '{backend="studio"}', "value": 0.4},
                            {"labels": '{backend="llamacpp"}', "value": 0},
                        ],
                    }
                ],
            }
        ],
    }
    (tmp_path / "panel.test.yml").write_text(yaml.safe_dump(test))
    done = subprocess.run(
        ["promtool", "test", "rules", "panel.test.yml"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_backend_detail_shows_what_the_issue_asks() -> None:
    """GPU utilization / memory / temperature / power, process RSS and CPU, queue depth, in-flight,
    breaker state, probe latency."""
    assert used_metrics(BACKEND) >= {
        "lmwatch_gpu_utilization_ratio",
        "lmwatch_gpu_memory_used_bytes",
        "lmwatch_gpu_temperature_celsius",
        "lmwatch_gpu_power_draw_watts",
        "lmwatch_backend_process_resident_memory_bytes",
        "lmwatch_backend_process_cpu_seconds_total",
        "lmwatch_queue_depth",
        "lmwatch_inflight_requests",
        "lmwatch_circuit_state",
        "lmwatch_backend_probe_duration_seconds",
    }


def test_provisioning_example_points_a_file_provider_at_the_dashboards() -> None:
    provisioning = yaml.safe_load((REPO / "dashboards" / "provisioning.yaml").read_text())
    assert provisioning["apiVersion"] == 1
    [provider] = provisioning["providers"]
    assert provider["type"] == "file"
    assert {"name", "orgId", "folder", "folderUid", "options"} <= set(provider)
    path = provider["options"]["path"]
    assert f"dashboards/lmwatch-*.json {path}/" in (REPO / "docs" / "operations.md").read_text()


# --- against a running lmwatch -----------------------------------------------------------------


def exported_names(text: str) -> set[str]:
    """Series names a scrape can hold: sample names, and every name a family's TYPE line implies
    (a histogram without observations still has _bucket/_sum/_count for PromQL to mean)."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind in ("histogram", "summary"):
                names |= {name + "_sum", name + "_count"} | ({name + "_bucket"} if kind == "histogram" else set())
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def alert_metrics() -> set[str]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return {name for g in groups for rule in g["rules"] for name in lint.metric_names(rule["expr"])}


async def test_every_metric_used_is_exported_by_a_running_lmwatch(tmp_path: Path) -> None:
    """lmwatch with a simulated backend, simulated GPUs and a few requests routed through it: the
    names the dashboards and alerts query must all be in its /metrics."""
    from lmwatch.simulator import SimSettings, start_simulator

    used = set().union(*(used_metrics(p) for p in DASHBOARDS), alert_metrics())
    sim = await start_simulator(SimSettings(), port=0)
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(
        f"server: {{host: 127.0.0.1, port: {port}}}\n"
        f"backends: [{{name: sim-a, url: '{sim.url}', poll_interval: 0.5, keep_loaded: [mistral-7b-instruct-v0.3]}}]\n"
        "sampling: {gpu: simulated, host_interval: 0.5, gpu_interval: 0.5, process_interval: 0.5}\n"
    )
    log = (tmp_path / "lmwatch.log").open("w")
    proc = await asyncio.create_subprocess_exec(str(LMWATCH), "run", "--config", str(config), stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    missing: set[str] = used
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    async with http.get(f"{base}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.2)
            for stream in (False, True, False):
                body = {"model": "auto", "stream": stream, "messages": [{"role": "user", "content": "Say hi."}]}
                async with http.post(f"{base}/v1/chat/completions", json=body) as response:
                    await response.read()
                    assert response.status == 200
            while time.monotonic() < deadline:  # samplers run on their own schedule
                async with http.get(f"{base}/metrics") as response:
                    missing = used - exported_names(await response.text())
                if not missing:
                    break
                await asyncio.sleep(0.5)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 40)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
        await sim.stop()
    assert not missing, f"used by dashboards or alerts but not exported: {sorted(missing)}"
