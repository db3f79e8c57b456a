"""A `/v1` request and its answer, whichever server read it: aiohttp, or the lean path (lmwatch/api/lean.py).

The `/v1` core (lmwatch/api/core.py) and the key gate (lmwatch/api/auth.py) see a `Call` (method,
path, headers, peer, the body when asked for it, the client key) and answer through a `Reply`: a
whole response, or a stream started with its headers and then written to. Both servers adapt to
these, so `/v1` behaves the same on either.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from lmwatch.api.connections import read_body
from lmwatch.api.request_ids import request_id
from lmwatch.credentials import ClientKey

JSON = "application/json"
JSON_UTF8 = "application/json; charset=utf-8"
EVENT_STREAM = "text/event-stream"


@dataclass(eq=False, slots=True)
class Call:
    """One `/v1` request as the core sees it."""

    method: str
    path: str
    headers: Mapping[str, str]
    """Case-insensitive (a multidict)."""
    remote: str | None
    request_id: str
    content_length: int | None
    read: Callable[[], Awaitable[bytes]]
    """The body: raises ApiError 408 past `server.body_timeout`."""
    client: ClientKey | None = None
    """The key the request was authenticated with (None when client keys are off)."""
    note: dict[str, Any] | None = None
    """What the router learned, for the request's audit line (None when request lines are off)."""
    raw: bytes | None = None
    """The body, once read (the lean server sets it at once when the body came with the head)."""


class Stream(Protocol):
    """An answer being streamed; `write` raises ConnectionResetError once the client has gone."""

    async def write(self, data: bytes) -> None: ...

    async def write_eof(self, data: bytes = b"") -> None: ...


class Reply(Protocol):
    """How the core answers a call: once, whole or as a stream."""

    def answer(self, status: int, headers: Mapping[str, str], body: bytes, content_type: str) -> None: ...

    async def open(self, headers: Mapping[str, str]) -> Stream:
        """Start a 200 `text/event-stream` answer with these headers."""
        ...


CALL = web.RequestKey("lmwatch_call", Call)


def call_of(request: web.Request) -> Call:
    """The aiohttp request as a `Call` (made once per request, by the key gate or the route)."""
    found = request.get(CALL)
    if found is None:
        found = request[CALL] = Call(
            request.method,
            request.path,
            request.headers,
            request.remote,
            request_id(request),
            request.content_length,
            lambda: read_body(request),
        )
    return found


class AiohttpReply:
    """The `Reply` of an aiohttp route: the response it returns."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.response: web.StreamResponse | None = None

    def answer(self, status: int, headers: Mapping[str, str], body: bytes, content_type: str) -> None:
        self.response = web.Response(body=body, status=status, headers={**headers, "Content-Type": content_type})

    async def open(self, headers: Mapping[str, str]) -> Stream:
        out = web.StreamResponse(status=200, headers={**headers, "Content-Type": EVENT_STREAM})
        await out.prepare(self.request)
        self.response = out
        return out

    def returned(self) -> web.StreamResponse:
        assert self.response is not None, "the /v1 core returned without answering"
        return self.response
