"""A lean HTTP/1.1 client for the request hot path and the watcher's polls: pooled keep-alive
connections to backends and cloud providers, answers parsed as bytes arrive (by llhttp, through
httptools), bodies handed over chunk by chunk.

Why not aiohttp's client here: on the proxy path it cost about as much CPU as everything else
lmwatch does per request, and the router needs little of it (a request with a known-length body,
and an answer's framing, which llhttp does). TLS comes from the event loop.

Timeouts: connecting is bounded by `connect_timeout`; after that only silence is bounded
(`idle_timeout` before the answer starts and between body reads), never the total. Closing an
unfinished response aborts its connection, which is how a backend learns the client went away.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import errno
import functools
import ssl
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast
from urllib.parse import unquote, urlsplit

import httptools

MAX_HEAD_BYTES = 64 * 1024
PAUSE_BYTES = 1024 * 1024
"""Body bytes buffered before reading from the backend pauses (a slow client slows the backend)."""


class UpstreamError(Exception):
    """The backend could not be reached or answered in a way HTTP does not allow."""


class ConnectError(UpstreamError):
    """No connection (refused, unreachable, DNS, TLS handshake)."""


class ConnectTimeout(UpstreamError, TimeoutError):
    """No connection within the connect timeout."""


class ConnectionLost(UpstreamError):
    """The connection closed before the answer was complete."""

    def __init__(self, message: str, before_answer: bool) -> None:
        super().__init__(message)
        self.before_answer = before_answer


class ProtocolError(UpstreamError):
    """Not an HTTP/1.x answer."""


class AnswerTooLarge(UpstreamError):
    """A buffered (non-streamed) answer grew past the cap: lmwatch stopped reading it."""


class ShuttingDown(UpstreamError):
    """lmwatch is stopping and `server.shutdown_grace` has passed: answers still coming are cut."""


class LocalResources(ConnectError):
    """No connection because this host ran out of something (file descriptors, buffers, memory):
    not the backend's fault, so never counted against it."""


LOCAL_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(frozen=True)
class Origin:
    """Where a base URL points: the pool key, the Host header and the path prefix."""

    scheme: str
    host: str
    port: int
    prefix: str
    basic_auth: str | None = field(default=None, repr=False)
    """`Basic ...` from credentials in the URL (`http://user:pass@host`): polls send them, so must we."""

    @functools.cached_property
    def pool_key(self) -> str:
        """What idle connections are kept under: a string hashes in C (this frozen dataclass's hash
        is a Python call, two per request). The path prefix and credentials are per request."""
        return f"{self.scheme}://{self.host_header}"

    @functools.cached_property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


@functools.lru_cache(maxsize=4096)
def origin(base_url: str) -> Origin:
    """Memoised: every poll and proxied request asks, and a miss (urlsplit) costs about 10 us. The
    cache holds more origins than any fleet has backends: at 256, 300 backends polled in turn
    missed every time."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an http(s) URL: {base_url}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    basic_auth = None
    if parts.username is not None or parts.password is not None:
        credentials = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}".encode("latin-1")
        basic_auth = "Basic " + base64.b64encode(credentials).decode("ascii")
    return Origin(parts.scheme, parts.hostname, port, parts.path.rstrip("/"), basic_auth)


# --- one connection ------------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive connection; parses the answer to the request in flight."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        """Kept: `asyncio.get_running_loop()` makes a getpid system call each time (fork safety)."""
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._response: Response | None = None
        self._paused = False
        self._expired: Callable[[], None] | None = None
        self._deadline = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self.idle_expired: Callable[[], None] = self.abort
        """What its pool does when it has been idle for the keep-alive time (set once, by the pool)."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport: asyncio's own or uvloop's (which is not an asyncio.Transport subclass).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._response is None:  # bytes nobody asked for: the connection is not trustworthy
            self.abort()
            return
        self._response._feed(data)
        if not self._paused and self._response._buffered > PAUSE_BYTES and self.transport is not None:
            self.transport.pause_reading()
            self._paused = True

    def eof_received(self) -> bool:
        self.closed = True
        if self._response is not None:
            self._response._eof()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._stop_timer()
        if self._response is not None:
            self._response._eof()

    def drained(self) -> None:
        if self._paused and self.transport is not None and not self.closed:
            self.transport.resume_reading()
            self._paused = False

    def abort(self) -> None:
        self.closed = True
        self._stop_timer()
        if self.transport is not None:
            self.transport.abort()

    def expire_at(self, at: float, expired: Callable[[], None]) -> None:
        """Call `expired` at loop time `at` unless `keep` or another deadline comes first (an answer's
        silence, an idle connection's keep-alive). One timer per connection, moved only for an
        earlier deadline and re-checked when it fires, so a request costs no timer of its own."""
        self._deadline, self._expired = at, expired
        if self._timer is None or at < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = at
            self._timer = self.loop.call_at(at, self._due)

    def keep(self) -> None:
        """No deadline now (the timer stays armed; it finds nothing to do)."""
        self._expired = None

    def _due(self) -> None:
        self._timer = None
        if self._expired is None:
            return
        loop = self.loop
        if loop.time() < self._deadline:
            self._timer_at = self._deadline
            self._timer = loop.call_at(self._deadline, self._due)
            return
        expired, self._expired = self._expired, None
        expired()

    def _stop_timer(self) -> None:
        self._expired = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start(self, response: Response, request: bytes) -> None:
        self._response = response
        assert self.transport is not None
        self.transport.write(request)

    def finish(self) -> None:
        self._response = None
        self.idle_since = time.monotonic()


