"""Who may call lmwatch, at the HTTP edge: the admin token on `/admin`, client API keys on `/v1`.

The credentials themselves (how they are read, compared, rate-limited) are lmwatch/credentials.py;
here a request's credential is taken from its headers and a refusal becomes its 401/403/429 answer.
The router (`lmwatch.routing.decide`) applies a key's model and task limits, given `client_of(request)`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from lmwatch.api.errors import ApiError
from lmwatch.credentials import ADMIN_TOKEN_ENV, AccessControl, AdminAuth, ClientKey, SharedBuckets, is_loopback

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _client_secret(request: web.Request) -> str | None:
    """A client key: `Authorization: Bearer` (OpenAI SDKs), else `x-api-key` (Anthropic SDKs, Claude Code)."""
    bearer = _bearer(request)
    if bearer is not None:
        return bearer
    key = request.headers.get("x-api-key", "").strip()
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
    presented = _bearer(request)
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


def authenticate(access: AccessControl, request: web.Request) -> ClientKey | None:
    """Which key the request carries (None when keys are off); raises 401 for none or a wrong one."""
    if not access.keys:
        return None
    presented = _client_secret(request)
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

CLIENT = web.RequestKey("lmwatch_client_key", ClientKey)
"""The key a `/v1` request was authenticated with (absent when client keys are off)."""
AUDIT_NOTE: web.RequestKey[dict[str, Any]] = web.RequestKey("lmwatch_audit_note", dict)
"""What the router learned about a request (model, backend, tokens), for its audit line."""


def client_of(request: web.Request) -> ClientKey | None:
    """The client key of a `/v1` request, or None when client keys are off."""
    return request.get(CLIENT)


def note_request(
    request: web.Request,
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
    note = request.get(AUDIT_NOTE)
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


def is_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")
