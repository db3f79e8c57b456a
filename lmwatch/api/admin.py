"""The admin API under `/admin`: thin handlers over the control plane (lmwatch/control.py).

Every `/admin` request passes the admin guard first (a bearer token, or loopback-only when no token
is set); every request that changes something writes an audit line (who, what, which target, the
result) before it answers. Errors have the OpenAI-style body of lmwatch/api/errors.py; a refused
config or backend adds `problems`, one `path: message` line each.

    GET    /admin/backends                          health, models, breakers, in-flight, origin
    POST   /admin/backends                          add a backend (the schema of `backends:` entries)
    DELETE /admin/backends/{name}                   remove a backend (until the next reload)
    POST   /admin/backends/{name}/drain | /undrain  stop / resume new requests; in-flight ones finish
    POST   /admin/backends/{name}/models/load       {"model": id, "context_length"?: n}
    POST   /admin/backends/{name}/models/unload     {"model": id or instance id}
    POST   /admin/poll                              {"backend"?: name}: probe now, answer when done
    POST   /admin/reload                            re-read the config file
    POST   /admin/route/explain                     a /v1 request body: where it would go, and why
    POST   /admin/profile                           measure models (lmwatch/api/profiles.py)
    GET    /admin/models                            every model with its profile; ?task= in routing order
    GET    /admin/routing/preferences | PUT         task -> model family patterns (until the next reload)
    GET    /admin/usage?since=7d&by=model           usage report (lmwatch/usage): totals, local share, $ saved
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

from lmwatch.api import contract
from lmwatch.api import profiles as profiles_api
from lmwatch.api.auth import check_admin
from lmwatch.api.connections import read_body
from lmwatch.api.core import forbids_cloud
from lmwatch.api.errors import ApiError, ProblemsError, api_error
from lmwatch.api.paths import Handler, is_admin
from lmwatch.api.status import backend_document
from lmwatch.backend_changes import unknown_backend
from lmwatch.config import BackendConfig, validation_problems
from lmwatch.control import ControlPlane
from lmwatch.errors import DomainError
from lmwatch.lifecycle.loads import LoadError, LoadFailure
from lmwatch.registry import BackendInfo
from lmwatch.routing.balance import order
from lmwatch.routing.context import context_too_long
from lmwatch.routing.explain import facts, passed_over
from lmwatch.routing.request import Endpoint, json_object, parse_request
from lmwatch.services import SERVICES
from lmwatch.usage.log import GROUPS, parse_duration

_B = TypeVar("_B", bound=BaseModel)
ACTOR = web.RequestKey("lmwatch_admin_actor", str)

Action = Callable[[web.Request, ControlPlane], Awaitable[tuple[str | None, Mapping[str, object]]]]
"""A control action: returns (target, answer body); raises ApiError to refuse."""


def setup(app: web.Application) -> None:
    """Install the admin routes and their guard."""
    app.middlewares.append(guard)
    services = app[SERVICES]
    if services.control is not None:
        services.status_sections.setdefault("control", services.control.status_section)
    r = app.router
    r.add_get("/admin/backends", list_backends)
    r.add_get("/admin/usage", usage_report)
    r.add_post("/admin/backends", _action("add_backend", add_backend, status=201))
    r.add_delete("/admin/backends/{name}", _action("remove_backend", remove_backend))
    r.add_post("/admin/backends/{name}/drain", _action("drain", drain))
    r.add_post("/admin/backends/{name}/undrain", _action("undrain", undrain))
    r.add_post("/admin/backends/{name}/models/load", _action("load_model", load_model))
    r.add_post("/admin/backends/{name}/models/unload", _action("unload_model", unload_model))
    r.add_post("/admin/backends/{name}/swap", _action("swap", swap))
    r.add_get("/admin/fit", fit_model)
    r.add_post("/admin/poll", _action("poll", poll))
    r.add_post("/admin/reload", _action("reload", reload))
    r.add_post("/admin/route/explain", route_explain)
    r.add_post("/admin/profile", _action("profile", profiles_api.run_profile))
    r.add_get("/admin/models", profiles_api.list_models)
    r.add_get("/admin/routing/preferences", get_preferences)
    r.add_put("/admin/routing/preferences", _action("set_preferences", set_preferences))


def _control(request: web.Request) -> ControlPlane:
    control = request.app[SERVICES].control
    if control is None:
        raise ApiError(503, "this lmwatch runs without a control plane", code="no_control")
    return control


# --- the middleware ------------------------------------------------------------------------------


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The admin guard on `/admin` (a bearer token, or loopback-only when no token is set); every
    other path passes untouched."""
    if not is_admin(request.rel_url.path_safe):  # what the router matched: decoded already, so cheap
        return await handler(request)
    return await _guard_admin(request, handler)