# --- one answer ----------------------------------------------------------------------------------

_HEAD, _BODY, _DONE = range(3)


class Response:
    """The answer to one request; its body is read once, with `read()` or by iterating chunks.

    llhttp (through httptools, the parser uvicorn uses) does the framing: Content-Length, chunked
    with extensions and trailers, interim 1xx answers, obsolete line folding (which a client must
    accept), and the end of an answer framed by the connection's close. This class is its callbacks.
    """

    def __init__(self, pool: Pool, key: Origin, conn: _Connection, idle_timeout: float) -> None:
        self.status = 0
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._headers: dict[str, str] | None = None
        self._pool = pool
        self._key = key
        self._conn = conn
        self._idle = idle_timeout
        self._state = _HEAD
        self._parser: httptools.HttpResponseParser | None = httptools.HttpResponseParser(self)
        self._parser.set_dangerous_leniencies(lenient_headers=True)  # obsolete line folding (RFC 9112 5.2)
        self._head_bytes = 0
        """Bytes read while the head is incomplete (a head that never ends is cut at the limit)."""
        self._header_bytes = 0
        self._interim = False
        self._until_close = False
        self._keep_alive = True
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._waiter: asyncio.Future[None] | None = None
        self._error: UpstreamError | None = None
        self._got_bytes = False
        self._released = False

    # --- reading (the caller) --------------------------------------------------------------------

    @property
    def headers(self) -> dict[str, str]:
        """Names in lower case; a repeated header is one comma-separated list (RFC 9110 5.3).
        Decoded when first read: most proxied answers never are."""
        if self._headers is None:
            headers: dict[str, str] = {}
            for name, value in self._raw_headers:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1").strip()
                seen = headers.get(key)
                headers[key] = text if seen is None else f"{seen}, {text}"
            self._headers = headers
        return self._headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; the connection goes back to the pool at the end."""
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._buffered < PAUSE_BYTES // 4:
                    self._conn.drained()
                yield chunk
                continue
            if self._ended():
                return
            await self._wait()

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; AnswerTooLarge (and the connection cut) once it passes `limit` bytes.
        Not through `chunks()`: an async generator costs more than a small answer's whole read."""
        parts: list[bytes] = []
        size = 0
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                size += len(chunk)
                if limit is not None and size > limit:
                    self.close()
                    raise AnswerTooLarge(f"the answer is over {limit} bytes (routing.max_answer_bytes)")
                parts.append(chunk)
            self._buffered = 0
            self._conn.drained()
            if self._ended():
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._wait()

    def _ended(self) -> bool:
        """True once the body is all read (the connection goes back to the pool); raises the
        connection's error when it failed first."""
        if self._state == _DONE:
            self.close()
            return True
        if self._error is not None:
            raise self._error
        return False

    def close(self) -> None:
        """Done with this answer: reuse the connection if it was read to the end, else cut it."""
        if not self._released:
            self._released = True
            self._parser = None  # it holds this answer's callbacks: no cycle left for the collector
            self._pool._active.discard(self)
            if self._state == _DONE and self._keep_alive and not self._conn.closed:
                self._conn.finish()
                self._pool._put(self._key, self._conn)
            else:
                self._conn.abort()

    async def _wait(self) -> None:
        """Until the protocol has news, or TimeoutError after `idle_timeout` seconds of silence."""
        loop = self._conn.loop
        waiter = self._waiter = loop.create_future()
        self._conn.expire_at(loop.time() + self._idle, self._silent)
        try:
            await waiter
        finally:
            self._conn.keep()
            self._waiter = None

    def _silent(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(TimeoutError())

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # --- bytes in (the protocol) -----------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        self._got_bytes = True
        if self._state == _DONE:  # bytes after the answer: the connection is not reused
            self._keep_alive = False
            return
        if self._state == _HEAD:
            self._head_bytes += len(data)
        if self._parser is None:  # closed: its connection is going
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._state == _DONE:  # garbage after a complete answer
                self._keep_alive = False
            elif self._state == _HEAD and not self.status:
                self._fail(f"not an HTTP answer ({exc})")
            else:
                self._fail(f"a malformed answer ({exc})")
            return
        if self._state == _HEAD and self._head_bytes > MAX_HEAD_BYTES:
            self._fail("the answer's headers are too large")

    def _eof(self) -> None:
        if self._state == _BODY and self._until_close:
            self._state = _DONE
        elif self._state != _DONE and self._error is None:
            before = not self._got_bytes
            self._error = ConnectionLost(
                "the backend closed the connection" + (" before answering" if before else " mid-answer"), before
            )
        self._keep_alive = False
        self._wake()

    def _shut(self, message: str) -> None:
        if self._error is None:
            self._error = ShuttingDown(message)
        self._keep_alive = False
        self._conn.abort()
        self._wake()

    def _fail(self, message: str) -> None:
        self._error = ProtocolError(message)
        self._keep_alive = False
        self._conn.abort()
        self._wake()

    # --- llhttp's callbacks ----------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._state == _DONE:  # a second answer to one request: ignored, the connection not reused
            self._keep_alive = False
        else:  # an interim answer's headers are not the answer's
            self._raw_headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._state == _HEAD:  # not a trailer (after a chunked body), nor past the answer
            self._header_bytes += len(name) + len(value)
            self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        if self._state != _HEAD:
            return
        if self._header_bytes > MAX_HEAD_BYTES:  # they came in one read: too large all the same
            self._fail("the answer's headers are too large")
            return
        parser = self._parser
        assert parser is not None  # llhttp calls back from `feed_data` only
        status = parser.get_status_code()
        self._interim = 100 <= status < 200
        if self._interim:  # 100 Continue, 103 Early Hints...: the real answer follows
            return
        self.status = status
        chunked = length = False
        for name, value in self._raw_headers:
            lower = name.lower()
            if lower == b"transfer-encoding":
                chunked = chunked or b"chunked" in value.lower()
            elif lower == b"content-length":
                length = True
        self._until_close = status not in (204, 304) and not chunked and not length
        self._keep_alive = parser.should_keep_alive()
        self._state = _BODY
        self._wake()

    def on_body(self, body: bytes) -> None:
        if body and self._state == _BODY:
            self._chunks.append(body)
            self._buffered += len(body)
            waiter = self._waiter  # usually woken already, by the head in the same read: no call
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self._state == _BODY:
            self._state = _DONE
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)


