"""The profile endpoints of the admin API: measure models, and every model with its numbers.

    POST /admin/profile      {"backend"?, "model"?, "force"?, "tokens"?}: measure, answer the results
    GET  /admin/models       every model on every backend: facts, contexts, profile, live averages
    GET  /admin/models?task=coding[&since=7d]   the candidates for a task, in the order routing would
                             try them, each with how that task's requests went there (usage log)

The routes are installed by lmwatch/api/admin.py, behind its guard and audit.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from typing import Any

from aiohttp import web

from lmwatch.api.connections import read_body
from lmwatch.api.errors import ApiError
from lmwatch.api.status import model_document
from lmwatch.control import ControlPlane
from lmwatch.outcomes import RequestOutcomes
from lmwatch.profiling.measure import DEFAULT_TOKENS, Options
from lmwatch.profiling.runner import NothingToProfile, ProfileRunner, ProfileRunning
from lmwatch.profiling.store import encode
from lmwatch.registry import BackendInfo, Health, ModelInfo, Snapshot
from lmwatch.routing.balance import expected_seconds
from lmwatch.routing.request import Endpoint, json_object, parse_request
from lmwatch.routing.select import TASK_PREFIX
from lmwatch.services import SERVICES
from lmwatch.usage.log import TaskUsage, UsageLog, parse_duration

MAX_TOKENS = 4096


def _runner(request: web.Request) -> ProfileRunner:
    runner = request.app[SERVICES].profiles
    if runner is None:
        raise ApiError(503, "this lmwatch runs without profiles", code="no_profiles")
    return runner


async def run_profile(request: web.Request, control: ControlPlane) -> tuple[str | None, dict[str, Any]]:
    raw = await read_body(request)
    body = json_object(raw) if raw.strip() else {}  # invalid JSON is a 400, not a 500 (found by schemathesis)
    backend, model, force, tokens = (body.get(k) for k in ("backend", "model", "force", "tokens"))
    for key, value in (("backend", backend), ("model", model)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ApiError(400, f"`{key}` must be a non-empty string", param=key, code="invalid_type")
    if not isinstance(force, bool | None):
        raise ApiError(400, "`force` must be true or false", param="force", code="invalid_type")
    if tokens is not None and not (
        isinstance(tokens, int) and not isinstance(tokens, bool) and 2 <= tokens <= MAX_TOKENS
    ):
        raise ApiError(400, f"`tokens` must be an integer from 2 to {MAX_TOKENS}", param="tokens", code="invalid_type")
    try:
        results = await _runner(request).run(backend, model, bool(force), Options(tokens=tokens or DEFAULT_TOKENS))
    except ProfileRunning as exc:
        raise ApiError(409, str(exc), code="profile_running") from None
    except NothingToProfile as exc:
        raise ApiError(404, str(exc), code="not_found") from None
    target = "/".join(x for x in (backend, model) if x) or None
    return target, {"results": [r.document() for r in results]}


async def list_models(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    snap = services.registry.snapshot()
    outcomes = services.registry.outcomes
    task = request.query.get("task")
    if task is None:
        rows = [_row(snap, outcomes, b, m) for b in snap.backends.values() for m in b.models]
        return web.json_response({"task": None, "models": rows})
    routing = services.config.config.routing
    if task not in routing.task_names():
        known = ", ".join(sorted(routing.task_names()))
        raise ApiError(400, f"unknown task {task!r}; known: {known}", param="task", code="unknown_task")
    usage = await _task_usage(services.usage, request.query.get("since", "7d"), task)
    body = {"model": TASK_PREFIX + task, "messages": [{"role": "user", "content": "-"}]}
    req = parse_request(Endpoint.CHAT, json.dumps(body).encode(), routing.default_model)
    plan = services.router.plan(snap, routing, req, task, local_only=True)
    rows = []
    seen: set[tuple[str, str]] = set()
    for tier in plan.tiers:
        ranked = sorted(tier.targets, key=lambda t: expected_seconds(outcomes, t) or float("inf"))
        for target in ranked:
            backend = snap.backends[target.backend]
            if target.info is None or (target.backend, target.model_key) in seen:
                continue
            seen.add((target.backend, target.model_key))
            row = _row(snap, outcomes, backend, target.info)
            served = [
                usage[(backend.name, i)]
                for i in target.info.instance_ids or (target.info.id,)
                if (backend.name, i) in usage
            ]
            row["task_usage"] = sum(served[1:], served[0]).document() if served else None
            rows.append({"rank": len(rows) + 1, "route": tier.route.value, "label": tier.label, **row})
    return web.json_response({"task": task, "models": rows})


async def _task_usage(log: UsageLog | None, since_text: str, task: str) -> dict[tuple[str, str], TaskUsage]:
    """What the usage log says of `task` requests per backend and model since `since` (a duration);
    empty without a usage log, or when its file cannot be read (the table then has no task numbers)."""
    try:
        since = time.time() - parse_duration(since_text)
    except ValueError as exc:
        raise ApiError(400, str(exc), param="since", code="invalid_value") from None
    if log is None:
        return {}
    try:
        return await log.task_usage(since, task)
    except (sqlite3.Error, OSError) as exc:
        logging.getLogger("lmwatch.api.profiles").warning("per-task numbers left out: %s", exc)
        return {}


def _row(snap: Snapshot, outcomes: RequestOutcomes, backend: BackendInfo, model: ModelInfo) -> dict[str, Any]:
    profile = snap.profiles.get((backend.name, model.id))
    live = [
        {"instance": i, "ttft_seconds": s.ttft, "tokens_per_second": s.tokens_per_second, "samples": s.samples}
        for i in model.instance_ids or (model.id,)
        if (s := outcomes.speed(backend.name, i)) is not None
    ]
    return {
        "backend": backend.name,
        "health": backend.health.value,
        **model_document(model, stale=backend.health is Health.DOWN),
        "chars_per_token": outcomes.chars_per_token(backend.name, model.id),
        "profile": encode(profile) if profile is not None else None,
        "live": live,
    }
