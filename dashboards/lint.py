#!/usr/bin/env python3
"""Lint lmwatch's Grafana dashboards: the rules file provisioning and operators rely on.

    python dashboards/lint.py [--promtool] dashboards/*.json

Prints one `file: where: problem` line per problem and exits 1 when there is any. The rules are
grafana/dashboard-linter's (a Go tool this project cannot install), plus what file provisioning
needs: a fixed uid, `id: null`, no `__inputs`, a `datasource` variable every panel and target uses,
`job`/`instance`/`backend`/`model`/`gpu` variables, a unit and a description on every panel,
`$__rate_interval` in every range selector, every lmwatch selector filtered by `$job` and `$instance`
(one Grafana serves several lmwatch daemons), and panels that fit the 24-column grid without
overlapping. With `--promtool`, every PromQL expression (panel targets and variable queries, Grafana
macros replaced by sample values) must also parse, checked by `promtool check rules`.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
QUERY_VARIABLES = ("job", "instance", "backend", "model", "gpu")
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
METRIC = re.compile(r"(?<![\w:])(lmwatch_[A-Za-z0-9_:]*)\s*(\{(?:[^{}\"]|\"(?:[^\"\\]|\\.)*\")*\})?")
RANGE = re.compile(r"\[([^\]]*)\]")
REFERENCE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)")
LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(?:(.+),\s*)?([A-Za-z_]\w*)\s*\)\s*$", re.S)
QUERY_RESULT = re.compile(r"^\s*query_result\((.+)\)\s*$", re.S)
PROMTOOL_ERROR = re.compile(r'group "(?P<group>(?:[^"\\]|\\.)*)", rule \d+, "[^"]*": (?P<message>.*)')
MACRO_VALUES = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600"}


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels") or []:
        yield panel
        yield from panel.get("panels") or []


def where(panel: dict[str, Any]) -> str:
    return f"panel {panel.get('id')} {panel.get('title', '(untitled)')!r}"


def variable_query(variable: dict[str, Any]) -> str:
    """The query text of a query variable (Grafana stores a string, or an object since v10)."""
    query = variable.get("query")
    if isinstance(query, dict):
        query = query.get("query")
    return query if isinstance(query, str) else ""


def variable_promql(query: str) -> str | None:
    """The PromQL inside a variable query: `label_values(expr, label)` and `query_result(expr)`."""
    if match := LABEL_VALUES.match(query):
        return match.group(1)
    if match := QUERY_RESULT.match(query):
        return match.group(1)
    return None


def expressions(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable that holds PromQL."""
    for panel in panels(dashboard):
        for target in panel.get("targets") or []:
            if isinstance(target.get("expr"), str):
                yield f"{where(panel)} target {target.get('refId')}", target["expr"]
    for variable in dashboard.get("templating", {}).get("list") or []:
        if variable.get("type") == "query" and (expr := variable_promql(variable_query(variable))):
            yield f"variable ${variable.get('name')}", expr


def metric_names(expr: str) -> set[str]:
    return {m.group(1) for m in METRIC.finditer(expr)}


