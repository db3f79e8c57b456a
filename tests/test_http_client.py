"""The hot-path HTTP client against scripted raw servers: every framing, keep-alive reuse, a stale
pooled connection, cut and garbled answers, and the idle timeout."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import resource
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest

from lmwatch.http_client import (
    AnswerTooLarge,
    ConnectError,
    ConnectionLost,
    ConnectTimeout,
    LocalResources,
    Pool,
    ProtocolError,
    origin,
)

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head + await reader.readexactly(length)


@asynccontextmanager
async def server(script: Script) -> AsyncIterator[tuple[str, list[int]]]:
    """A raw server running `script` per connection; yields its URL and a connection counter."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        try:
            await script(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1", connections
    finally:
        srv.close()


def answers(*responses: bytes, keep_open: bool = True) -> Script:
    async def script(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for response in responses:
            await read_request(reader)
            for piece in (response[i : i + 7] for i in range(0, len(response), 7)):  # arrive in bits
                writer.write(piece)
                await writer.drain()
        if keep_open:
            await reader.read()

    return script


async def post(pool: Pool, url: str, idle: float = 5.0) -> tuple[int, bytes]:
    resp = await pool.post(url, "/chat/completions", b"{}", {"Content-Type": "application/json"}, 5.0, idle)
    try:
        return resp.status, await resp.read()
    finally:
        resp.close()


def test_origin() -> None:
    assert origin("http://h:1234/v1").host_header == "h:1234"
    assert origin("https://api.example.com/v1/").prefix == "/v1"
    assert origin("https://api.example.com").host_header == "api.example.com"
    assert origin("http://[::1]:8080").host_header == "[::1]:8080"
    with pytest.raises(ValueError):
        origin("ftp://h")


async def test_length_chunked_and_interim_answers_on_one_kept_connection() -> None:
    length = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n"
    )
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}"
    empty = b"HTTP/1.1 204 No Content\r\n\r\n"
    async with server(answers(length, chunked, interim, empty)) as (url, connections):
        pool = Pool()
        assert await post(pool, url) == (200, b"hello")
        assert await post(pool, url) == (200, b"hello world")
        assert await post(pool, url) == (404, b"{}")
        assert await post(pool, url) == (204, b"")
        assert len(connections) == 1
        pool.close()


async def test_base_urls_of_one_server_share_its_kept_connections() -> None:
    """The pool keeps connections per scheme, host and port: a path prefix or credentials in the URL
    are per request, so backends behind one server (or one poller and the proxy) reuse a connection."""
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    async with server(answers(ok, ok, ok)) as (url, connections):
        root = url.removesuffix("/v1")
        pool = Pool()
        for base in (url, root, root.replace("http://", "http://user:pw@")):
            assert await post(pool, base) == (200, b"ok")
        assert len(connections) == 1
        pool.close()


async def test_a_closed_answer_is_freed_at_once_not_by_the_cycle_collector() -> None:
    """llhttp's parser holds the answer's callbacks: closing the answer lets go of it, so the answers
    of proxied requests and polls never pile up for the garbage collector."""
    async with server(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) as (url, _):
        pool = Pool()
        resp = await pool.post(url, "/chat/completions", b"{}", {}, 5.0, 5.0)
        assert await resp.read() == b"{}"
        gone = weakref.ref(resp)
        gc.disable()
        try:
            resp.close()
            del resp
            assert gone() is None
        finally:
            gc.enable()
        pool.close()


async def test_headers_folded_repeated_interim_and_trailers() -> None:
    """Obsolete line folding is unfolded, a repeated header is one comma list, an interim answer's
    headers and a chunked body's trailers are not the answer's headers."""
    hints = b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
    answer = (
        b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n  two\r\nVary: a\r\nVary: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'2;name="quoted;value"\r\nok\r\n0\r\nX-Trailer: late\r\n\r\n'
    )
    async with server(answers(hints + answer, hints + answer)) as (url, connections):
        pool = Pool()
        for _ in range(2):
            resp = await pool.post(url, "/chat/completions", b"{}", {}, 5.0, 5.0)
            assert (resp.status, await resp.read()) == (200, b"ok")
            assert resp.headers["x-folded"].split() == ["one", "two"]
            assert resp.headers["vary"] == "a, b"
            assert "link" not in resp.headers and "x-trailer" not in resp.headers
        assert len(connections) == 1  # both answers were complete: the connection was kept
        pool.close()


