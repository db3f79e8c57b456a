"""The operator console: one static page at `/` that reads `/status` (live, by polling) and acts through
the admin API (drain, undrain, load, unload, route explain) with the admin token the operator enters.

The files ship in the package (`static/`), need no build step and load nothing from elsewhere: a
Content-Security-Policy of `'self'` only keeps it that way, so the page works offline.
"""

from __future__ import annotations

from importlib import resources

from aiohttp import web

STATIC = resources.files("lmwatch.console") / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def setup(app: web.Application) -> None:
    app.router.add_get("/", index)
    app.router.add_get("/console/{name}", asset)


async def index(request: web.Request) -> web.Response:
    return _file("index.html")


async def asset(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if "/" in name or name.startswith(".") or not any(name.endswith(ext) for ext in TYPES):
        raise web.HTTPNotFound()
    return _file(name)


def _file(name: str) -> web.Response:
    resource = STATIC / name
    if not resource.is_file():
        raise web.HTTPNotFound()
    content_type = TYPES[name[name.rindex(".") :]]
    return web.Response(
        body=resource.read_bytes(),
        content_type=content_type,
        charset="utf-8" if content_type.startswith("text/") else None,
        headers={"Content-Security-Policy": POLICY, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
