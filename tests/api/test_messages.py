"""Anthropic's Messages API (`/v1/messages`) through the real anthropic SDK: passed through to the
simulated LM Studio that speaks it (0.4.1+), translated to chat completions for those that do not
(0.3, plain OpenAI-compatible servers); streams, tools, errors in Anthropic's shape, client keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest

from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, fleet, route_headers

MODEL = "qwen2.5-coder-7b-instruct"
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
KEY = "sk-anthropic-client-key-0001"


def settings(flavour: str, version: str = "") -> SimSettings:
    return SimSettings(flavour=flavour, version=version, models=[SimModel(id=MODEL, tool_use=True)])  # type: ignore[arg-type]


NATIVE = settings("0.4", "0.4.12")
TRANSLATED = {"lmstudio-0.4.0": settings("0.4", "0.4.0"), "lmstudio-0.3": settings("0.3"), "openai": settings("openai")}


@pytest.fixture(params=["native", *TRANSLATED])
async def one(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    """One backend: an LM Studio that speaks Messages, or one of three servers that need translation."""
    async with fleet({"b": NATIVE if request.param == "native" else TRANSLATED[request.param]}) as f:
        yield f


def client(f: Fleet, key: str = "unused") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=f.url, api_key=key, max_retries=0)


def upstream_paths(f: Fleet) -> dict[str, int]:
    counts: dict[str, int] = f.sims["b"].state.stats.requests_total
    return {p: n for p, n in counts.items() if p in ("/v1/messages", "/v1/chat/completions")}


def native(f: Fleet) -> bool:
    simulated = f.sims["b"].state.settings
    return simulated.flavour == "0.4" and simulated.version == "0.4.12"


async def test_create_answers_text_with_usage_and_route_headers(one: Fleet) -> None:
    async with client(one) as c:
        raw = await c.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=12,
            system="You answer briefly.",
            messages=[{"role": "user", "content": "Say something about servers"}],
            extra_headers={"X-Request-ID": "trace-42"},
        )
        message = await raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == MODEL
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "max_tokens"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 12
    headers = route_headers(raw.headers)
    assert headers["backend"] == "b" and headers["model"] == MODEL
    assert headers["translated"] == ("false" if native(one) else "true")
    assert raw.headers["x-request-id"] == "trace-42"
    wanted = "/v1/messages" if native(one) else "/v1/chat/completions"
    assert upstream_paths(one) == {wanted: 1}
    assert one.metric("lmwatch_tokens_total", backend="b", direction="output") == 12


async def test_stream_of_text_is_assembled_by_the_sdk(one: Fleet) -> None:
    async with (
        client(one) as c,
        c.messages.stream(
            model=MODEL, max_tokens=8, messages=[{"role": "user", "content": "Tell me about tokens"}]
        ) as stream,
    ):
        texts = [t async for t in stream.text_stream]
        message = await stream.get_final_message()
    assert len(texts) == 8 and message.content[0].type == "text"
    assert message.content[0].text == "".join(texts)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 8
    assert one.metric("lmwatch_requests_total", backend="b", code="200") == 1


async def test_tool_use_streamed_and_not_then_a_tool_result_turn(one: Fleet) -> None:
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris? Use the tool."}]
    async with client(one) as c:
        message = await c.messages.create(
            model=MODEL, max_tokens=64, messages=ask, tools=[WEATHER], tool_choice={"type": "any"}
        )
        assert message.stop_reason == "tool_use"
        call = message.content[-1]
        assert call.type == "tool_use" and call.name == "get_weather" and isinstance(call.input, dict)
        assert set(call.input) == {"city"}

        async with c.messages.stream(model=MODEL, max_tokens=64, messages=ask, tools=[WEATHER]) as stream:
            events = [e.type async for e in stream]
            streamed = await stream.get_final_message()
        assert events[0] == "message_start" and events[-1] == "message_stop"
        assert streamed.stop_reason == "tool_use"
        streamed_call = streamed.content[-1]
        assert streamed_call.type == "tool_use" and streamed_call.input == call.input

        result = await c.messages.create(
            model=MODEL,
            max_tokens=10,
            tools=[WEATHER],
            messages=[
                *ask,
                {"role": "assistant", "content": [call.model_dump(include={"type", "id", "name", "input"})]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
            ],
        )
    assert result.stop_reason == "max_tokens" and result.content[0].type == "text"


async def test_count_tokens_is_answered_by_lmwatch(one: Fleet) -> None:
    async with client(one) as c:
        short = await c.messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        long = await c.messages.count_tokens(
            model=MODEL, system="x" * 400, messages=[{"role": "user", "content": "hi"}], tools=[WEATHER]
        )
    assert short.input_tokens == 1 and long.input_tokens > 100
    assert upstream_paths(one) == {}


async def test_errors_come_in_anthropics_shape(one: Fleet, http: aiohttp.ClientSession) -> None:
    async with client(one) as c:
        with pytest.raises(anthropic.NotFoundError) as missing:
            await c.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
        with pytest.raises(anthropic.BadRequestError) as no_max:
            await c.messages.create(model=MODEL, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    body: Any = missing.value.body
    assert body["type"] == "error" and body["error"]["type"] == "not_found_error"
    assert "claude-nope" in body["error"]["message"] and len(body["request_id"]) == 36
    body = no_max.value.body
    assert body["error"]["type"] == "invalid_request_error" and "max_tokens" in body["error"]["message"]
    async with http.post(one.url + "/v1/messages", data=b"{not json") as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["type"] == "invalid_request_error"
    async with http.post(one.url + "/v1/messages", json={"model": MODEL, "max_tokens": 5, "messages": "hi"}) as resp:
        assert resp.status == 400 and "messages" in (await resp.json())["error"]["message"]
    assert upstream_paths(one) == {}


async def test_x_api_key_is_a_client_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMWATCH_TEST_CLAUDE_KEY", KEY)
    keys = {"keys": [{"name": "claude", "key_env": "LMWATCH_TEST_CLAUDE_KEY"}]}
    async with fleet({"b": NATIVE}, clients=keys) as f:
        async with client(f, KEY) as c:
            message = await c.messages.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "x"}])
            assert message.usage.output_tokens == 3
        async with client(f, "sk-wrong-key-wrong-key-0000") as c:
            with pytest.raises(anthropic.AuthenticationError) as refused:
                await c.messages.create(model=MODEL, max_tokens=3, messages=[{"role": "user", "content": "x"}])
    body: Any = refused.value.body
    assert body["error"]["type"] == "authentication_error" and "x-api-key" not in body["error"]["message"]
    assert len(body["request_id"]) == 36


async def test_a_failing_native_backend_fails_over_to_a_translated_one() -> None:
    broken = SimSettings(models=[SimModel(id=MODEL)], error_rate=1.0)
    async with fleet({"b": broken, "engine": settings("openai")}, b={"weight": 1000}) as f, client(f) as c:
        raw = await c.messages.with_raw_response.create(
            model=MODEL, max_tokens=4, messages=[{"role": "user", "content": "hello"}]
        )
        message = await raw.parse()
    assert message.usage.output_tokens == 4
    headers = route_headers(raw.headers)
    assert (headers["backend"], headers["route"], headers["translated"]) == ("engine", "failover", "true")
    assert f.sims["b"].state.stats.requests_total["/v1/messages"] >= 1
    assert f.metric("lmwatch_fallbacks_total", from_backend="b", to_backend="engine") >= 1


@pytest.mark.parametrize("flavour", ["0.4", "openai"])
async def test_a_stream_cut_mid_way_ends_with_an_anthropic_error_event(flavour: str) -> None:
    cutting = SimSettings(flavour=flavour, models=[SimModel(id=MODEL)], drop_rate=1.0)  # type: ignore[arg-type]
    async with fleet({"b": cutting}) as f, client(f) as c:
        with pytest.raises(anthropic.APIError) as cut:
            async with c.messages.stream(
                model=MODEL, max_tokens=20, messages=[{"role": "user", "content": "Tell me about tokens"}]
            ) as stream:
                async for _ in stream:
                    pass
    assert "failed mid-stream" in cut.value.message
    assert f.metric("lmwatch_requests_total", api="messages", code="stream_error") == 1