async def test_oversized_headers_and_bytes_after_the_answer() -> None:
    huge = b"HTTP/1.1 200 OK\r\nX-Big: " + b"a" * 70_000 + b"\r\nContent-Length: 2\r\n\r\nok"
    async with server(answers(huge)) as (url, _):
        with pytest.raises(ProtocolError, match="too large"):
            await post(Pool(), url)
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nno"
    async with server(answers(extra, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (url, connections):
        pool = Pool()
        assert await post(pool, url) == (200, b"ok")
        assert await post(pool, url) == (200, b"ok")
        assert len(connections) == 2  # an answer nobody asked for: that connection was not reused
        pool.close()


async def test_answer_until_close_is_not_reused() -> None:
    async with server(answers(b"HTTP/1.0 200 OK\r\n\r\nall of it", keep_open=False)) as (url, connections):
        pool = Pool()
        assert await post(pool, url) == (200, b"all of it")
        assert await post(pool, url) == (200, b"all of it")
        assert len(connections) == 2


async def test_stale_pooled_connection_is_retried_once_on_a_fresh_one() -> None:
    async def close_after_one(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await read_request(reader)  # the next request on this connection gets no answer: closed

    async with server(close_after_one) as (url, connections):
        pool = Pool()
        assert await post(pool, url) == (200, b"ok")
        assert await post(pool, url) == (200, b"ok")
        assert len(connections) == 2


async def test_cut_and_garbled_answers() -> None:
    async with server(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal", keep_open=False)) as (url, _):
        with pytest.raises(ConnectionLost) as caught:
            await post(Pool(), url)
        assert not caught.value.before_answer
    async with server(answers(b"SSH-2.0-OpenSSH\r\n\r\n")) as (url, _):
        with pytest.raises(ProtocolError):
            await post(Pool(), url)
    async with server(answers(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")) as (url, _):
        with pytest.raises(ProtocolError):
            await post(Pool(), url)


async def test_silence_hits_the_idle_timeout_and_cuts_the_connection() -> None:
    async with server(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhal")) as (url, connections):
        pool = Pool()
        with pytest.raises(TimeoutError):
            await post(pool, url, idle=0.2)
        with pytest.raises(TimeoutError):
            await post(pool, url, idle=0.2)
        assert len(connections) == 2  # the unfinished connection was not reused


async def test_connect_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    pool = Pool()
    async with server(answers()) as (url, _):
        pass  # closed: nothing listens on that port any more
    with pytest.raises(ConnectError, match="cannot connect"):
        await post(pool, url)

    async def never_connects(*args: object, **kwargs: object) -> None:
        await asyncio.sleep(3600)

    monkeypatch.setattr(asyncio.get_running_loop(), "create_connection", never_connects)
    with pytest.raises(ConnectTimeout, match=r"within 0\.05 s"):
        await pool.post("http://127.0.0.1:9/v1", "/x", b"", {}, 0.05, 1.0)


async def test_credentials_in_the_url_are_sent_as_basic_auth_unless_a_token_is() -> None:
    seen: list[bytes] = []

    async def record(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            seen.append(await read_request(reader))
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with server(record) as (url, _):
        authed = url.replace("http://", "http://user:p%40ss@")
        pool = Pool()
        assert await post(pool, authed) == (200, b"ok")
        resp = await pool.post(authed, "/x", b"", {"Authorization": "Bearer t0ken"}, 5.0, 5.0)
        resp.close()
        assert await post(pool, url) == (200, b"ok")
    assert b"\r\nAuthorization: Basic dXNlcjpwQHNz\r\n" in seen[0]  # user:p@ss
    assert seen[1].count(b"Authorization") == 1 and b"Authorization: Bearer t0ken" in seen[1]
    assert b"Authorization" not in seen[2]
    assert "p%40ss" not in repr(origin(authed)) and "dXNlcjpwQHNz" not in repr(origin(authed))


async def test_header_injection_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        await Pool().post("http://127.0.0.1:9/v1", "/x", b"", {"Authorization": "Bearer a\r\nX: y"}, 1.0, 1.0)


async def test_an_idle_connection_is_closed_when_its_keepalive_expires() -> None:
    closed = asyncio.Event()

    async def one_answer_then_wait(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        assert await reader.read() == b""  # lmwatch closed the kept connection
        closed.set()

    async with server(one_answer_then_wait) as (url, _):
        pool = Pool(keepalive=0.2)
        assert await post(pool, url) == (200, b"ok")
        await asyncio.wait_for(closed.wait(), 5)  # not at the next request: when its time was up
        pool.close()


async def test_a_buffered_answer_over_the_limit_is_cut() -> None:
    big = b"HTTP/1.1 200 OK\r\nContent-Length: 3000000\r\n\r\n" + b"x" * 3_000_000
    async with server(answers(big)) as (url, _):
        pool = Pool()
        resp = await pool.post(url, "/chat/completions", b"{}", {}, 5.0, 5.0)
        with pytest.raises(AnswerTooLarge, match="over 1000000 bytes"):
            await resp.read(limit=1_000_000)
        pool.close()


async def test_running_out_of_descriptors_is_a_local_failure_not_a_backend_one() -> None:
    async with server(answers(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) as (url, _):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        held: list[int] = []
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 8, hard))
            with contextlib.suppress(OSError):
                while True:
                    held.append(os.open(os.devnull, os.O_RDONLY))
            with pytest.raises(LocalResources, match="cannot open a connection"):
                await Pool().post(url, "/chat/completions", b"{}", {}, 5.0, 5.0)
        finally:
            for fd in held:
                os.close(fd)
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
