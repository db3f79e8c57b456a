"""The lean `/v1` server: routed `POST`s answered straight from an `asyncio.Protocol`, below aiohttp.

aiohttp's server side (its parser, request and response objects, middleware, a handler task per
connection) was most of what a proxied request cost. A client connection starts here: a request
head is parsed with httptools (llhttp), and a `POST` to a routed endpoint (`ROUTES`) with a
`Content-Length` body is answered by the `/v1` core (lmwatch/api/core.py) through the key gate,
with one `transport.write` for a whole answer. Anything else (another method or path, `Expect`,
`Transfer-Encoding`, `Upgrade`, a malformed or very long head, HTTP other than 1.0 and 1.1) hands
the connection to aiohttp with every byte from that request's first one on, once the answers to
earlier requests were written; it stays with aiohttp from then on, so `/admin`, `/metrics`, the
console and odd requests behave as they always did.

Requests on one connection are served one at a time, by one task for the connection's life
(pipelined ones wait in the buffer), which keeps answers in order. The timeouts, their counters
and the answers are aiohttp's path's (lmwatch/api/connections.py): `server.header_timeout`,
`server.body_timeout`, `server.keepalive_timeout`. `server.lean_v1: false` leaves every connection to aiohttp.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Protocol, cast

import httptools
from aiohttp import web
from aiohttp.helpers import rfc822_formatted_time
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.tcp_helpers import tcp_keepalive
from multidict import CIMultiDict

from lmwatch.api.auth import gate
from lmwatch.api.calls import EVENT_STREAM, Call, Stream
from lmwatch.api.connections import Connections, ConnectionServer, Refusal, head_overdue
from lmwatch.api.core import ROUTES, V1, error_response
from lmwatch.api.errors import ApiError
from lmwatch.api.openai import CORE
from lmwatch.api.request_ids import HEADER as REQUEST_ID
from lmwatch.api.request_ids import chosen
from lmwatch.routing.request import Endpoint

log = logging.getLogger("lmwatch.api.lean")

HEAD_LIMIT = 8190
"""Longer heads go to aiohttp, which answers the ones past its line and field limits (8190 bytes)."""
PIPELINE_LIMIT = 256 * 1024
"""Bytes of later requests buffered while one is served before reading pauses."""

WORKER = "lmwatch lean connection"
"""The name of a connection's serving task (as `asyncio.all_tasks()` lists it)."""
_REFUSED_HEADERS = (b"expect", b"transfer-encoding", b"upgrade")
_REASONS = {s.value: s.phrase for s in HTTPStatus}
_SERVER = f"Server: {SERVER_SOFTWARE}\r\n"
_CRLF = "\r\n"


class InFlight(Protocol):
    """The server's count of requests being handled (lmwatch/server.py), which a stop waits on."""

    def enter(self) -> None: ...

    def leave(self) -> None: ...


class LeanServer:
    """What every lean connection of an app shares; called by `ConnectionServer` for each new one."""

    def __init__(self, app: web.Application, connections: Connections, inflight: InFlight) -> None:
        self.core: V1 = app[CORE]
        self.inflight = inflight
        self.connections = connections

    def __call__(self, server: ConnectionServer) -> LeanConnection:
        return LeanConnection(self, server)


