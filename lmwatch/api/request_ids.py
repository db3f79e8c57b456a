"""Request ids: the client's `X-Request-ID` when it sends a usable one, else a new UUID.

The id is made on first use, returned on every `/v1` answer (streams included: it is set as the
response is prepared), and written in error bodies, the request's audit line and log lines about
it. A client's id is taken only if it is short and plain (letters, digits and `._:/+=@-`), so it
cannot forge log lines or headers. Upstream gets it with every attempt when it is a UUID:
llama-cpp-python's server answers any other X-Request-ID with a bare HTTP 400.
"""

from __future__ import annotations

import re
import uuid

from aiohttp import web

from lmwatch.api.auth import is_v1

HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("lmwatch_request_id", str)
_USABLE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


def request_id(request: web.Request) -> str:
    found = request.get(REQUEST_ID)
    if found is None:
        given = request.headers.get(HEADER, "")
        found = request[REQUEST_ID] = given if _USABLE.fullmatch(given) else str(uuid.uuid4())
    return found


def upstream_id(request: web.Request) -> str | None:
    """The id to send upstream: the request's id when it is a UUID (what every engine accepts)."""
    rid = request_id(request)
    return rid if _UUID.fullmatch(rid) else None


async def _returned(request: web.Request, response: web.StreamResponse) -> None:
    if is_v1(request.path):
        response.headers[HEADER] = request_id(request)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(_returned)
