"""A model that cannot be served where lmwatch thought it could: a backend answering with another
model than the one asked for (LM Studio's one-model quirk), and a backend down on auth whose
models lmwatch never saw."""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import pytest

from lmwatch.simulator import SimSettings
from tests.api.fleets import fleet, models


async def test_a_substituted_model_fails_over_and_is_logged_once_per_backend_and_model(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The simulator unloads `beta` behind lmwatch's back: with one LLM left, it answers a request for
    `beta` with `alpha` (LM Studio on /v1 ignores the name then). Three requests planned before the
    re-poll all meet it; one log line says so."""
    settings = SimSettings(models=models("alpha-7b", "beta-7b"), jit=False, ttft=0.5)
    async with fleet({"studio": settings}) as f, aiohttp.ClientSession() as http:
        f.sims["studio"].state.catalogue.unload("beta-7b")
        caplog.set_level(logging.INFO)
        body = {"model": "beta-7b", "messages": [{"role": "user", "content": "hi"}]}

        async def ask() -> tuple[int, str]:
            async with http.post(f.url + "/v1/chat/completions", json=body) as resp:
                return resp.status, (await resp.json())["error"]["message"]

        answers = await asyncio.gather(ask(), ask(), ask())
    for status, message in answers:
        assert status == 502
        assert "model substituted: asked for 'beta-7b', answered by 'alpha-7b'" in message
        assert "the model is gone" not in message
    logged = [r for r in caplog.records if "model substituted" in r.getMessage()]
    assert len(logged) == 1, [r.getMessage() for r in logged]
    assert logged[0].levelno == logging.WARNING and "studio" in logged[0].getMessage()


@pytest.mark.parametrize("model", ["alpha-7b", "no-such-model"])
async def test_a_model_on_a_backend_down_on_auth_is_503_naming_the_backend_and_its_state(model: str) -> None:
    """lmwatch never saw the locked backend's models (its first probe was refused), so it cannot
    tell the id is unknown: 503 naming the backend and why it is down, not 404."""
    locked = SimSettings(models=models("alpha-7b"), api_token="sk-the-real-token-0123456789")
    async with fleet({"open": SimSettings(models=models("other-7b")), "locked": locked}) as f:
        assert f.daemon.registry.snapshot().backends["locked"].public_reason == "auth"
        async with aiohttp.ClientSession() as http:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            async with http.post(f.url + "/v1/chat/completions", json=body) as resp:
                status, answer = resp.status, await resp.json()
                retry = resp.headers.get("Retry-After")
    assert status == 503 and retry is not None
    assert answer["error"]["code"] == "no_backend_available"
    assert "locked: down (auth)" in answer["error"]["message"]
    assert "sk-the-real-token" not in answer["error"]["message"]


async def test_an_unknown_model_is_still_404_when_every_backend_is_up() -> None:
    async with fleet({"open": SimSettings(models=models("other-7b"))}) as f, aiohttp.ClientSession() as http:
        body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(f.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "model_not_found"
