"""Client connections: what aiohttp's low-level server does below the routes, made safe for lmwatch.

Three things aiohttp leaves to the application:
- a request line or header it cannot parse is answered as `text/plain` (with a traceback in the
  log for each one): here it is OpenAI-style JSON, which `/v1` and `/admin` clients both parse, and
  it is counted, not logged;
- a client that sends half a request head holds its connection until the keep-alive timeout (an
  hour by default): here the head must be complete within `server.header_timeout` (408 then close),
  the body within `server.body_timeout`, and an idle connection closes after
  `server.keepalive_timeout`;
- an `accept()` that fails (the process is out of file descriptors) is logged by asyncio on every
  retry: here it is counted in `lmwatch_client_connection_errors_total{reason="accept"}` and logged
  once when accepting starts failing and once when it works again.

Everything here runs per connection or on errors, never per request, except the body deadline,
which is armed only when the body has not fully arrived with the head.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from enum import StrEnum
from typing import Any, Protocol

from aiohttp import web
from aiohttp.http_exceptions import BadStatusLine, HttpProcessingError, LineTooLong
from aiohttp.web_protocol import RequestHandler
from prometheus_client import Counter

from lmwatch.api.errors import ApiError, error_body
from lmwatch.config import ServerConfig
from lmwatch.services import ConfigHolder

log = logging.getLogger("lmwatch.connections")

ExceptionHandler = Callable[[asyncio.AbstractEventLoop, dict[str, Any]], object]

ACCEPT_FAILED = "socket.accept() out of system resource"
"""The message asyncio's event loop reports an `accept()` failure with (EMFILE, ENFILE, ENOBUFS...)."""


class Refusal(StrEnum):
    """The `reason` label of `lmwatch_client_connection_errors_total`."""

    MALFORMED = "malformed_request"
    HEADER_TIMEOUT = "header_timeout"
    BODY_TIMEOUT = "body_timeout"
    ACCEPT = "accept"