async def _guard_admin(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Let an `/admin` request through only with the admin token (or from loopback without one);
    a refusal is counted and audited. ApiErrors of the handlers become their JSON answers."""
    control = request.app[SERVICES].control
    if control is None:
        answer = ApiError(404, "the admin API is not enabled in this process", code="not_found")
        return answer.response(request.app[SERVICES].config.redactor)
    try:
        request[ACTOR] = check_admin(control.admin, request)
    except (ApiError, DomainError) as caught:
        exc = api_error(caught)
        control.metrics.admin_actions.labels("authenticate", "denied").inc()
        control.audit.refusal(request.remote, f"{request.method} {request.path}", exc.code)
        return exc.response(control.redactor)
    try:
        return await handler(request)
    except (ApiError, DomainError) as caught:
        exc = api_error(caught)
        return exc.response(control.redactor)


# --- the action wrapper --------------------------------------------------------------------------


def _action(name: str, action: Action, status: int = 200) -> Callable[[web.Request], Awaitable[web.Response]]:
    """Run a control action, write its audit line (success or refusal), answer JSON."""

    async def handler(request: web.Request) -> web.Response:
        control = _control(request)
        actor = request.get(ACTOR, "unknown")
        target = request.match_info.get("name")
        try:
            target, body = await action(request, control)
        except (ApiError, DomainError) as caught:
            exc = api_error(caught)
            control.metrics.admin_actions.labels(name, "refused").inc()
            await control.audit.control(
                actor=actor,
                remote=request.remote,
                action=name,
                target=target,
                result="refused",
                status=exc.status,
                error=exc.message,
            )
            return exc.response(control.redactor)
        control.metrics.admin_actions.labels(name, "ok").inc()
        await control.audit.control(actor=actor, remote=request.remote, action=name, target=target, result="ok")
        return web.json_response(body, status=status)

    return handler


async def _body(request: web.Request, *, required: bool = True) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        if required:
            raise ApiError(400, "a JSON object body is required", code="invalid_json")
        return {}
    return json_object(raw)


def _backend(control: ControlPlane, name: str) -> BackendInfo:
    backend = control.services.registry.snapshot().backend(name)
    if backend is None:
        raise unknown_backend(name)
    return backend


def _string(body: dict[str, Any], key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ApiError(400, f"`{key}` is required (a non-empty string)", param=key, code="missing_required_parameter")
    return value.strip()


async def _parsed(request: web.Request, model: type[_B], *, required: bool = True) -> _B:
    """The body validated by its model of lmwatch/api/contract.py (the OpenAPI document's source)."""
    try:
        return model.model_validate(await _body(request, required=required))
    except ValidationError as exc:
        error = ProblemsError(400, "invalid request body", validation_problems(exc), code="invalid_request")
        error.param = ".".join(str(part) for part in exc.errors()[0]["loc"]) or None
        raise error from None


# --- reading -------------------------------------------------------------------------------------


def backends_document(control: ControlPlane) -> dict[str, Any]:
    snap = control.services.registry.snapshot()
    view = control.services.registry.outcomes.view()
    breakers: dict[str, list[contract.Breaker]] = {}
    for b in view.breakers:
        breakers.setdefault(b.backend, []).append(
            {
                "model": b.model,
                "state": b.state.value,
                "failures": b.failures,
                "retry_at": b.retry_at,
                "reason": b.reason,
            }
        )
    control.sources.effective()
    listed: contract.Backends = {
        "backends": [
            {
                **backend_document(b),
                "origin": control.sources.origins.get(b.name, "config"),
                "inflight": view.inflight.get(b.name, 0),
                "queued": view.queued.get(b.name, 0),
                "breakers": breakers.get(b.name, []),
            }
            for b in snap.backends.values()
        ],
    }
    return {**listed, **control.status_section()}


async def list_backends(request: web.Request) -> web.Response:
    return web.json_response(backends_document(_control(request)))


async def usage_report(request: web.Request) -> web.Response:
    """`?since=7d` (s, m, h, d, w; default 7d) and `?by=model|backend|key|task|day` (default model)."""
    usage = request.app[SERVICES].usage
    by = request.query.get("by", "model")
    if by not in GROUPS:
        raise ApiError(400, f"by must be one of {', '.join(GROUPS)} (got {by!r})", code="invalid_by", param="by")
    since_text = request.query.get("since", "7d")
    try:
        seconds = parse_duration(since_text)
    except ValueError as exc:
        raise ApiError(400, str(exc), code="invalid_since", param="since") from None
    if usage is None:
        raise ApiError(503, "this lmwatch runs without usage analytics", code="no_usage")
    since = time.time() - seconds
    try:
        report = await usage.report(since, by)
    except (sqlite3.Error, OSError) as exc:
        raise ApiError(503, f"the usage file cannot be read: {exc}", code="usage_unavailable") from None
    return web.json_response({"since": since, "since_text": since_text, "by": by, **report})


async def get_preferences(request: web.Request) -> web.Response:
    return web.json_response({"preferences": _control(request).config.routing.preferences})


# --- actions -------------------------------------------------------------------------------------


async def add_backend(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Added]:
    body = await _body(request)
    try:
        backend = BackendConfig.model_validate(body)
    except ValidationError as exc:
        raise ProblemsError(400, "invalid backend", validation_problems(exc), code="invalid_backend") from None
    control.fleet.add(backend)
    return backend.name, {"backend": backend_document(_backend(control, backend.name)), "origin": "runtime"}


async def remove_backend(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Removed]:
    name = request.match_info["name"]
    origin = control.fleet.remove(name)
    return name, {"removed": name, "origin": origin}


async def drain(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Drained]:
    return await _set_draining(request, control, True)


async def undrain(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Drained]:
    return await _set_draining(request, control, False)


async def _set_draining(
    request: web.Request, control: ControlPlane, draining: bool
) -> tuple[str | None, contract.Drained]:
    name = request.match_info["name"]
    _backend(control, name)
    control.services.registry.set_draining(name, draining)
    inflight = control.services.registry.outcomes.inflight.get(name, 0)
    return name, {"backend": name, "draining": draining, "inflight": inflight}


async def load_model(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Loaded]:
    name = request.match_info["name"]
    body = await _parsed(request, contract.LoadModel)
    model = body.model.strip()
    result = await control.models.load(name, model, body.context_length)
    info = _backend(control, name).model(model)
    return f"{name}/{model}", {"backend": name, "model": model, "loaded": bool(info and info.loaded), "result": result}


async def unload_model(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Unloaded]:
    name = request.match_info["name"]
    model = (await _parsed(request, contract.UnloadModel)).model.strip()
    instances = await control.models.unload(name, model)
    return f"{name}/{model}", {"backend": name, "model": model, "unloaded": instances}


_LOAD_STATUS = {
    LoadFailure.NOT_FOUND: 404,
    LoadFailure.UNSUPPORTED: 501,
    LoadFailure.NOT_OWNER: 409,
    LoadFailure.FAILED: 502,
}


def _load_refused(exc: LoadError) -> ApiError:
    """A lifecycle action that did not happen, as an API error saying why (`load_out_of_memory`, ...)."""
    status = _LOAD_STATUS.get(exc.kind, 503)
    return ApiError(status, f"{exc.backend}: {exc}", code=f"load_{exc.kind.value}")


def _context_length(body: dict[str, Any]) -> int | None:
    context = body.get("context_length")
    if context is not None and (not isinstance(context, int) or isinstance(context, bool) or context < 1):
        raise ApiError(400, "`context_length` must be a positive integer", param="context_length", code="invalid_type")
    return context


async def swap(request: web.Request, control: ControlPlane) -> tuple[str | None, dict[str, Any]]:
    name = request.match_info["name"]
    body = await _parsed(request, contract.Swap)
    old, new = body.old.strip(), body.new.strip()
    _backend(control, name)
    control.models.check_context(name, new, body.context_length)
    try:
        result = await control.models.lifecycle().swapper.swap(name, old, new, body.context_length)
    except LoadError as exc:
        raise _load_refused(exc) from None
    return f"{name}/{old}->{new}", result


async def fit_model(request: web.Request) -> web.Response:
    model = request.query.get("model", "").strip()
    if not model:
        raise ApiError(400, "`model` is required (?model=ID)", param="model", code="missing_required_parameter")
    raw = request.query.get("context_length")
    try:
        context = int(raw) if raw else None
    except ValueError:
        context = 0
    if context is not None and context < 1:
        raise ApiError(400, "`context_length` must be a positive integer", param="context_length", code="invalid_type")
    fits = _control(request).models.lifecycle().fit(model, context)
    if not any(f.reason != "not downloaded on this backend" for f in fits):
        raise ApiError(404, f"no backend has {model!r} downloaded", param="model", code="model_not_found")
    return web.json_response({"model": model, "backends": [f.document() for f in fits]})


async def poll(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Polled]:
    name = (await _parsed(request, contract.Poll, required=False)).backend
    polled = await control.fleet.poll(name)
    snap = control.services.registry.snapshot()
    return name, {
        "polled": polled,
        "backends": [backend_document(snap.backends[n]) for n in polled if n in snap.backends],
    }


async def reload(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Reloaded]:
    problems = await control.reload()
    if problems:
        raise ProblemsError(400, "the config was not reloaded (the running config stays)", problems)
    return None, {"reloaded": True, "backends": sorted(control.sources.origins)}


async def set_preferences(request: web.Request, control: ControlPlane) -> tuple[str | None, contract.Preferences]:
    body = await _body(request)
    preferences = body.get("preferences", body)
    return "routing.preferences", {"preferences": control.set_preferences(preferences)}


# --- route explain -------------------------------------------------------------------------------


async def route_explain(request: web.Request) -> web.Response:
    control = _control(request)
    raw = await request.read()
    endpoint_name = request.query.get("endpoint", "chat")
    return web.json_response(
        await explain_route(
            control,
            raw,
            endpoint_name,
            request.headers.get("X-LMWatch-Task"),
            forbids_cloud(request.headers, None),
        )
    )


async def explain_route(
    control: ControlPlane,
    raw: bytes,
    endpoint_name: str,
    task_header: str | None,
    local_only: bool,
) -> contract.Explanation:
    """A dry run of routing: task scores, candidates in order with a reason each, the chosen target.

    Uses the router's own functions (parse, classify, plan, balance order) on the current snapshot;
    nothing is sent to any backend and no breaker or counter changes.
    """
    try:
        endpoint = Endpoint(endpoint_name)
    except ValueError:
        raise ApiError(
            400,
            f"endpoint must be one of {', '.join(e.value for e in Endpoint)}",
            param="endpoint",
            code="invalid_value",
        ) from None
    routing = control.config.routing
    snap = control.services.registry.snapshot()
    outcomes = control.services.registry.outcomes
    router = control.services.router
    req = parse_request(endpoint, raw, routing.default_model)
    choice = await router.choose_task(snap, routing, req, task_header, scores=True)
    classification, forced, task = choice.classification, choice.forced, choice.task
    plan = router.decide(snap, routing, outcomes, req, task, local_only=local_only, dry_run=True).plan
    breakers = {(b.backend, b.model): b for b in outcomes.view().breakers}
    rng = random.Random(0)
    candidates: list[contract.Candidate] = []
    chosen: contract.Candidate | None = None
    too_small = []
    for tier in plan.tiers:
        for target in order(tier.targets, outcomes, rng):
            breaker = breakers.get((target.backend, target.model))
            state = breaker.state.value if breaker else "closed"
            reason = _reason(tier.route.value, tier.label, task)
            if breaker is not None and state == "open":
                reason += f"; skipped: circuit open ({breaker.reason})"
            checked, details = facts(req, target, outcomes)
            if not checked.fits:
                too_small.append((target, checked))
                reason += f"; skipped: needs about {checked.needed} tokens, its loaded context is {checked.context}"
            entry: contract.Candidate = {
                "backend": target.backend,
                "model": target.model,
                "route": tier.route.value,
                "reason": reason,
                "breaker": state,
                "inflight": outcomes.inflight.get(target.backend, 0),
                "cap": target.cap,
                "usable": state != "open" and checked.fits,
                "fit": details["fit"],
                "speed": details["speed"],
                "profile": details["profile"],
                "decision": "kept" if state != "open" and checked.fits else "skipped",
            }
            candidates.append(entry)
            if chosen is None and entry["usable"]:
                chosen = entry
                entry["decision"] = "chosen"
    excluded: list[contract.Excluded] = [
        {"backend": b.name, "reason": "draining" if b.draining else f"{b.health.value}: {b.health_reason}"}
        for b in snap.backends.values()
        if b.draining or not b.reachable
    ]
    return {
        "model": req.model,
        "endpoint": endpoint.value,
        "task": task,
        "task_source": "header" if task_header else ("model" if forced else "classifier"),
        "scores": dict(classification.scores) if classification else {},
        "task_reasons": list(classification.reasons) if classification and not forced else [],
        "candidates": candidates,
        "excluded": excluded,
        "passed_over": passed_over(router.capabilities(routing), snap, routing, req, plan),
        "chosen": chosen,
        "unavailable": plan.unavailable
        or (context_too_long(req, too_small).message if too_small and chosen is None else None),
    }


def _reason(route: str, label: str, task: str) -> str:
    return {
        "explicit": f"the request names this model ({label})",
        "preference": f"routing.preferences.{task} lists {label!r}",
        "capability": f"capability table: {label} (tried after routing.preferences.{task})",
        "cloud": "cloud fallback (no local candidate left)",
    }.get(route, f"{route}: {label}")