class LeanConnection(asyncio.Protocol):
    """One client connection, until it is handed to aiohttp."""

    def __init__(self, lean: LeanServer, server: ConnectionServer) -> None:
        self._lean = lean
        self._server = server
        self._shared = lean.connections
        settings = lean.connections.settings
        self._header_timeout = settings.header_timeout
        self._body_timeout = settings.body_timeout
        self._keepalive_timeout = settings.keepalive_timeout
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.http10 = False
        self._remote: str | None = None
        self._buf: bytes | bytearray = b""
        """This request's bytes from its first on (and any after it)."""
        self._timer: asyncio.TimerHandle | None = None
        """The header or drain deadline, when one applies."""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._idle_at = 0.0
        """When an idle connection closes: moved on after each answer, checked when its timer fires
        (so a kept-alive request costs no timer of its own, as in aiohttp)."""
        self._worker: asyncio.Task[None] | None = None
        """Serves the connection's requests one after another: one task per connection, not per
        request (a task costs its creation and a weak reference in asyncio's set of all tasks)."""
        self._wake: asyncio.Future[None] | None = None
        """What the idle worker waits on for `_pending`."""
        self._pending: tuple[Call, Endpoint, bool] | None = None
        self._busy = False
        """A request is being served (from its parsed head until its answer is written)."""
        self._served: asyncio.Future[None] | None = None
        """Set when the request being served is answered (a graceful stop waits on it)."""
        self._draining = 0
        """Body bytes of an answered request still to be dropped."""
        self._closing = False
        self._paused_reading = False
        self.writable: asyncio.Future[None] | None = None
        """Set while the transport's buffer is full (flow control of a stream)."""
        # the request being parsed or served
        self._url = b""
        self._path = ""
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_done = False
        self._head_len = 0
        self._length = 0
        self._body_waiter: asyncio.Future[None] | None = None

    # --- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a TCP server's (uvloop's is no subclass)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, list | tuple) else None if peer is None else str(peer)
        tcp_keepalive(self.transport)
        self._shared.accepted()
        self._server.lean_connections.add(self)
        self._idle()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._server.lean_connections.discard(self)
        self._stop_timers()
        self.transport = None
        if self._worker is not None:
            self._worker.cancel()  # a client that left cancels its request (and the upstream call)
        self.resume_writing()  # a stream waiting to write finds the transport gone

    def data_received(self, data: bytes) -> None:
        if self.transport is None:
            return  # closing: what still comes is not read
        if self._buf:
            if not isinstance(self._buf, bytearray):
                self._buf = bytearray(self._buf)
            self._buf += data
        else:
            self._buf = data
        if self._busy:
            if self._body_waiter is not None and len(self._buf) >= self._head_len + self._length:
                if not self._body_waiter.done():
                    self._body_waiter.set_result(None)
                self._body_waiter = None
            elif (
                len(self._buf) > self._head_len + self._length + PIPELINE_LIMIT
                and self.transport is not None
                and not self._paused_reading
            ):
                self.transport.pause_reading()
                self._paused_reading = True
        elif self._draining:
            self._drain()
        else:
            self._next()

    def pause_writing(self) -> None:
        self.writable = self._loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    # --- what aiohttp's server asks of a connection (graceful stop) ---------------------------

    def close(self) -> None:
        """Close once the request being served (if any) is answered."""
        self._closing = True
        if not self._busy:
            self._close()

    async def shutdown(self, timeout: float | None) -> None:
        """Let the request being served finish within `timeout`, then cut it and close."""
        self._closing = True
        if self._busy:
            served = self._served = self._loop.create_future()
            await asyncio.wait({served}, timeout=timeout)
        if self._worker is not None:
            self._worker.cancel()
        self._close()

    def _close(self) -> None:
        """Close the connection; bytes still coming are not read."""
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    # --- reading a request ---------------------------------------------------------------------

    def _next(self) -> None:
        """Parse the next request head in the buffer; serve it, wait for more, or hand off."""
        buf = self._buf
        if not buf:
            return
        if not buf.startswith(b"POST ") and (len(buf) >= 5 or b"POST "[: len(buf)] != buf):
            self._hand_off()
            return
        end = buf.find(b"\r\n\r\n", 0, HEAD_LIMIT + 4)
        if end == -1 or buf.find(b"\n\n", 0, end) != -1:
            if end != -1 or len(buf) > HEAD_LIMIT or b"\n\n" in buf:
                self._hand_off()  # bare line feeds, or a long head: aiohttp's parser decides
                return
            if self._timer is None:  # from the head's first byte: a trickle does not move the deadline
                self._arm(self._header_timeout, self._head_overdue)
            return
        self._disarm()
        self._head_len = end + 4
        self._url = b""
        self._headers = []
        self._head_done = False
        parser = httptools.HttpRequestParser(self)
        try:
            parser.feed_data(buf[: self._head_len])
        except httptools.HttpParserError:
            self._hand_off()
            return
        endpoint = self._routed(parser)
        if endpoint is None:
            self._hand_off()
            return
        self._busy = True
        self._pending = (self._call(endpoint), endpoint, parser.should_keep_alive())
        if self._worker is None or self._worker.done():
            self._worker = self._loop.create_task(self._work(), name=WORKER)
        elif self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        # else: the worker is running (this is a pipelined request): it takes `_pending` next

    async def _work(self) -> None:
        """The connection's requests, in order, until it closes (`connection_lost` cancels it)."""
        while self.transport is not None:
            if self._pending is None:
                self._wake = self._loop.create_future()
                try:
                    await self._wake
                finally:
                    self._wake = None
                continue
            call, endpoint, keep_alive = self._pending
            self._pending = None
            await self._serve(call, endpoint, keep_alive)
        self._worker = None

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._head_done = True

    def _routed(self, parser: httptools.HttpRequestParser) -> Endpoint | None:
        """The endpoint of a request the lean path serves; None for the ones aiohttp should."""
        version = parser.get_http_version()
        if not self._head_done or version not in ("1.1", "1.0"):
            return None
        self.http10 = version == "1.0"
        self._path = self._url.partition(b"?")[0].decode("latin-1")
        endpoint = ROUTES.get(self._path)
        if endpoint is None:
            return None
        length: int | None = None
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                if length is not None or not value.isdigit():
                    return None
                length = int(value)
            elif lower in _REFUSED_HEADERS:
                return None
        if length is None:
            return None
        self._length = length
        return endpoint

    def _call(self, endpoint: Endpoint) -> Call:
        headers = CIMultiDict(
            [(n.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape")) for n, v in self._headers]
        )
        rid = chosen(headers, self._lean.core.ids)
        call = Call("POST", self._path, headers, self._remote, rid, self._length, self._read)
        end = self._head_len + self._length
        if len(self._buf) >= end:  # most requests: no read to wait for
            call.raw = bytes(self._buf[self._head_len : end])
        return call

    async def _read(self) -> bytes:
        """The body, within `server.body_timeout` when it had not all arrived with the head."""
        start, end = self._head_len, self._head_len + self._length
        if len(self._buf) < end:
            self._body_waiter = self._loop.create_future()
            try:
                async with asyncio.timeout(self._body_timeout):
                    await self._body_waiter
            except TimeoutError:
                self._body_waiter = None
                self._shared.count(Refusal.BODY_TIMEOUT)
                raise ApiError(
                    408,
                    f"the request body did not arrive within {self._body_timeout:g} s (server.body_timeout)",
                    code="request_timeout",
                    headers={"Connection": "close"},
                ) from None
        return bytes(self._buf[start:end])

    # --- serving one ---------------------------------------------------------------------------

    async def _serve(self, call: Call, endpoint: Endpoint, keep_alive: bool) -> None:
        reply = LeanReply(self, call, keep_alive and not self._closing)
        core = self._lean.core
        inflight = self._lean.inflight
        inflight.enter()
        try:
            await gate(
                core.services,
                call,
                lambda: core.serve(call, reply, endpoint),
                reply.status_of,
                lambda exc: error_response(call, reply, core.services.config.redactor, exc),
            )
            if reply.stream is not None and not reply.stream.ended:
                await reply.stream.write_eof()
        except asyncio.CancelledError:
            return  # the client left (or the stop cut the request): nothing more to write
        except ConnectionResetError:  # the stream cannot end: neither can the connection go on
            self._close()
            return
        except Exception:
            log.exception("unexpected error answering %s (request %s)", call.path, call.request_id)
            reply.keep_alive = reply.keep_alive and reply.status == 0  # a stream cut short cannot go on
        finally:
            inflight.leave()
            self._busy = False
            if self._served is not None and not self._served.done():
                self._served.set_result(None)
        if reply.status == 0:  # the core returned without answering (a bug): the client still gets one
            error_response(call, reply, core.services.config.redactor, ApiError(500, _FAILED))
        self._answered(reply.keep_alive)

    def _answered(self, keep_alive: bool) -> None:
        """The answer is written: close, or drop what is left of its body and read the next request."""
        transport = self.transport
        if transport is None:
            return
        if not keep_alive or self._closing:
            self._close()
            return
        end = self._head_len + self._length
        if len(self._buf) >= end:
            self._buf = self._buf[end:]
        else:
            self._draining = end - len(self._buf)
            self._buf = b""
            self._arm(self._body_timeout, self._drain_overdue)
            return
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        if self._buf:
            self._next()
        else:
            self._idle()

    def _drain(self) -> None:
        dropped = min(len(self._buf), self._draining)
        self._draining -= dropped
        self._buf = self._buf[dropped:]
        if not self._draining:
            self._disarm()
            if self._buf:
                self._next()
            else:
                self._idle()

    # --- handing off -----------------------------------------------------------------------------

    def _hand_off(self) -> None:
        """aiohttp serves this connection from this request on."""
        transport = self.transport
        assert transport is not None and not self._busy
        self._stop_timers()
        self._server.lean_connections.discard(self)
        self.transport = None
        if self._wake is not None and self._worker is not None:
            self._worker.cancel()  # idle (else it is this task, and ends as the transport is gone)
        handler = self._server.aiohttp_connection()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        if self._paused_reading:
            transport.resume_reading()
        data, self._buf = bytes(self._buf), b""
        handler.data_received(data)

    # --- deadlines -----------------------------------------------------------------------------

    def _arm(self, delay: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self._loop.call_later(delay, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _stop_timers(self) -> None:
        self._disarm()
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _idle(self) -> None:
        """Nothing under way: the connection closes after `server.keepalive_timeout` unless a request comes."""
        self._idle_at = self._loop.time() + self._keepalive_timeout
        if self._idle_timer is None:
            self._idle_timer = self._loop.call_at(self._idle_at, self._idle_overdue)

    def _idle_overdue(self) -> None:
        self._idle_timer = None
        if self._busy or self._buf or self._draining or self.transport is None:
            return  # busy: the answer starts the wait again
        if self._loop.time() < self._idle_at:
            self._idle_timer = self._loop.call_at(self._idle_at, self._idle_overdue)
        else:
            self._close()

    def _head_overdue(self) -> None:
        self._timer = None
        if self.transport is None or self._busy:
            return
        self._shared.count(Refusal.HEADER_TIMEOUT)
        self.transport.write(head_overdue(self._header_timeout))
        self._close()

    def _drain_overdue(self) -> None:
        self._timer = None
        self._close()


_FAILED = "lmwatch failed on this request; its log has the details"


class LeanReply:
    """The `Reply` of a lean request: the answer written to the transport in one piece, or a stream."""

    __slots__ = ("_call", "_conn", "headers", "keep_alive", "status", "stream")

    def __init__(self, conn: LeanConnection, call: Call, keep_alive: bool) -> None:
        self._conn = conn
        self._call = call
        self.keep_alive = keep_alive
        self.status = 0
        self.headers: Mapping[str, str] = {}
        self.stream: LeanStream | None = None

    def status_of(self, _: None) -> tuple[int, Mapping[str, str]]:
        return self.status, self.headers

    def _head(self, status: int, headers: Mapping[str, str], content_type: str, framing: str) -> bytes:
        self.status, self.headers = status, headers
        if "Connection" in headers:  # lmwatch's own (an error that closes): the framing below says it
            if headers["Connection"].lower() == "close":
                self.keep_alive = False
            headers = {k: v for k, v in headers.items() if k != "Connection"}
        lines = "\r\n".join(map(": ".join, headers.items()))
        breaks = lines.count("\n")
        if breaks != max(len(headers) - 1, 0) or lines.count("\r") != breaks:
            raise ValueError("a header of the answer holds a line break")
        ten = self._conn.http10
        if ten:
            connection = "Connection: keep-alive\r\n" if self.keep_alive else ""
        else:
            connection = "" if self.keep_alive else "Connection: close\r\n"
        return (
            f"HTTP/1.{0 if ten else 1} {status} {_REASONS.get(status, '')}\r\n"
            f"Content-Type: {content_type}\r\n{lines}{_CRLF if lines else ''}{REQUEST_ID}: {self._call.request_id}\r\n"
            f"{framing}Date: {rfc822_formatted_time()}\r\n{_SERVER}{connection}\r\n"
        ).encode()

    def answer(self, status: int, headers: Mapping[str, str], body: bytes, content_type: str) -> None:
        transport = self._conn.transport
        head = self._head(status, headers, content_type, f"Content-Length: {len(body)}\r\n")
        if transport is not None:
            transport.write(head + body)

    async def open(self, headers: Mapping[str, str]) -> Stream:
        """A 200 `text/event-stream`: chunked on HTTP/1.1; on HTTP/1.0 the bytes until the close."""
        chunked = not self._conn.http10
        if not chunked:
            self.keep_alive = False
        head = self._head(200, headers, EVENT_STREAM, "Transfer-Encoding: chunked\r\n" if chunked else "")
        self.stream = LeanStream(self._conn, chunked)
        await self.stream.send(head)
        return self.stream


class LeanStream:
    """A streamed answer; each write waits while the client reads slower than lmwatch writes."""

    def __init__(self, conn: LeanConnection, chunked: bool) -> None:
        self._conn = conn
        self._chunked = chunked
        self.ended = False

    async def send(self, data: bytes) -> None:
        transport = self._conn.transport
        if transport is None or transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        transport.write(data)
        writable = self._conn.writable
        if writable is not None:
            await writable

    async def write(self, data: bytes) -> None:
        if not data:
            return
        await self.send(b"%x\r\n%b\r\n" % (len(data), data) if self._chunked else data)

    async def write_eof(self, data: bytes = b"") -> None:
        if self.ended:
            return
        self.ended = True
        if self._chunked:
            await self.send((b"%x\r\n%b\r\n" % (len(data), data) if data else b"") + b"0\r\n\r\n")
        elif data:
            await self.send(data)
