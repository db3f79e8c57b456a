"""Who may call lmwatch, at the HTTP edge: the admin token on `/admin`, client API keys on `/v1`.

The credentials themselves (how they are read, compared, rate-limited) are lmwatch/credentials.py;
here a request's credential is taken from its headers and a refusal becomes its 401/403/429 answer.
The router (`lmwatch.routing.decide`) applies a key's model and task limits, given `client_of(request)`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from aiohttp import web

from lmwatch.api.calls import CALL, Call, call_of
from lmwatch.api.errors import ApiError, api_error, shape_of
from lmwatch.api.paths import Handler, is_v1
from lmwatch.control import ControlPlane
from lmwatch.credentials import (
    ADMIN_TOKEN_ENV,
    ANONYMOUS,
    AccessControl,
    AdminAuth,
    ClientKey,
    SharedBuckets,
    is_loopback,
)
from lmwatch.errors import DomainError
from lmwatch.jsondecode import loads
from lmwatch.services import SERVICES, Services


def _bearer(headers: Mapping[str, str]) -> str | None:
    header = headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _client_secret(headers: Mapping[str, str]) -> str | None:
    """A client key: `Authorization: Bearer` (OpenAI SDKs), else `x-api-key` (Anthropic SDKs, Claude Code)."""
    bearer = _bearer(headers)
    if bearer is not None:
        return bearer
    key = headers.get("x-api-key", "").strip()
    return key or None


def check_admin(admin: AdminAuth, request: web.Request) -> str:
    """The caller's name for the audit log (`admin-token` or `loopback`), or raises ApiError."""
    if admin.token is None:
        if is_loopback(request.remote):
            return "loopback"
        raise ApiError(
            403,
            "the admin API answers loopback clients only while no admin token is set "
            f"(set {ADMIN_TOKEN_ENV} or admin.token_file on the daemon)",
            code="admin_loopback_only",
        )
    presented = _bearer(request.headers)
    if presented is None:
        raise ApiError(
            401,
            f"the admin API needs the admin token: send `Authorization: Bearer <token>` "
            f"(the lmwatch CLI reads --token or {ADMIN_TOKEN_ENV})",
            code="missing_admin_token",
            headers={"WWW-Authenticate": 'Bearer realm="lmwatch-admin"'},
        )
    if not admin.accepts(presented):
        raise ApiError(
            401,
            "the admin token is wrong",
            code="invalid_admin_token",
            headers={"WWW-Authenticate": 'Bearer realm="lmwatch-admin", error="invalid_token"'},
        )
    return "admin-token"


def authenticate(access: AccessControl, headers: Mapping[str, str]) -> ClientKey | None:
    """Which key the request carries (None when keys are off); raises 401 for none or a wrong one."""
    if not access.keys:
        return None
    presented = _client_secret(headers)
    if presented is None:
        raise ApiError(
            401,
            "an API key is required: send `Authorization: Bearer <key>` (the OpenAI SDKs' api_key) "
            "or `x-api-key: <key>` (the Anthropic SDKs')",
            code="missing_api_key",
        )
    key = access.match(presented)
    if key is None:
        raise ApiError(401, "the API key is not valid", code="invalid_api_key")
    return key


async def admit(access: AccessControl, key: ClientKey, shared: SharedBuckets | None = None) -> None:
    """May this key start a request now? Raises 429 past its requests-per-minute (see
    `AccessControl.wait`). Separate from `authenticate` so a refused request is still counted under
    the key's name."""
    wait = await access.wait(key, shared)
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429,
            f"the key {key.name!r} is over its limit of {key.requests_per_minute} requests per minute; "
            f"retry in {seconds} s",
            code="rate_limit_exceeded",
            headers={"Retry-After": str(seconds)},
        )


# --- what the /v1 router uses --------------------------------------------------------------------


def client_of(request: web.Request) -> ClientKey | None:
    """The client key of a `/v1` request, or None when client keys are off."""
    call = request.get(CALL)
    return call.client if call is not None else None


