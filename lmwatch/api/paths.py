"""Which surface of lmwatch a path is on (`/v1`, the model APIs; `/admin`, the control API), and
the type of an aiohttp handler: what the middlewares of both surfaces and the server share."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_v1(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def is_admin(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")
