"""A new flavour is one module plus one line in the table: this one is defined here alone.

It is registered in `lmwatch.flavours.FLAVOURS` (nothing else is edited) and is then detected on a
server only it understands, accepted as a `kind`, reported in the registry, and its quirks (a
request rewrite, its model-gone wording) steer the router; a real engine-like server on loopback.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import openai
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from lmwatch.api import openai as router
from lmwatch.backends import BackendClient, Flavour, flavour, is_context_exceeded, is_model_gone, model_type_refused
from lmwatch.backends.base import shape_error
from lmwatch.config import ConfigError, parse_config
from lmwatch.daemon import running_daemon
from lmwatch.flavours import FLAVOURS
from lmwatch.registry import ModelInfo, ModelType

NAME = "tapir"
MODEL = "tapir-1b"


class TapirFlavour(Flavour):
    """An engine that lists its models at `/tapir/models` and wants `tapir_mode` on every chat."""

    model_gone = (r"weights evicted",)
    context_exceeded = (r"prompt longer than the burrow",)

    async def list_models(self, client: BackendClient) -> tuple[list[ModelInfo], list[str]]:
        body = await client.get_json("/tapir/models")
        if not isinstance(body, dict) or not isinstance(body.get("served"), list):
            raise shape_error("/tapir/models", "no `served` list")
        models = [ModelInfo(id=m, model_type=ModelType.LLM, loaded=True, instance_ids=(m,)) for m in body["served"]]
        return models, []

    def rewrite(self, body: dict[str, Any]) -> dict[str, Any] | None:
        return {**body, "tapir_mode": "fast"} if "messages" in body else None


class TapirServer:
    """Speaks only the tapir dialect: 404 on every route the built-in flavours probe."""

    def __init__(self, evicted: bool = False) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.evicted = evicted
        app = web.Application()
        app.router.add_get("/tapir/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        self.server = TestServer(app, host="127.0.0.1")

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"served": [MODEL]})

    async def chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.bodies.append(body)
        if self.evicted:
            return web.json_response({"error": {"message": "weights evicted, reload please"}}, status=500)
        message = {"role": "assistant", "content": f"mode={body.get('tapir_mode')}"}
        return web.json_response(
            {
                "id": "c1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )


@pytest.fixture
def tapir_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FLAVOURS, NAME, f"{__name__}:TapirFlavour")


async def started(server: TapirServer) -> AsyncIterator[str]:
    await server.server.start_server()
    try:
        yield str(server.server.make_url("")).rstrip("/")
    finally:
        await server.server.close()


def config(backends: list[dict[str, Any]]) -> str:
    return yaml.safe_dump({"server": {"port": 0}, "backends": [{"poll_interval": 60, **b} for b in backends]})


@pytest.mark.usefixtures("tapir_registered")
async def test_a_flavour_defined_in_a_test_is_detected_configured_and_routed() -> None:
    auto, pinned = TapirServer(), TapirServer()
    async for auto_url in started(auto):
        async for pinned_url in started(pinned):
            loaded = parse_config(
                config([{"name": "auto", "url": auto_url}, {"name": "pinned", "url": pinned_url, "kind": NAME}]),
                env={},
            )
            assert loaded.config.backends[1].kind == NAME
            async with running_daemon(loaded, [router.setup]) as daemon:
                snap = daemon.registry.snapshot()
                assert {n: (b.flavour, b.health.value) for n, b in snap.backends.items()} == {
                    "auto": (NAME, "up"),
                    "pinned": (NAME, "up"),
                }
                client = openai.AsyncOpenAI(base_url=f"{daemon.url}/v1", api_key="unused", max_retries=0)
                async with client:
                    for _ in range(64):  # balancing breaks ties at random: until both backends served
                        answer = await client.chat.completions.create(
                            model=MODEL, messages=[{"role": "user", "content": "hi"}]
                        )
                        assert answer.choices[0].message.content == "mode=fast"
                        if auto.bodies and pinned.bodies:
                            break
    assert auto.bodies and pinned.bodies
    assert all(b["tapir_mode"] == "fast" and b["model"] == MODEL for b in auto.bodies + pinned.bodies)


@pytest.mark.usefixtures("tapir_registered")
async def test_the_flavours_model_gone_wording_means_model_unavailable_and_spares_the_breaker() -> None:
    evicted = TapirServer(evicted=True)
    assert is_model_gone(TapirFlavour(NAME), "weights evicted") and not is_model_gone(
        flavour("openai"), "weights evicted"
    )
    async for url in started(evicted):
        async with running_daemon(parse_config(config([{"name": "evicted", "url": url}]), env={}), [router.setup]) as d:
            client = openai.AsyncOpenAI(base_url=f"{d.url}/v1", api_key="unused", max_retries=0)
            async with client:
                with pytest.raises(openai.APIStatusError) as caught:
                    await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
            assert "evicted (tapir-1b): model_unavailable: weights evicted" in caught.value.message
            assert d.registry.outcomes.view().breakers == ()
    assert evicted.bodies


def test_the_flavours_engine_error_wording_is_its_own() -> None:
    tapir = TapirFlavour(NAME)
    assert is_context_exceeded(tapir, "prompt longer than the burrow")
    assert not is_context_exceeded(tapir, "n_ctx is 2048") and is_context_exceeded(flavour("openai"), "n_ctx is 2048")
    assert is_context_exceeded(None, "prompt longer than the burrow") is False  # not in the table: nobody's wording
    assert model_type_refused(flavour("lmstudio-v1"), 'Failed to load model "x". Error: Model is not embedding.') == (
        "embedding"
    )
    assert model_type_refused(tapir, "Model is not embedding.") is None


def test_an_unknown_kind_names_the_table(tapir_registered: None) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config([{"name": "b", "url": "http://127.0.0.1:1", "kind": "llamafile"}]), env={})
    problem = next(p for p in caught.value.problems if p.startswith("backends[0].kind"))
    assert "lmstudio-v1, lmstudio-v0, openai, tapir" in problem and "'llamafile'" in problem


def test_without_the_table_line_the_kind_is_refused() -> None:
    with pytest.raises(ConfigError):
        parse_config(config([{"name": "b", "url": "http://127.0.0.1:1", "kind": NAME}]), env={})