class Connections:
    """What every client connection shares: the config (read per connection, so a reload applies to
    the next one), the error counter, and whether `accept()` is failing now."""

    def __init__(self, holder: ConfigHolder, errors: Counter) -> None:
        self.holder = holder
        self.errors = errors
        for reason in Refusal:
            self.errors.labels(reason.value)
        self.accept_failing = False

    @property
    def settings(self) -> ServerConfig:
        return self.holder.config.server

    def count(self, reason: Refusal) -> None:
        self.errors.labels(reason.value).inc()

    def exception_handler(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The loop's exception handler: accept failures counted (logged once per state change),
        everything else as asyncio logs it."""
        if context.get("message") != ACCEPT_FAILED:
            loop.default_exception_handler(context)
            return
        self.count(Refusal.ACCEPT)
        if not self.accept_failing:
            self.accept_failing = True
            log.error(
                "cannot accept client connections: %s; counted in lmwatch_client_connection_errors_total"
                '{reason="accept"} and logged again when accepting works (raise LimitNOFILE if this is '
                "the open-files limit)",
                context.get("exception"),
            )

    def accepted(self) -> None:
        if self.accept_failing:
            self.accept_failing = False
            log.warning("accepting client connections again")


class ClientConnection(RequestHandler):
    """aiohttp's per-connection protocol, with JSON parse errors and the header deadline."""

    def __init__(self, manager: web.Server, connections: Connections, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._shared = connections
        self._header_timeout = connections.settings.header_timeout
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_count = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._shared.accepted()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self._request_count
        super().data_received(data)
        # Bytes came but no request head is complete (and none is being served): a head is half sent.
        if (
            self._head_timer is None
            and self._request_count == before
            and not self._request_in_progress
            and not self._messages
            and not self._force_close
        ):
            self._head_count = before
            self._head_timer = self._loop.call_later(self._header_timeout, self._head_overdue)

    def _head_overdue(self) -> None:
        self._head_timer = None
        waiting = self._waiter is not None and not self._waiter.done()  # for a request head, not lingering
        if self._request_count != self._head_count or not waiting or self._force_close:
            return  # the head came in time, or these bytes were the rest of a body aiohttp reads and drops
        self._shared.count(Refusal.HEADER_TIMEOUT)
        if self.transport is not None:
            self.transport.write(head_overdue(self._header_timeout))
        self.force_close()

    def abandon_body(self) -> None:
        """The rest of this request's body is not wanted: close after the answer instead of reading
        on (aiohttp "lingers" up to 10 s to read a body a handler left unread)."""
        self._lingering_time = 0.0

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        """A request aiohttp could not parse (or a handler bug it caught) as OpenAI-style JSON. The
        parser's own message is not repeated: it may quote the header, and headers carry keys."""
        if not isinstance(exc, HttpProcessingError):
            super().handle_error(request, status, exc, message)  # logs the traceback; its answer is text
            error = ApiError(status, "lmwatch failed on this request; its log has the details")
        else:
            log.debug("malformed request from %s: %s", request.remote, type(exc).__name__)
            self._shared.count(Refusal.MALFORMED)
            if request.writer.output_size > 0:
                raise ConnectionResetError("the answer had started; the connection is broken")
            error = ApiError(status, _malformed(exc), code="malformed_request")
        response = error.response(self._shared.holder.redactor)
        response.force_close()
        return response


def head_overdue(timeout: float) -> bytes:
    """The 408 answer (then the connection closes) to a head not complete within `server.header_timeout`."""
    message = f"the request head did not arrive within {timeout:g} s (server.header_timeout)"
    body = json.dumps(error_body(message, "invalid_request_error", "request_timeout")).encode()
    return (
        b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json; charset=utf-8\r\n"
        b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )


def _malformed(exc: HttpProcessingError) -> str:
    if isinstance(exc, LineTooLong):
        return "malformed HTTP request: the request line or a header is too long"
    if isinstance(exc, BadStatusLine):
        return "malformed HTTP request: the request line cannot be parsed"
    return "malformed HTTP request: a header or the framing of the body cannot be parsed"


class Stoppable(Protocol):
    """What the server asks of a lean connection (lmwatch/api/lean.py) when it stops."""

    def close(self) -> None: ...

    async def shutdown(self, timeout: float | None) -> None: ...


LeanFactory = Callable[["ConnectionServer"], asyncio.Protocol]
"""Makes a connection's protocol when the lean `/v1` path is on (`server.lean_v1`)."""


class ConnectionServer(web.Server):
    """aiohttp's low-level server making `ClientConnection`s, or lean ones (`server.lean_v1`) that
    hand a connection to a `ClientConnection` at its first request they do not serve."""

    def __init__(self, server: web.Server, connections: Connections, lean: LeanFactory | None = None) -> None:
        super().__init__(
            server.request_handler,
            request_factory=server.request_factory,
            handler_cancellation=server.handler_cancellation,
            **server._kwargs,
        )
        self._shared = connections
        self._lean = lean
        self.lean_connections: set[Stoppable] = set()
        """Open lean connections, so a stop drains them with aiohttp's."""

    def __call__(self) -> asyncio.Protocol:  # type: ignore[override]  # asyncio takes any protocol
        if self._lean is not None and self._shared.settings.lean_v1:
            return self._lean(self)
        return self.aiohttp_connection()

    def aiohttp_connection(self) -> ClientConnection:
        settings = self._shared.settings
        return ClientConnection(
            self, self._shared, loop=self._loop, keepalive_timeout=settings.keepalive_timeout, **self._kwargs
        )

    def pre_shutdown(self) -> None:
        super().pre_shutdown()
        for conn in list(self.lean_connections):
            conn.close()

    async def shutdown(self, timeout: float | None = None) -> None:
        await asyncio.gather(super().shutdown(timeout), *(c.shutdown(timeout) for c in list(self.lean_connections)))


class ConnectionRunner(web.AppRunner):
    """An `AppRunner` whose connections are `ClientConnection`s (or lean ones)."""

    def __init__(
        self, app: web.Application, connections: Connections, lean: LeanFactory | None = None, **kwargs: Any
    ) -> None:
        super().__init__(app, **kwargs)
        self._shared = connections
        self._lean = lean

    async def _make_server(self) -> web.Server:
        return ConnectionServer(await super()._make_server(), self._shared, self._lean)


async def read_body(request: web.Request) -> bytes:
    """The request body, within `server.body_timeout` when it had not all arrived with the head."""
    if request.content.is_eof():
        return await request.read()
    timeout = request.app[CONNECTIONS].settings.body_timeout if CONNECTIONS in request.app else None
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        request.app[CONNECTIONS].count(Refusal.BODY_TIMEOUT)
        if isinstance(request.protocol, ClientConnection):
            request.protocol.abandon_body()
        raise ApiError(
            408,
            f"the request body did not arrive within {timeout:g} s (server.body_timeout)",
            code="request_timeout",
            headers={"Connection": "close"},
        ) from None


CONNECTIONS = web.AppKey("lmwatch_connections", Connections)