def note_request(
    request: web.Request | Call,
    *,
    model: str | None = None,
    backend: str | None = None,
    task: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    prompt: Any = None,
) -> None:
    """Tell the request's audit line what the router learned; call as often as facts arrive.

    `prompt` (the messages, prompt or input) is only written when `audit.prompts` is on.
    """
    call = request if isinstance(request, Call) else request.get(CALL)
    note = call.note if call is not None else None
    if note is None:
        return
    values = {
        "model": model,
        "backend": backend,
        "task": task,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "prompt": prompt,
    }
    note.update({k: v for k, v in values.items() if v is not None})


# --- the /v1 gate --------------------------------------------------------------------------------

Answered = TypeVar("Answered")


async def gate(
    services: Services,
    call: Call,
    serve: Callable[[], Awaitable[Answered]],
    status_of: Callable[[Answered], tuple[int, Mapping[str, str]]],
    refuse: Callable[[ApiError], Answered],
) -> Answered:
    """On `/v1`: the client key (401/403/429), the per-key count and the request's audit line, around
    `serve`, for either server (`status_of` reads an answer's status and headers, `refuse` answers
    a refusal).

    Only a count unless client keys or request lines are on: every `/v1` request passes here, so
    without them it should cost (nearly) nothing.
    """
    control = services.control
    if control is None:
        return await serve()
    key_name = ANONYMOUS
    status = "500"
    headers: Mapping[str, str] | None = None
    started = 0.0
    if control.audit.requests:
        started = time.monotonic()
        call.note = {}
    try:
        key = authenticate(control.access, call.headers)
        if key is not None:
            call.client = key
            key_name = key.name
            cache = services.cache
            await admit(control.access, key, cache if cache is not None and cache.redis is not None else None)
        answered = await serve()
        code, headers = status_of(answered)
        status = str(code)
        return answered
    except (ApiError, DomainError) as caught:
        exc = api_error(caught)
        status = str(exc.status)
        return refuse(exc)
    except web.HTTPException as exc:
        status = str(exc.status)
        raise
    except asyncio.CancelledError:
        status = "499"
        raise
    finally:
        control.count_request(key_name, status)
        if call.note is not None:
            _audit_request(control, call, key_name, int(status), time.monotonic() - started, headers)


@web.middleware
async def client_keys(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The gate on aiohttp's `/v1` routes."""
    path = request.rel_url.path_safe  # what the router matched: decoded already, so cheap
    if not is_v1(path):
        return await handler(request)
    call = call_of(request)
    redactor = request.app[SERVICES].config.redactor

    def status_of(response: web.StreamResponse) -> tuple[int, Mapping[str, str]]:
        if call.raw is None:  # a route that read the body itself: aiohttp keeps what request.read() got
            call.raw = getattr(request, "_read_bytes", None)
        return response.status, response.headers

    return await gate(
        request.app[SERVICES],
        call,
        lambda: handler(request),
        status_of,
        lambda exc: exc.response(redactor, shape=shape_of(path), request_id=call.request_id),
    )


_ROUTE_HEADERS = (("model", "X-LMWatch-Model"), ("backend", "X-LMWatch-Backend"), ("task", "X-LMWatch-Task"))


def _audit_request(
    control: ControlPlane,
    call: Call,
    key_name: str,
    status: int,
    duration: float,
    headers: Mapping[str, str] | None,
) -> None:
    """Queue a `/v1` request's audit line: the route headers of the handler's answer, then what the
    router noted (tokens), then the prompt when `audit.prompts` is on and the router gave none."""
    note = call.note or {}
    entry: dict[str, Any] = {
        "key": key_name,
        "remote": call.remote,
        "method": call.method,
        "path": call.path,
        "request_id": call.request_id,
        "status": status,
        "duration_seconds": round(duration, 6),
    }
    if headers is not None:
        for field, header in _ROUTE_HEADERS:
            value = headers.get(header)
            if value and value != "none":
                entry[field] = value
    entry.update(note)
    if control.audit.prompts and "prompt" not in note:
        entry["prompt"] = _prompt_of(call.raw)
    control.audit.request(entry)


def _prompt_of(raw: bytes | None) -> Any:
    """The messages, prompt or input of a body the handler already read (never reads the socket)."""
    if not raw:
        return None
    try:
        body = loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    return next((body[k] for k in ("messages", "prompt", "input") if k in body), None)
