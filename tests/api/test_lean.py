"""The lean `/v1` path (lmwatch/api/lean.py) on raw sockets: framing, pipelining, the hand-off to
aiohttp, keep-alive rules, 413s with their bodies drained, streams; and the openai SDK through it.
Raw sockets, since HTTP clients neither pipeline nor send heads byte by byte."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from lmwatch.api.connections import ConnectionServer
from lmwatch.api.lean import WORKER
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, chat, fleet

MODEL = "qwen2.5-coder-7b-instruct"
EMBED = "text-embedding-nomic-embed-text-v1.5"
FLEET = SimSettings(models=[SimModel(id=MODEL), SimModel(id=EMBED, type="embeddings")])
SHORT = {"max_body_bytes": 2000, "keepalive_timeout": 0.5, "header_timeout": 5, "body_timeout": 5}


@pytest.fixture
async def one() -> AsyncIterator[Fleet]:
    async with fleet({"studio": FLEET}, server=SHORT) as f:
        yield f


def post(path: str = "/v1/chat/completions", body: Any = None, *, version: str = "1.1", **headers: str) -> bytes:
    raw = json.dumps(chat(model=MODEL) if body is None else body).encode()
    lines = [f"POST {path} HTTP/{version}", "Host: x", "Content-Type: application/json", f"Content-Length: {len(raw)}"]
    lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + raw


HEALTHZ = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"


class Client:
    """One client connection; reads answers framed by Content-Length (or chunked, or to the close)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def answer(self) -> tuple[str, dict[str, str], bytes]:
        """The status line, the headers (lower-cased names) and the body of the next answer."""
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)).decode()
        if head.startswith("HTTP/1.1 100 "):  # the interim answer to `Expect: 100-continue`
            return await self.answer()
        status, *lines = head.strip().split("\r\n")
        headers = {k.lower(): v for k, _, v in (line.partition(": ") for line in lines)}
        if "content-length" in headers:
            body = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int((await self.reader.readuntil(b"\r\n")).strip(), 16):
                body += (await self.reader.readexactly(size + 2))[:-2]
            await self.reader.readexactly(2)
        else:
            body = await asyncio.wait_for(self.reader.read(), 10)
        return status, headers, body

    async def closed(self) -> bool:
        """True once lmwatch closed the connection (nothing more came)."""
        return await asyncio.wait_for(self.reader.read(), 10) == b""

    def close(self) -> None:
        self.writer.close()


async def connect(f: Fleet) -> Client:
    assert f.daemon.port is not None
    return Client(*await asyncio.open_connection("127.0.0.1", f.daemon.port))


def lean_open(f: Fleet) -> int:
    """Connections the lean path holds now (a handed-off one is aiohttp's)."""
    server = f.daemon._runner.server if f.daemon._runner is not None else None
    assert isinstance(server, ConnectionServer)
    return len(server.lean_connections)


async def test_pipelined_requests_are_answered_in_order_and_a_hand_off_is_for_good(one: Fleet) -> None:
    client = await connect(one)
    await client.send(post(X_Request_ID="first") + post(X_Request_ID="second"))  # two in one write
    for rid in ("first", "second"):
        status, headers, body = await client.answer()
        assert status == "HTTP/1.1 200 OK"
        assert (headers["x-request-id"], headers["x-lmwatch-backend"]) == (rid, "studio")
        assert json.loads(body)["model"] == MODEL
        assert headers["server"].startswith("Python/") and headers["date"].endswith(" GMT")
    assert lean_open(one) == 1
    # a lean one, then one for aiohttp, then one the lean path would serve: all on aiohttp from the second
    await client.send(post(X_Request_ID="third") + HEALTHZ + post(X_Request_ID="fourth"))
    status, headers, _ = await client.answer()
    assert (status, headers["x-request-id"]) == ("HTTP/1.1 200 OK", "third")
    status, _, body = await client.answer()
    assert (status, json.loads(body)) == ("HTTP/1.1 200 OK", {"status": "ok"})
    status, headers, _ = await client.answer()
    assert (status, headers["x-request-id"]) == ("HTTP/1.1 200 OK", "fourth")
    assert lean_open(one) == 0  # the connection is open, and aiohttp's
    client.close()
    assert one.metric("lmwatch_requests_total", backend="studio", code="200") == 4


def workers() -> list[asyncio.Task[Any]]:
    """The lean connections' serving tasks (one per connection that has served a request)."""
    return [t for t in asyncio.all_tasks() if t.get_name() == WORKER]


async def test_one_task_serves_a_connections_requests_and_none_outlives_a_hand_off(one: Fleet) -> None:
    client = await connect(one)
    for rid in ("a", "b", "c"):  # one after another: the idle worker is woken for each
        await client.send(post(X_Request_ID=rid))
        status, headers, _ = await client.answer()
        assert (status, headers["x-request-id"]) == ("HTTP/1.1 200 OK", rid)
    assert len(workers()) == 1
    await client.send(HEALTHZ)  # aiohttp's from here on: the idle worker is cancelled
    status, _, _ = await client.answer()
    assert status == "HTTP/1.1 200 OK"
    assert workers() == []
    client.close()


