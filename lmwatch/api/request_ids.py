"""Request ids: the client's `X-Request-ID` when it sends a usable one, else a new `req_…` id.

The id is made on first use, sent upstream with every attempt, returned on every `/v1` answer
(streams included: it is set as the response is prepared), and written in error bodies, the
request's audit line and log lines about it. A client's id is taken only if it is short and
plain (letters, digits and `._:/+=@-`), so it cannot forge log lines or headers.
"""

from __future__ import annotations

import os
import re

from aiohttp import web

from lmwatch.api.auth import is_v1

HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("lmwatch_request_id", str)
_USABLE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")


def request_id(request: web.Request) -> str:
    found = request.get(REQUEST_ID)
    if found is None:
        given = request.headers.get(HEADER, "")
        found = request[REQUEST_ID] = given if _USABLE.fullmatch(given) else "req_" + os.urandom(12).hex()
    return found


async def _returned(request: web.Request, response: web.StreamResponse) -> None:
    if is_v1(request.path):
        response.headers[HEADER] = request_id(request)


def setup(app: web.Application) -> None:
    app.on_response_prepare.append(_returned)
