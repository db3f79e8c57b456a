"""Client connections below the routes: malformed requests answered in JSON, slow clients timed out,
accept failures counted and logged once per state change. Raw sockets, since HTTP clients cannot
send what these tests send."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from lmwatch.daemon import Daemon
from tests.daemons import ADMIN_TOKEN, config_file, daemon_for, daemon_process, metric_value, write

CANARY = "sk-canary-header-0123456789"


@pytest.fixture
async def daemon(tmp_path: Path) -> AsyncIterator[Daemon]:
    path = config_file(tmp_path, "")
    short = "server: {port: 0, header_timeout: 0.3, body_timeout: 0.3, keepalive_timeout: 0.5}"
    write(path, path.read_text().replace("server: {port: 0, shutdown_grace: 10}", short))
    async with daemon_for(path) as running:
        yield running


async def exchange(daemon: Daemon, data: bytes) -> tuple[bytes, Any]:
    """Send `data` on a fresh connection; the status line and head, and the JSON body, once the
    server closed the connection."""
    assert daemon.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 10)  # until lmwatch closes the connection
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return head, json.loads(body)


async def metrics(daemon: Daemon) -> str:
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/metrics") as resp:
        return await resp.text()


@pytest.mark.parametrize(
    "data",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n",
        b"GET /admin/backends HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + CANARY.encode() + b"\x01\r\n\r\n",
        b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["bad-content-length", "control-char-in-auth-header", "header-too-long", "tls-hello", "bad-chunk"],
)
async def test_a_request_that_cannot_be_parsed_answers_openai_json(daemon: Daemon, data: bytes) -> None:
    head, body = await exchange(daemon, data)
    assert head.split(b" ")[1] == b"400", head
    assert b"content-type: application/json" in head.lower()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["type"], body["error"]["code"]) == ("invalid_request_error", "malformed_request")
    assert CANARY not in json.dumps(body)  # the parser's message quotes the header: never repeated
    assert (
        metric_value(await metrics(daemon), "lmwatch_client_connection_errors_total", [("reason", "malformed_request")])
        == 1
    )


async def test_a_half_sent_head_is_answered_408_and_closed(daemon: Daemon) -> None:
    head, body = await exchange(daemon, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty")
    assert head.split(b" ")[1] == b"408", head
    assert body["error"]["code"] == "request_timeout"
    assert "server.header_timeout" in body["error"]["message"]
    assert (
        metric_value(await metrics(daemon), "lmwatch_client_connection_errors_total", [("reason", "header_timeout")])
        == 1
    )


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/admin/backends"])
async def test_a_half_sent_body_is_answered_408(daemon: Daemon, path: str) -> None:
    auth = f"Authorization: Bearer {ADMIN_TOKEN}\r\n".encode()
    start = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n".encode()
    head, body = await exchange(daemon, start + auth + b"\r\n" + b'{"model": "a", ')
    assert head.split(b" ")[1] == b"408", head
    assert (body["error"]["code"], body["error"]["type"]) == ("request_timeout", "invalid_request_error")
    assert "server.body_timeout" in body["error"]["message"]
    assert (
        metric_value(await metrics(daemon), "lmwatch_client_connection_errors_total", [("reason", "body_timeout")]) == 1
    )


async def test_idle_connections_close_at_the_keepalive_timeout_and_answered_ones_stay_usable(daemon: Daemon) -> None:
    assert daemon.port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    for _ in range(2):  # the head deadline is not armed by a complete request on a kept-alive connection
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200 ")
        await reader.readuntil(b"}")
    assert await asyncio.wait_for(reader.read(), 10) == b""  # closed, idle, without an answer
    writer.close()
    text = await metrics(daemon)
    assert metric_value(text, "lmwatch_client_connection_errors_total", [("reason", "header_timeout")]) == 0


async def test_accept_failures_are_counted_and_logged_once_per_state_change(tmp_path: Path) -> None:
    """The daemon's open-files limit is lowered to just above what it holds, then more clients
    connect than it can accept. On the stdlib loop (uvloop's libuv handles EMFILE itself)."""
    path = config_file(tmp_path, "")
    async with daemon_process(path, env={"LMWATCH_EVENT_LOOP": "asyncio"}) as proc:
        await proc.wait_listening()
        await proc.wait_ready()
        pid = proc.proc.pid
        held = len(os.listdir(f"/proc/{pid}/fd"))
        soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (held + 8, hard))
        host, port = proc.url.removeprefix("http://").split(":")
        clients = [socket.create_connection((host, int(port))) for _ in range(40)]
        await proc.read_log_until("cannot accept client connections")
        for client in clients:
            client.close()
        resource.prlimit(pid, resource.RLIMIT_NOFILE, (soft, hard))
        await proc.read_log_until("accepting client connections again")
        async with aiohttp.ClientSession() as http, http.get(proc.url + "/metrics") as resp:
            text = await resp.text()
        assert (metric_value(text, "lmwatch_client_connection_errors_total", [("reason", "accept")]) or 0) >= 1
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    log = "".join(proc.log)
    assert log.count("cannot accept client connections") == 1, log
    assert "socket.accept() out of system resource" not in log
