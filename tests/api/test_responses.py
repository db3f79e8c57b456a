"""OpenAI's Responses API (`/v1/responses`) through the real openai SDK: passed through to the
simulated LM Studio versions that serve it (0.3.29+), translated to chat completions for older
ones and plain OpenAI-compatible servers; streams, tools, `previous_response_id` (followed to the
backend that holds it, or kept by lmwatch for translated conversations), errors in OpenAI's shape."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import openai
import pytest

from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, fleet, route_headers

MODEL = "qwen2.5-coder-7b-instruct"
WEATHER: Any = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
BACKENDS = {
    "lmstudio-0.4": ("0.4", "0.4.12", True),
    "lmstudio-0.3.31": ("0.3", "0.3.31", True),
    "lmstudio-0.3.20": ("0.3", "0.3.20", False),
    "openai": ("openai", "", False),
}


def settings(flavour: str, version: str = "") -> SimSettings:
    return SimSettings(flavour=flavour, version=version, models=[SimModel(id=MODEL, tool_use=True)])  # type: ignore[arg-type]


@pytest.fixture(params=list(BACKENDS))
async def one(request: pytest.FixtureRequest) -> AsyncIterator[Fleet]:
    flavour, version, _ = BACKENDS[request.param]
    async with fleet({"b": settings(flavour, version)}) as f:
        f.native = BACKENDS[request.param][2]  # type: ignore[attr-defined]
        yield f


def upstream_paths(f: Fleet, name: str = "b") -> dict[str, int]:
    counts: dict[str, int] = f.sims[name].state.stats.requests_total
    return {p: n for p, n in counts.items() if p in ("/v1/responses", "/v1/chat/completions")}


async def test_create_answers_with_output_text_usage_and_headers(one: Fleet) -> None:
    raw = await one.client().responses.with_raw_response.create(
        model=MODEL,
        instructions="Answer briefly.",
        input="Say something about servers",
        max_output_tokens=9,
        extra_headers={"X-Request-ID": "trace-7"},
    )
    response = raw.parse()
    assert response.object == "response" and response.model == MODEL
    assert response.status == "incomplete" and response.incomplete_details is not None
    assert response.output_text and response.usage is not None and response.usage.output_tokens == 9
    headers = route_headers(raw.headers)
    assert headers["translated"] == ("false" if one.native else "true")  # type: ignore[attr-defined]
    assert raw.headers["x-request-id"] == "trace-7"
    assert upstream_paths(one) == {"/v1/responses" if one.native else "/v1/chat/completions": 1}  # type: ignore[attr-defined]
    assert one.metric("lmwatch_requests_total", api="responses", backend="b", code="200") == 1


async def test_stream_events_and_final_response(one: Fleet) -> None:
    async with one.client().responses.stream(model=MODEL, input="Tell me about tokens") as stream:
        events = [e async for e in stream]
        final = await stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert deltas and final.output_text == deltas and final.status == "completed"
    assert final.usage is not None and final.usage.output_tokens > 0
    assert one.metric("lmwatch_tokens_total", backend="b", direction="output") == final.usage.output_tokens


async def test_function_calls_streamed_and_not_then_their_output(one: Fleet) -> None:
    client = one.client()
    ask = "What is the weather in Paris? Use the tool."
    response = await client.responses.create(model=MODEL, input=ask, tools=[WEATHER], tool_choice="required")
    call = response.output[-1]
    assert call.type == "function_call" and call.name == "get_weather" and '"city"' in call.arguments
    async with client.responses.stream(model=MODEL, input=ask, tools=[WEATHER]) as stream:
        kinds = [e.type async for e in stream]
        streamed = await stream.get_final_response()
    assert "response.function_call_arguments.delta" in kinds and kinds[-1] == "response.completed"
    streamed_call = streamed.output[-1]
    assert streamed_call.type == "function_call" and streamed_call.arguments == call.arguments
    answer = await client.responses.create(
        model=MODEL,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": ask},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
        ],
    )
    assert answer.output[-1].type == "message" and answer.output_text


async def test_previous_response_id_continues_the_conversation(one: Fleet) -> None:
    client = one.client()
    first = await client.responses.create(model=MODEL, input="Name a colour", instructions="Be brief.")
    second = await client.responses.create(model=MODEL, input="And another one", previous_response_id=first.id)
    assert second.previous_response_id == first.id and second.id != first.id
    whole = await client.responses.create(
        model=MODEL,
        input=[
            {"role": "user", "content": "Name a colour"},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "And another one"},
        ],
    )
    assert second.output_text == whole.output_text  # the history reached the model, whoever kept it
    with pytest.raises(openai.BadRequestError) as unknown:
        await client.responses.create(model=MODEL, input="x", previous_response_id="resp_unknown")
    body: Any = unknown.value.body
    assert body["code"] == "previous_response_not_found" and body["param"] == "previous_response_id"


async def test_follow_ups_go_to_the_backend_that_holds_the_response(http: aiohttp.ClientSession) -> None:
    native = settings("0.4", "0.4.12")
    async with fleet({"a": native, "b": settings("0.4", "0.4.12")}) as f:
        client = f.client()
        raw = await client.responses.with_raw_response.create(model=MODEL, input="Start a story")
        holder = raw.headers["x-lmwatch-backend"]
        previous = raw.parse().id
        for _ in range(4):
            raw = await client.responses.with_raw_response.create(
                model=MODEL, input="Go on", previous_response_id=previous
            )
            assert raw.headers["x-lmwatch-backend"] == holder
            previous = raw.parse().id
        async with http.post(f"{f.url}/admin/backends/{holder}/drain") as resp:
            assert resp.status == 200
        with pytest.raises(openai.APIStatusError) as gone:
            await client.responses.create(model=MODEL, input="Go on", previous_response_id=previous)
    assert gone.value.status_code == 503
    body: Any = gone.value.body
    assert body["code"] == "previous_response_unavailable" and holder in body["message"]


async def test_a_translated_conversation_continues_on_any_backend(http: aiohttp.ClientSession) -> None:
    async with fleet({"engine": settings("openai"), "studio": settings("0.4", "0.4.12")}, engine={"weight": 1000}) as f:
        client = f.client()
        raw = await client.responses.with_raw_response.create(model=MODEL, input="Start a story")
        assert (raw.headers["x-lmwatch-backend"], raw.headers["x-lmwatch-translated"]) == ("engine", "true")
        async with http.post(f"{f.url}/admin/backends/engine/drain") as resp:
            assert resp.status == 200
        raw = await client.responses.with_raw_response.create(
            model=MODEL, input="Go on", previous_response_id=raw.parse().id
        )
    assert (raw.headers["x-lmwatch-backend"], raw.headers["x-lmwatch-translated"]) == ("studio", "true")
    assert upstream_paths(f, "studio") == {"/v1/chat/completions": 1}


async def test_tools_only_the_api_has_need_a_backend_that_speaks_it() -> None:
    search: Any = {"type": "web_search"}
    async with fleet({"b": settings("openai")}) as f:
        with pytest.raises(openai.BadRequestError) as refused:
            await f.client().responses.create(model=MODEL, input="hello", tools=[search])
    body: Any = refused.value.body
    assert body["code"] == "unsupported_api" and "web_search" in body["message"]
    async with fleet({"b": settings("0.4", "0.4.12")}) as f:
        response = await f.client().responses.create(model=MODEL, input="hello", tools=[search])
    assert response.output_text


async def test_bad_requests_get_openai_errors(one: Fleet, http: aiohttp.ClientSession) -> None:
    for body, wanted in (
        (b"{nope", "not valid JSON"),
        (b'{"model": "qwen2.5-coder-7b-instruct"}', "`input` is required"),
        (b'{"model": "qwen2.5-coder-7b-instruct", "input": 5}', "`input` must be a string"),
        (b'{"model": "qwen2.5-coder-7b-instruct", "input": [{"role": "robot", "content": "x"}]}', "role"),
    ):
        async with http.post(one.url + "/v1/responses", data=body) as resp:
            error = (await resp.json())["error"]
            assert resp.status == 400 and wanted in error["message"], error
            assert error["type"] == "invalid_request_error"
    assert upstream_paths(one) == {}


@pytest.mark.parametrize("flavour", ["0.4", "openai"])
async def test_a_stream_cut_mid_way_ends_with_an_error_event(flavour: str) -> None:
    cutting = SimSettings(flavour=flavour, models=[SimModel(id=MODEL)], drop_rate=1.0)  # type: ignore[arg-type]
    async with fleet({"b": cutting}) as f:
        kinds: list[str] = []
        with pytest.raises(openai.APIError) as cut:
            async with f.client().responses.stream(model=MODEL, input="Tell me about tokens") as stream:
                async for event in stream:
                    kinds.append(event.type)
    assert kinds[0] == "response.created" and "response.completed" not in kinds
    assert "failed mid-stream" in cut.value.message
    assert f.metric("lmwatch_requests_total", api="responses", code="stream_error") == 1
