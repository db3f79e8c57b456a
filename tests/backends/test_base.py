"""Backends that answer badly: each case gets a clear reason and a registry state, never a crash.

The misbehaving server here is a real HTTP server on loopback that answers every model-list path
the same broken way, so flavour detection falls through all flavours and the final reason shows.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack

import pytest
from aiohttp import ClientSession, web

from lmwatch.backends.base import MAX_PROBE_BODY_BYTES
from lmwatch.config import parse_config
from lmwatch.daemon import Daemon, running_daemon
from lmwatch.failures import FailureReason
from lmwatch.registry import Health

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def garbage_json(request: web.Request) -> web.StreamResponse:
    return web.Response(text='{"data": [', content_type="application/json")


async def html_page(request: web.Request) -> web.StreamResponse:
    return web.Response(text="<html><body>Router login</body></html>", content_type="text/html")


async def lmstudio_error_body(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": f"Unexpected endpoint or method. (GET {request.path})"})


async def object_error_400(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "No models loaded.", "type": "invalid_request_error"}}, status=400)


TOKEN_MESSAGE = "An LM Studio API token is required"


async def unauthorized(request: web.Request) -> web.StreamResponse:
    return web.json_response(
        {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": TOKEN_MESSAGE}},
        status=401,
    )


async def forbidden(request: web.Request) -> web.StreamResponse:
    return web.json_response({"error": {"message": "Forbidden"}}, status=403)


async def deeply_nested(request: web.Request) -> web.StreamResponse:
    return web.Response(text='{"data": ' + "[" * 5000 + "]" * 5000 + "}", content_type="application/json")


async def huge_body(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    chunk = b" " * (1024 * 1024)
    for _ in range(MAX_PROBE_BODY_BYTES // len(chunk) + 2):
        await response.write(chunk)
    return response


async def slow_drip(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    for char in '{"data": []}':
        await response.write(char.encode())
        await asyncio.sleep(0.3)
    return response


async def wrong_shape(request: web.Request) -> web.StreamResponse:
    return web.json_response({"models": "all of them", "data": {"x": 1}})


CASES = [
    (garbage_json, FailureReason.BAD_RESPONSE, "not JSON"),
    (html_page, FailureReason.BAD_RESPONSE, "'<html><body>Router login</body></html>'"),
    (lmstudio_error_body, FailureReason.ERROR_BODY, "Unexpected endpoint or method. (GET /v1/models)"),
    (object_error_400, FailureReason.HTTP_STATUS, "HTTP 400: No models loaded."),
    (unauthorized, FailureReason.AUTH, "An LM Studio API token is required"),
    (forbidden, FailureReason.AUTH, "HTTP 403: Forbidden"),
    (deeply_nested, FailureReason.BAD_RESPONSE, "not JSON"),
    (huge_body, FailureReason.TOO_LARGE, "over"),
    (slow_drip, FailureReason.TIMEOUT, "within 1 s"),
    (wrong_shape, FailureReason.BAD_RESPONSE, "no `data` list"),
]


StartDaemon = Callable[[str], Awaitable[Daemon]]


@pytest.fixture
async def daemon_for() -> AsyncIterator[StartDaemon]:
    """Start a daemon (on port 0) watching one backend URL; its first poll round is done on return."""
    async with AsyncExitStack() as stack:

        async def start(url: str) -> Daemon:
            config = parse_config(
                f"""
