"""Request ids: the client's `X-Request-ID` when it sends a usable one, else a new UUID-shaped id.

The id is made on first use, returned on every `/v1` answer (streams included: it is set as the
response is prepared), and written in error bodies, the request's audit line and log lines about
it. A client's id is taken only if it is short and plain (letters, digits and `._:/+=@-`), so it
cannot forge log lines or headers. Upstream gets it with every attempt when it is a UUID:
llama-cpp-python's server answers any other X-Request-ID with a bare HTTP 400.

New ids are a random prefix drawn once per app and a counter in the UUID's last group: unique
across restarts and replicas (the prefix holds 74 random bits), and one string format per request
instead of a UUID from the OS's random source.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Mapping

from aiohttp import web

from lmwatch.api.paths import is_v1

HEADER = "X-Request-ID"
REQUEST_ID = web.RequestKey("lmwatch_request_id", str)
_USABLE = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class RequestIds:
    """The ids an app hands out: `<random 8-4-4-4 prefix>-<12 hex digits of a counter>`."""

    def __init__(self) -> None:
        prefix = str(uuid.uuid4())[:24]
        self._next = map(f"{prefix}{{:012x}}".format, itertools.count(1))

    def new(self) -> str:
        return next(self._next)


IDS = web.AppKey("lmwatch_request_ids", RequestIds)


def request_id(request: web.Request) -> str:
    found = request.get(REQUEST_ID)
    if found is None:
        found = request[REQUEST_ID] = chosen(request.headers, request.app.get(IDS))
    return found


def chosen(headers: Mapping[str, str], ids: RequestIds | None) -> str:
    """The client's id when it is usable, else a new one."""
    given = headers.get(HEADER)
    if given is not None and _USABLE.fullmatch(given):
        return given
    return ids.new() if ids is not None else str(uuid.uuid4())


def upstream_id(headers: Mapping[str, str], rid: str) -> str | None:
    """The id to send upstream: the request's id when it is a UUID (what every engine accepts).
    An id lmwatch made is one; a client's is checked."""
    return rid if HEADER not in headers or _UUID.fullmatch(rid) else None


async def _returned(request: web.Request, response: web.StreamResponse) -> None:
    if is_v1(request.path):
        response.headers[HEADER] = request_id(request)


def setup(app: web.Application) -> None:
    app[IDS] = RequestIds()
    app.on_response_prepare.append(_returned)