def with_sample_values(expr: str) -> str:
    """Grafana macros become durations and variables a match-all regex, so promtool can parse it."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return MACRO_VALUES.get(name, ".*")

    return REFERENCE.sub(substitute, expr)


def references(text: str) -> set[str]:
    return {m.group(1) or m.group(2) for m in REFERENCE.finditer(text)} - {""}


def lint_top_level(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not UID.match(uid):
        problems.append(
            "uid must be a fixed string of 1-40 characters from [A-Za-z0-9_-] (URLs and provisioning use it)"
        )
    if "id" not in dashboard or dashboard["id"] is not None:
        problems.append("id must be null (Grafana assigns ids; a fixed one clashes with existing dashboards)")
    if not dashboard.get("title"):
        problems.append("title is missing")
    if not isinstance(dashboard.get("schemaVersion"), int):
        problems.append("schemaVersion must be an integer")
    tags = dashboard.get("tags")
    if not isinstance(tags, list) or not tags:
        problems.append("tags must be a non-empty list (dashboard links and search use them)")
    if not dashboard.get("refresh"):
        problems.append("refresh must be set")
    time = dashboard.get("time")
    if not isinstance(time, dict) or not time.get("from") or not time.get("to"):
        problems.append("time must have from and to")
    if "__inputs" in dashboard or "${DS_" in json.dumps(dashboard):
        problems.append("__inputs / ${DS_...} are only substituted by the import wizard; use the datasource variable")
    return problems


def lint_variables(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    variables = dashboard.get("templating", {}).get("list") or []
    datasources = [v for v in variables if v.get("type") == "datasource"]
    if (
        len(datasources) != 1
        or datasources[0].get("name") != "datasource"
        or datasources[0].get("label") != "Data Source"
        or datasources[0].get("query") != "prometheus"
    ):
        problems.append(
            'templating: needs exactly one datasource variable, named "datasource", labelled "Data Source", '
            "of type prometheus"
        )
    by_name = {v.get("name"): v for v in variables}
    for name in QUERY_VARIABLES:
        variable = by_name.get(name)
        if variable is None or variable.get("type") != "query":
            problems.append(f"templating: query variable ${name} is missing")
            continue
        if variable.get("datasource") != DATASOURCE:
            problems.append(f"variable ${name}: datasource must be {json.dumps(DATASOURCE)}")
        expr = variable_promql(variable_query(variable))
        if expr is None or not metric_names(expr):
            problems.append(f"variable ${name}: query must be label_values(<lmwatch_ metric>, label)")
        if variable.get("refresh") != 2:
            problems.append(f"variable ${name}: refresh must be 2 (on time range change), so new values appear")
    defined = set(by_name)
    used = references(json.dumps(dashboard.get("panels") or []) + json.dumps(dashboard.get("links") or []))
    for variable in variables:
        used |= references(variable_query(variable)) - {variable.get("name")}
    used = {u for u in used if not u.startswith("__")}
    problems += [f"variable ${name} is used but not defined" for name in sorted(used - defined)]
    problems += [f"variable ${name} is defined but never used" for name in sorted(defined - used)]
    return problems


def lint_panels(dashboard: dict[str, Any]) -> list[str]:
    problems = []
    seen_ids: set[Any] = set()
    top_level = {id(panel) for panel in dashboard.get("panels") or []}
    boxes: list[tuple[str, int, int, int, int]] = []  # top-level panels; those in collapsed rows stack apart
    for panel in panels(dashboard):
        here = where(panel)
        if panel.get("id") in seen_ids or not isinstance(panel.get("id"), int):
            problems.append(f"{here}: panel id must be a unique integer")
        seen_ids.add(panel.get("id"))
        grid = panel.get("gridPos") or {}
        if not all(isinstance(grid.get(k), int) for k in ("x", "y", "w", "h")):
            problems.append(f"{here}: gridPos needs integer x, y, w and h")
        elif grid["w"] < 1 or grid["h"] < 1 or grid["x"] < 0 or grid["x"] + grid["w"] > 24:
            problems.append(f"{here}: gridPos does not fit the 24-column grid")
        elif id(panel) in top_level:
            boxes.append((here, grid["x"], grid["y"], grid["w"], grid["h"]))
        if panel.get("type") == "row":
            continue
        if not panel.get("title"):
            problems.append(f"{here}: title is missing")
        if not panel.get("description"):
            problems.append(f"{here}: description is missing (it is the panel's help text)")
        if panel.get("datasource") != DATASOURCE:
            problems.append(f"{here}: datasource must be {json.dumps(DATASOURCE)}")
        unit = (panel.get("fieldConfig") or {}).get("defaults", {}).get("unit")
        if not isinstance(unit, str) or not unit:
            problems.append(f"{here}: fieldConfig.defaults.unit is not set")
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{here}: has no targets")
        for target in targets:
            at = f"{here} target {target.get('refId')}"
            if target.get("datasource") != DATASOURCE:
                problems.append(f"{at}: datasource must be {json.dumps(DATASOURCE)}")
            expr = target.get("expr")
            if not isinstance(expr, str) or not expr.strip():
                problems.append(f"{at}: expr is empty")
                continue
            problems += [f"{at}: {p}" for p in lint_expr(expr)]
    for i, (here, x, y, w, h) in enumerate(boxes):
        for other, ox, oy, ow, oh in boxes[i + 1 :]:
            if x < ox + ow and ox < x + w and y < oy + oh and oy < y + h:
                problems.append(f"{here}: overlaps {other}")
    return problems


def lint_expr(expr: str) -> list[str]:
    problems = []
    for match in RANGE.finditer(expr):
        if match.group(1) != "$__rate_interval":
            problems.append(f"range selector [{match.group(1)}] must be [$__rate_interval]")
    for match in METRIC.finditer(expr):
        matchers = match.group(2) or ""
        if 'job=~"$job"' not in matchers or 'instance=~"$instance"' not in matchers:
            problems.append(f'{match.group(1)} must be filtered by job=~"$job" and instance=~"$instance"')
    return problems


def lint(path: Path) -> tuple[dict[str, Any] | None, list[str]]:
    try:
        dashboard = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return None, [f"cannot read the dashboard: {exc}"]
    if not isinstance(dashboard, dict):
        return None, ["a dashboard must be a JSON object"]
    return dashboard, lint_top_level(dashboard) + lint_variables(dashboard) + lint_panels(dashboard)


def check_promql(named: list[tuple[str, str]], promtool: str) -> list[str]:
    """`promtool check rules` on every expression, each wrapped as a recording rule in its own group.

    The group is named after where the expression lives, so promtool's error says which one broke.
    """
    groups = [
        {"name": f"{i} {name}", "rules": [{"record": "lint:expr", "expr": with_sample_values(expr)}]}
        for i, (name, expr) in enumerate(named)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        rules = Path(tmp, "dashboard-expressions.yml")
        rules.write_text(json.dumps({"groups": groups}))  # JSON is YAML
        run = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True, check=False)
    if run.returncode == 0:
        return []
    problems = []
    for line in (run.stdout + run.stderr).splitlines():
        if match := PROMTOOL_ERROR.search(line):
            name = match.group("group").split(" ", 1)[1]
            problems.append(f"{name}: PromQL does not parse: {match.group('message')}")
    return problems or [f"promtool check rules failed: {(run.stdout + run.stderr).strip()}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dashboards", nargs="+", type=Path)
    parser.add_argument("--promtool", action="store_true", help="also parse every PromQL expression with promtool")
    args = parser.parse_args(argv)
    promtool = shutil.which("promtool") if args.promtool else None
    if args.promtool and promtool is None:
        parser.error("promtool is not on PATH (Debian: apt-get install prometheus)")
    out: list[str] = []
    uids: dict[str, Path] = {}
    for path in args.dashboards:
        dashboard, problems = lint(path)
        if dashboard is not None:
            uid = dashboard.get("uid")
            if isinstance(uid, str):
                if uid in uids:
                    problems.append(f"uid {uid!r} is also used by {uids[uid]}")
                uids.setdefault(uid, path)
            if promtool:
                problems += check_promql(list(expressions(dashboard)), promtool)
        out += [f"{path}: {p}" for p in problems]
    for line in out:
        print(line)
    return 1 if out else 0


if __name__ == "__main__":
    sys.exit(main())