async def test_a_head_and_body_sent_byte_by_byte(one: Fleet) -> None:
    client = await connect(one)
    for byte in post(X_Request_ID="slow"):
        await client.send(bytes([byte]))
    status, headers, _ = await client.answer()
    assert (status, headers["x-request-id"]) == ("HTTP/1.1 200 OK", "slow")
    await client.send(b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n")  # a first line that is not lean: aiohttp's
    status, _, body = await client.answer()
    assert status == "HTTP/1.1 200 OK" and "backends" in json.loads(body)
    client.close()


@pytest.mark.parametrize(
    ("path", "shape"), [("/v1/chat/completions", "openai"), ("/v1/messages", "anthropic")], ids=["openai", "anthropic"]
)
async def test_a_body_over_the_limit_is_refused_413_and_drained(one: Fleet, path: str, shape: str) -> None:
    client = await connect(one)
    big = post(path, {"model": MODEL, "messages": [{"role": "user", "content": "x" * 5000}]})
    await client.send(big[:3000])  # the head and part of the body: refused by its length
    status, headers, body = await client.answer()
    assert status == "HTTP/1.1 413 Request Entity Too Large"
    error = json.loads(body)
    if shape == "anthropic":
        assert (error["type"], error["error"]["type"]) == ("error", "request_too_large")
    else:
        assert error["error"]["code"] == "request_too_large"
    assert "server.max_body_bytes" in body.decode() and error["request_id"] == headers["x-request-id"]
    await client.send(big[3000:] + post())  # the rest is dropped, then the next request is served
    status, headers, _ = await client.answer()
    assert (status, headers["x-lmwatch-backend"]) == ("HTTP/1.1 200 OK", "studio")
    client.close()


async def test_a_head_trickled_in_is_still_due_within_the_header_timeout() -> None:
    async with fleet({"studio": FLEET}, server={**SHORT, "header_timeout": 0.5}) as f:
        client = await connect(f)
        data = post()
        sent = 0

        async def trickle() -> None:  # a byte every 0.1 s: the head would take minutes
            nonlocal sent
            for byte in data:
                await client.send(bytes([byte]))
                sent += 1
                await asyncio.sleep(0.1)

        trickling = asyncio.create_task(trickle())
        status, _, body = await client.answer()
        trickling.cancel()
        assert status == "HTTP/1.1 408 Request Timeout" and json.loads(body)["error"]["code"] == "request_timeout"
        assert sent < 20  # due half a second after the first byte, not after the last
        assert f.metric("lmwatch_client_connection_errors_total", reason="header_timeout") == 1


async def test_idle_connections_close_at_the_keepalive_timeout(one: Fleet) -> None:
    client = await connect(one)
    assert await client.closed()  # no request at all
    client = await connect(one)
    await client.send(post())
    assert (await client.answer())[0] == "HTTP/1.1 200 OK"
    assert await client.closed()  # idle after its answer
    assert lean_open(one) == 0


async def test_connection_close_and_http_1_0(one: Fleet) -> None:
    client = await connect(one)
    await client.send(post(Connection="close"))
    status, headers, _ = await client.answer()
    assert (status, headers["connection"]) == ("HTTP/1.1 200 OK", "close")
    assert await client.closed()

    client = await connect(one)
    await client.send(post(version="1.0"))  # HTTP/1.0 closes unless asked to keep alive
    status, headers, _ = await client.answer()
    assert status == "HTTP/1.0 200 OK" and "connection" not in headers
    assert await client.closed()

    client = await connect(one)
    for _ in range(2):
        await client.send(post(version="1.0", Connection="keep-alive"))
        status, headers, _ = await client.answer()
        assert (status, headers["connection"]) == ("HTTP/1.0 200 OK", "keep-alive")
    client.close()


async def test_streams_are_chunked_on_http_1_1_and_end_with_the_close_on_http_1_0(one: Fleet) -> None:
    client = await connect(one)
    for _ in range(2):  # the connection stays usable after a stream
        await client.send(post(body=chat(model=MODEL, stream=True)))
        status, headers, body = await client.answer()
        assert (status, headers["content-type"], headers["transfer-encoding"]) == (
            "HTTP/1.1 200 OK",
            "text/event-stream",
            "chunked",
        )
        assert body.endswith(b"data: [DONE]\n\n") and headers["x-lmwatch-backend"] == "studio"
    client.close()
    client = await connect(one)
    await client.send(post(body=chat(model=MODEL, stream=True), version="1.0"))
    status, headers, body = await client.answer()
    assert status == "HTTP/1.0 200 OK" and "transfer-encoding" not in headers
    assert body.endswith(b"data: [DONE]\n\n")


async def test_requests_the_lean_path_does_not_serve_go_to_aiohttp(one: Fleet) -> None:
    """Each on a fresh connection: aiohttp's answer, and the connection is aiohttp's after it."""
    raw = json.dumps(chat(model=MODEL)).encode()
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(raw), raw)
    cases = [
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked, "200"),
        (post(Expect="100-continue"), "200"),
        (b"POST /v1/chat/completions/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "404"),
        (b"POST /v1/models HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "405"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n\r\n", "400"),  # no body at all
    ]
    for data, expected in cases:
        client = await connect(one)
        await client.send(data)
        status, _, _ = await client.answer()
        assert status.split(" ")[1] == expected, data
        assert lean_open(one) == 0, data
        client.close()


async def test_the_openai_sdk_through_the_lean_path(one: Fleet) -> None:
    sdk = one.client()
    completion = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert completion.model == MODEL and completion.usage is not None
    assert lean_open(one) == 1  # the SDK's kept-alive connection
    stream = await sdk.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text
    embedding = await sdk.embeddings.create(model=EMBED, input=["a", "b"])
    assert len(embedding.data) == 2


async def test_lean_v1_off_leaves_every_connection_to_aiohttp() -> None:
    async with fleet({"studio": FLEET}, server={**SHORT, "lean_v1": False}) as f:
        client = await connect(f)
        await client.send(post())
        assert (await client.answer())[0] == "HTTP/1.1 200 OK"
        assert lean_open(f) == 0
        client.close()