# --- the pool ------------------------------------------------------------------------------------


class Pool:
    """Idle keep-alive connections per origin, newest first; dead and stale ones are dropped."""

    def __init__(self, keepalive: float = 30.0) -> None:
        self._keepalive = keepalive
        self._idle: dict[str, list[_Connection]] = {}
        """Idle connections by `Origin.pool_key`."""
        self._active: set[Response] = set()
        self._cut: str | None = None
        self._ssl: ssl.SSLContext | None = None

    async def post(
        self,
        base_url: str,
        path: str,
        body: bytes,
        headers: Mapping[str, str],
        connect_timeout: float,
        idle_timeout: float,
        method: str = "POST",
    ) -> Response:
        """Send a request (a POST unless `method` says otherwise); returns once the answer's status
        and headers are in."""
        if self._cut is not None:
            raise ShuttingDown(self._cut)
        key = origin(base_url)
        request = _request_bytes(method, key, path, body, headers)
        for _ in range(2):  # a reused connection the backend had just closed gets one fresh retry
            conn = self._idle_connection(key)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(key, connect_timeout)
            response = Response(self, key, conn, idle_timeout)
            self._active.add(response)
            conn.start(response, request)
            try:
                while response._state == _HEAD:  # until the status and headers are in
                    if response._error is not None:
                        raise response._error
                    await response._wait()
            except ConnectionLost as exc:
                response.close()
                if reused and exc.before_answer:
                    continue
                raise
            except BaseException:  # timeout, cancellation (the client left), protocol error
                response.close()
                raise
            return response
        raise ConnectionLost("the backend closed the connection before answering", True)

    def cut(self, message: str) -> None:
        """End every answer still being read with ShuttingDown (a stream's relay then sends its
        client an error event and a proper end), and refuse new requests."""
        self._cut = message
        for response in list(self._active):
            response._shut(message)

    def _put(self, key: Origin, conn: _Connection) -> None:
        """Keep `conn` for reuse until its keep-alive time is up, then close it (an idle socket held
        open costs a descriptor here and a slot on the backend)."""
        self._idle.setdefault(key.pool_key, []).append(conn)
        conn.expire_at(conn.loop.time() + self._keepalive, conn.idle_expired)

    def _expire(self, key: Origin, conn: _Connection) -> None:
        idle = self._idle.get(key.pool_key)
        if idle is not None and conn in idle:
            idle.remove(conn)
            if not idle:
                del self._idle[key.pool_key]
        conn.abort()

    def _idle_connection(self, key: Origin) -> _Connection | None:
        """The newest idle connection to `key` that is still good, if any (no await: most requests)."""
        idle = self._idle.get(key.pool_key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            conn.keep()
            if not conn.closed and now - conn.idle_since < self._keepalive:
                return conn
            conn.abort()
        return None

    async def _connect(self, key: Origin, connect_timeout: float) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = self._tls() if key.scheme == "https" else None
        try:
            async with asyncio.timeout(connect_timeout):
                _, conn = await loop.create_connection(
                    _Connection, key.host, key.port, ssl=tls, server_hostname=key.host if tls else None
                )
        except TimeoutError:
            raise ConnectTimeout(f"no connection to {key.host_header} within {connect_timeout:g} s") from None
        except OSError as exc:
            if exc.errno in LOCAL_ERRNOS:
                raise LocalResources(f"this host cannot open a connection: {exc.strerror or exc}") from None
            raise ConnectError(f"cannot connect to {key.host_header}: {exc.strerror or exc}") from None
        conn.idle_expired = functools.partial(self._expire, key, conn)
        return conn

    def _tls(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def close(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()


def _request_bytes(method: str, key: Origin, path: str, body: bytes, headers: Mapping[str, str]) -> bytes:
    lines = [f"{method} {key.prefix}{path} HTTP/1.1\r\nHost: {key.host_header}\r\nContent-Length: {len(body)}\r\n"]
    for name, value in headers.items():
        lines.append(f"{name}: {value}\r\n")
    if key.basic_auth and not any(name.lower() == "authorization" for name in headers):
        lines.append(f"Authorization: {key.basic_auth}\r\n")  # a configured bearer token takes the header instead
    head = "".join(lines)
    breaks = head.count("\n")
    if breaks != len(lines) + 2 or head.count("\r") != breaks:  # the first element holds three lines
        bad = next((n for n, v in headers.items() if "\r" in v or "\n" in v), "a header")
        raise ValueError(f"header {bad} has a line break")
    return (head + "\r\n").encode("latin-1") + body
