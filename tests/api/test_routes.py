"""The `/v1` surface around the routed endpoints: `GET /v1/models/{id}`, JSON errors for unknown
routes and methods, and request ids (taken from the client, made otherwise, returned, sent upstream)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
import yaml
from aiohttp import web

from lmwatch.api import openai as router
from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, fleet
from tests.backends.test_base import serve

MODEL = "google/gemma-3-4b"


@pytest.fixture
async def one() -> AsyncIterator[Fleet]:
    async with fleet({"b": SimSettings(models=[SimModel(id=MODEL, type="vlm")])}) as f:
        yield f


async def test_retrieve_a_model_and_a_virtual_id(one: Fleet) -> None:
    client = one.client()
    model = await client.models.retrieve(MODEL)
    assert model.id == MODEL and model.object == "model"
    assert (await client.models.retrieve("auto")).id == "auto"
    with pytest.raises(openai.NotFoundError) as missing:
        await client.models.retrieve("no-such-model")
    assert missing.value.code == "model_not_found"


async def test_unknown_routes_and_methods_answer_openai_json(one: Fleet, http: aiohttp.ClientSession) -> None:
    async with http.post(one.url + "/v1/assistants", json={}) as resp:
        body = await resp.json()
        assert resp.status == 404 and body["error"]["code"] == "unknown_url"
        assert "POST /v1/assistants" in body["error"]["message"]
    async with http.get(one.url + "/v1/chat/completions") as resp:
        body = await resp.json()
        assert resp.status == 405 and body["error"]["code"] == "method_not_allowed"
        assert resp.headers["Allow"] == "POST" and resp.headers["X-Request-ID"]
    async with http.get(one.url + "/v1/messages/batches") as resp:
        body = await resp.json()
        assert resp.status == 404 and body["type"] == "error" and body["error"]["type"] == "not_found_error"


async def test_request_ids_are_kept_made_returned_and_sent_upstream(http: aiohttp.ClientSession) -> None:
    seen: list[str | None] = []

    async def upstream(request: web.Request) -> web.StreamResponse:
        seen.append(request.headers.get("X-Request-ID"))
        if request.path == "/v1/models":
            return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})
        usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
        message = {"role": "assistant", "content": "hi"}
        return web.json_response(
            {"model": "m", "choices": [{"message": message, "finish_reason": "stop"}], "usage": usage}
        )

    runner, url = await serve(upstream)
    try:
        config = {"server": {"port": 0}, "backends": [{"name": "plain", "url": url}]}
        async with running_daemon(parse_config(yaml.safe_dump(config), env={}), [router.setup]) as daemon:
            chat = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
            uuid = "6f1c2d3e-4b5a-4c6d-8e7f-0123456789ab"
            for given in (uuid, "trace-1", None):
                seen.clear()
                headers = {"X-Request-ID": given} if given else {}
                async with http.post(daemon.url + "/v1/chat/completions", json=chat, headers=headers) as resp:
                    assert resp.status == 200
                    returned = resp.headers["X-Request-ID"]
                assert returned == given if given else len(returned) == 36
                assert seen == ([returned] if given != "trace-1" else [None])
            async with http.post(
                daemon.url + "/v1/chat/completions", data=b"{", headers={"X-Request-ID": "bad id!"}
            ) as resp:
                body = await resp.json()
                assert body["request_id"] == resp.headers["X-Request-ID"] != "bad id!"
    finally:
        await runner.cleanup()
