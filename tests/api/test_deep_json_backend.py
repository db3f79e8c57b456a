"""A backend answering JSON nested ~1,000 deep (Python's decoder raises RecursionError on it): a bad
answer like any other. The request fails over, the backend's breaker counts it, its probe marks it
down, and nothing logs a traceback or answers 500."""

from __future__ import annotations

import logging
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.registry import Health
from lmwatch.simulator import SimSettings, start_simulator
from tests.api.fleets import models

MODEL = "qwen-7b"
DEEP = b"[" * 1000 + b"]" * 1000


def deep_backend(models_too: bool) -> web.Application:
    """An OpenAI-compatible server whose answers (and, with `models_too`, model list) are nested too deeply."""

    async def list_models(request: web.Request) -> web.Response:
        if models_too:
            return web.Response(body=b'{"object": "list", "data": ' + DEEP + b"}", content_type="application/json")
        return web.json_response({"object": "list", "data": [{"id": MODEL, "object": "model"}]})

    async def chat(request: web.Request) -> web.StreamResponse:
        if (await request.json()).get("stream"):
            out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await out.prepare(request)
            await out.write(b"data: " + DEEP + b"\n\n")
            return out
        return web.Response(body=b'{"choices": ' + DEEP + b"}", content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/models", list_models)
    app.router.add_post("/v1/chat/completions", chat)
    return app


@pytest.mark.parametrize("stream", [False, True])
async def test_deep_json_from_a_backend_fails_over_feeds_the_breaker_and_logs_no_traceback(
    stream: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    good = await start_simulator(SimSettings(models=models(MODEL)), port=0)
    try:
        async with (
            TestServer(deep_backend(False), host="127.0.0.1") as deep,
            TestServer(deep_backend(True), host="127.0.0.1") as worse,
        ):
            config: dict[str, Any] = {
                "server": {"port": 0},
                "backends": [
                    {"name": "deep", "url": str(deep.make_url("")), "kind": "openai", "retry_attempts": 1},
                    {"name": "good", "url": good.url},
                    {"name": "worse", "url": str(worse.make_url("")), "kind": "openai"},
                ],
                "routing": {
                    "aliases": {"m": [{"backend": "deep", "model": MODEL}, {"backend": "good", "model": MODEL}]}
                },
            }
            async with running_daemon(parse_config(yaml.safe_dump(config), env={})) as daemon:
                worse_state = daemon.registry.snapshot().backends["worse"]
                assert (worse_state.health, worse_state.public_reason) == (Health.DOWN, "bad_response")
                body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
                async with (
                    aiohttp.ClientSession() as http,
                    http.post(daemon.url + "/v1/chat/completions", json=body) as resp,
                ):
                    assert resp.status == 200, await resp.text()
                    assert resp.headers["X-LMWatch-Backend"] == "good"
                    await resp.read()
                [breaker] = [b for b in daemon.registry.outcomes.view().breakers if b.backend == "deep"]
                assert breaker.failures == 1
    finally:
        await good.stop()
    assert "Traceback" not in caplog.text and "RecursionError" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
