"""The Prometheus side: alert rules valid and in the mixin style, each one unit-tested firing and not
firing by promtool, every runbook_url landing on a section of docs/runbooks.md, and the example scrape
config valid."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from lmwatch.config import DEFAULT_PORT

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = REPO / "prometheus"
ALERTS = PROMETHEUS / "alerts.yml"
ALERT_TESTS = PROMETHEUS / "alerts.test.yml"
SCRAPE = PROMETHEUS / "scrape.yml"
RUNBOOKS = REPO / "docs" / "runbooks.md"
RUNBOOK_URL = "https://github.com/lmwatch/lmwatch/blob/main/docs/runbooks.md#"

tools = pytest.mark.tools


def rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def alert_names() -> list[str]:
    return [rule["alert"] for rule in rules() if "alert" in rule]


def github_anchor(heading: str) -> str:
    """The fragment GitHub gives a Markdown heading: lower case, punctuation dropped, spaces as dashes."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_sections() -> dict[str, str]:
    """Anchor -> the section's text, for every `## ` heading in docs/runbooks.md."""
    parts = re.split(r"^## (.+)$", RUNBOOKS.read_text(), flags=re.MULTILINE)
    return {github_anchor(parts[i]): parts[i + 1] for i in range(1, len(parts), 2)}


def run(*cmd: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=PROMETHEUS)


@tools
def test_rules_pass_promtool_check_with_lint_fatal() -> None:
    done = run("promtool", "check", "rules", "--lint=all", "--lint-fatal", str(ALERTS))
    assert done.returncode == 0, done.stdout + done.stderr


@tools
def test_rule_unit_tests_pass() -> None:
    done = run("promtool", "test", "rules", str(ALERT_TESTS))
    assert done.returncode == 0, done.stdout + done.stderr


@tools
def test_rule_unit_tests_can_fail(tmp_path: Path) -> None:
    """A threshold change breaks the suite: the expectations really pin the rules' behaviour."""
    broken = ALERTS.read_text().replace("lmwatch_gpu_temperature_celsius > 85", "lmwatch_gpu_temperature_celsius > 95")
    (tmp_path / "alerts.yml").write_text(broken)
    (tmp_path / "alerts.test.yml").write_text(ALERT_TESTS.read_text())
    done = subprocess.run(
        ["promtool", "test", "rules", "alerts.test.yml"], capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "LMWatchGPUTemperatureHigh" in done.stdout + done.stderr


def test_the_issues_alerts_are_all_there() -> None:
    assert set(alert_names()) == {
        "LMWatchDown",
        "LMWatchBackendDown",
        "LMWatchBackendNoModelLoaded",
        "LMWatchGPUMemoryNearlyFull",
        "LMWatchGPUTemperatureHigh",
        "LMWatchRequestErrorRatioHigh",
        "LMWatchCloudFallbackRatioHigh",
        "LMWatchTimeToFirstTokenHigh",
        "LMWatchCollectorFailing",
        "LMWatchModelLoadsFailing",
    }
    backend_down = next(r for r in rules() if r.get("alert") == "LMWatchBackendDown")
    assert backend_down["for"] == "2m"


@pytest.mark.parametrize("rule", [r for r in rules() if "alert" in r], ids=lambda r: r["alert"])
def test_alert_follows_the_mixin_style(rule: dict[str, Any]) -> None:
    name = rule["alert"]
    assert re.fullmatch(r"LMWatch(?:[A-Z][a-z0-9]*|[A-Z]+(?=[A-Z]|$))+", name), "CamelCase with the LMWatch prefix"
    assert rule.get("for"), "a `for` keeps one bad scrape from paging"
    assert set(rule["labels"]) == {"severity"}, "labels are the alert's identity: no values in them"
    assert rule["labels"]["severity"] in ("critical", "warning", "info")
    annotations = rule["annotations"]
    assert set(annotations) == {"summary", "description", "runbook_url"}
    assert "{{" not in annotations["summary"], "the summary is the same sentence for every instance"
    assert "$labels" in annotations["description"]
    assert annotations["runbook_url"] == RUNBOOK_URL + name.lower()


def test_every_runbook_url_lands_on_a_section_and_every_section_on_an_alert() -> None:
    sections = runbook_sections()
    anchors = {rule["annotations"]["runbook_url"].removeprefix(RUNBOOK_URL) for rule in rules() if "alert" in rule}
    assert anchors - set(sections) == set(), "runbook_url without a section"
    assert set(sections) - anchors == set(), "runbook section without an alert"
    for anchor, text in sections.items():
        for part in ("**Meaning.**", "**Impact.**", "**Diagnosis.**", "**Fix.**"):
            assert part in text, f"{anchor}: {part} is missing"


def test_every_alert_is_tested_firing_and_not_firing() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in test.get("alert_rule_test", []):
            cases.setdefault(check["alertname"], set()).add(bool(check.get("exp_alerts")))
    for name in alert_names():
        assert cases.get(name) == {True, False}, f"{name}: needs a firing and a not-firing case"


def test_operations_guide_lists_every_alert() -> None:
    guide = (REPO / "docs" / "operations.md").read_text()
    missing = [name for name in alert_names() if f"| {name} |" not in guide]
    assert not missing, f"docs/operations.md's alert table lacks {missing}"


@tools
def test_scrape_config_is_valid_and_loads_the_rules() -> None:
    done = run("promtool", "check", "config", str(SCRAPE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 1 rule files found" in done.stdout + done.stderr
    config = yaml.safe_load(SCRAPE.read_text())
    [job] = config["scrape_configs"]
    assert job["job_name"] == "lmwatch", 'LMWatchDown matches on up{job="lmwatch"}'
    assert job["static_configs"][0]["targets"] == [f"127.0.0.1:{DEFAULT_PORT}"]
    assert 'up{job="lmwatch"}' in ALERTS.read_text()