server: {{port: 0}}
backends: [{{name: bad, url: "{url}", probe_timeout: 1, poll_interval: 60, retry_attempts: 1}}]
""",
                env={},
            )
            return await stack.enter_async_context(running_daemon(config))

        yield start


@pytest.mark.parametrize(("handler", "reason", "message"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_bad_backend_is_down_with_reason(
    handler: Handler, reason: FailureReason, message: str, daemon_for: StartDaemon
) -> None:
    runner, url = await serve(handler)
    try:
        daemon = await daemon_for(url)
        backend = daemon.registry.snapshot().backends["bad"]
        assert backend.health is Health.DOWN
        assert backend.last_error_reason is reason
        assert message in backend.last_error
        assert backend.probe_failures[reason] == 1
    finally:
        await runner.cleanup()


async def test_unreachable_backend_is_down_and_scrape_still_works(
    daemon_for: StartDaemon,
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    daemon = await daemon_for(f"http://127.0.0.1:{port}")
    backend = daemon.registry.snapshot().backends["bad"]
    assert backend.health is Health.DOWN and backend.last_error_reason is FailureReason.CONNECT
    async with ClientSession() as session, session.get(f"{daemon.url}/metrics") as resp:
        text = await resp.text()
    assert resp.status == 200
    assert 'lmwatch_backend_up{backend="bad"} 0.0' in text
    assert 'lmwatch_backend_probe_failures_total{backend="bad",reason="connect"} 1.0' in text


async def half_good_v0_list(request: web.Request) -> web.StreamResponse:
    if request.path != "/api/v0/models":
        return web.json_response({"error": f"Unexpected endpoint or method. (GET {request.path})"})
    entries = [{"id": "phi-3-mini", "type": "llm", "state": "loaded"}, {"type": "llm", "state": "loaded"}]
    return web.json_response({"object": "list", "data": entries})


async def test_an_unusable_model_entry_is_skipped_and_the_backend_degraded(daemon_for: StartDaemon) -> None:
    runner, url = await serve(half_good_v0_list)
    try:
        daemon = await daemon_for(url)
        backend = daemon.registry.snapshot().backends["bad"]
        assert backend.flavour == "lmstudio-v0"
        assert [m.id for m in backend.models] == ["phi-3-mini"]
        assert backend.health is Health.DEGRADED
        assert backend.health_reason == "/api/v0/models: skipped an entry with no `id`"
        async with ClientSession() as session, session.get(f"{daemon.url}/metrics") as resp:
            text = await resp.text()
        assert 'lmwatch_backend_up{backend="bad"} 1.0' in text  # degraded, but it answers: up
        assert 'lmwatch_backend_state{backend="bad",state="degraded"} 1.0' in text
    finally:
        await runner.cleanup()


async def test_a_redirect_is_not_followed(daemon_for: StartDaemon) -> None:
    """A backend answering 302 to an internal URL must not make lmwatch fetch it (and show its body)."""
    fetched: list[str] = []

    async def internal(request: web.Request) -> web.StreamResponse:
        fetched.append(request.path)
        return web.json_response({"data": [{"id": "internal-secret-page"}]})

    inner, inner_url = await serve(internal)

    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPFound(inner_url + request.path)

    runner, url = await serve(redirect)
    try:
        daemon = await daemon_for(url)
        backend = daemon.registry.snapshot().backends["bad"]
        assert backend.health is Health.DOWN and backend.last_error_reason is FailureReason.HTTP_STATUS
        assert "HTTP 302" in (backend.last_error or "") and fetched == []
    finally:
        await runner.cleanup()
        await inner.cleanup()


async def test_an_unchanged_model_list_is_not_parsed_again() -> None:
    """Same bytes: the models of the last poll, as they were; other bytes: parsed anew."""
    from lmwatch.backends import BackendClient, flavour
    from lmwatch.config import BackendConfig
    from lmwatch.http_client import Pool

    answer = {"object": "list", "data": [{"id": "qwen2.5-7b-instruct", "object": "model"}]}

    async def models(request: web.Request) -> web.StreamResponse:
        return web.json_response(answer)

    runner, url = await serve(models)
    try:
        pool = Pool()
        client = BackendClient(pool, BackendConfig(name="b", url=url, kind="openai"))
        openai = flavour("openai")
        first, _ = await openai.list_models(client)
        again, _ = await openai.list_models(client)
        assert again is first and [m.id for m in again] == ["qwen2.5-7b-instruct"]
        answer["data"].append({"id": "nomic-embed-text", "object": "model"})
        changed, _ = await openai.list_models(client)
        assert [m.id for m in changed] == ["qwen2.5-7b-instruct", "nomic-embed-text"]
        pool.close()
    finally:
        await runner.cleanup()
