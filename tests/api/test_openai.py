"""The /v1 API through the official openai SDK (sync and async, streaming and not) against simulated
LM Studio backends behind a real daemon: answers, route headers, models listing, usage and bad input.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionFunctionToolParam

from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, chat, fleet, models, route_headers

FLEET = SimSettings(
    models=[
        SimModel(id="qwen2.5-coder-7b-instruct", tool_use=True),
        SimModel(id="meta-llama-3.1-8b-instruct"),
        SimModel(id="google/gemma-3-4b", type="vlm"),
        SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings"),
        SimModel(id="mistral-7b-instruct-v0.3", loaded=False),
    ]
)
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
HEADERS = {"backend", "model", "task", "route", "overhead-ms"}


@pytest.fixture
async def one() -> Any:
    async with fleet({"studio": FLEET}, routing={"aliases": {"coder": ["qwen2.5-coder-7b-instruct"]}}) as f:
        yield f


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_async_sdk_auto_non_stream(one: Fleet) -> None:
    raw = await one.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Fix this python:\n```python\ndef f(:\n```"}]
    )
    headers = route_headers(raw.headers)
    assert set(headers) >= HEADERS
    assert (headers["backend"], headers["model"], headers["task"], headers["route"]) == (
        "studio",
        "qwen2.5-coder-7b-instruct",
        "coding",
        "capability",
    )
    assert float(headers["overhead-ms"]) < 50
    assert headers["task-reason"].count("(coding+") == 3  # the three strongest features, all for coding
    completion = raw.parse()
    assert completion.model == "qwen2.5-coder-7b-instruct"
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_async_sdk_explicit_stream_keeps_usage_when_asked(one: Fleet) -> None:
    raw = await one.client().chat.completions.with_raw_response.create(
        model="meta-llama-3.1-8b-instruct",
        messages=[{"role": "user", "content": "write a poem"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    headers = route_headers(raw.headers)
    assert (headers["model"], headers["task"], headers["route"]) == (
        "meta-llama-3.1-8b-instruct",
        "creative",
        "explicit",
    )
    chunks = [c async for c in raw.parse()]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == len([c for c in chunks if c.choices and c.choices[0].delta.content])


async def test_sync_sdk_stream_and_non_stream(one: Fleet) -> None:
    def use_sync_client() -> tuple[str, list[str], dict[str, str]]:
        client = one.sync_client()
        answer = client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
        raw = client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "write a story"}], stream=True
        )
        pieces = [c.choices[0].delta.content or "" for c in raw.parse() if c.choices]
        return answer.choices[0].message.content or "", pieces, route_headers(raw.headers)

    content, pieces, headers = await asyncio.to_thread(use_sync_client)
    assert content and "".join(pieces)
    assert (headers["task"], headers["route"]) == ("creative", "capability")


async def test_usage_chunk_is_asked_for_accounting_and_stripped_when_the_client_did_not(
    one: Fleet, http: aiohttp.ClientSession
) -> None:
    body = {"model": "qwen2.5-coder-7b-instruct", "stream": True, **chat()}
    async with http.post(one.url + "/v1/chat/completions", json=body) as resp:
        text = await resp.text()
    assert resp.headers["Content-Type"].startswith("text/event-stream")
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert not any('"usage"' in e for e in events)  # the client did not ask for it...
    tokens = one.metric("lmwatch_tokens_total", model="qwen2.5-coder-7b-instruct", direction="output")
    assert tokens == len(events) - 2  # ...but lmwatch counted it (role+content chunks, finish chunk, [DONE])


async def test_completions_and_embeddings(one: Fleet) -> None:
    client = one.client()
    raw = await client.completions.with_raw_response.create(model="auto", prompt="def fib(n):")
    assert route_headers(raw.headers)["task"] == "coding"
    assert raw.parse().choices[0].text
    stream = await client.completions.create(model="meta-llama-3.1-8b-instruct", prompt="Once", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices])
    emb = await client.embeddings.with_raw_response.create(model="auto", input=["a", "b"])
    headers = route_headers(emb.headers)
    assert (headers["task"], headers["model"]) == ("embeddings", "text-embedding-nomic-embed-text-v1.5")
    assert [d.index for d in emb.parse().data] == [0, 1]


async def test_alias_and_task_ids(one: Fleet) -> None:
    client = one.client()
    raw = await client.chat.completions.with_raw_response.create(
        model="coder", messages=[{"role": "user", "content": "hi"}]
    )
    assert (route_headers(raw.headers)["model"], route_headers(raw.headers)["route"]) == (
        "qwen2.5-coder-7b-instruct",
        "explicit",
    )
    raw = await client.chat.completions.with_raw_response.create(
        model="task:analysis", messages=[{"role": "user", "content": "write python"}]
    )
    assert route_headers(raw.headers)["task"] == "analysis"
    raw = await client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}], extra_headers={"X-LMWatch-Task": "coding"}
    )
    assert (route_headers(raw.headers)["task"], route_headers(raw.headers)["model"]) == (
        "coding",
        "qwen2.5-coder-7b-instruct",
    )


async def test_images_route_to_vision_models(one: Fleet) -> None:
    raw = await one.client().chat.completions.with_raw_response.create(
        model="auto",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                ],
            }
        ],
    )
    assert route_headers(raw.headers)["model"] == "google/gemma-3-4b"


async def test_tools_prefer_tool_trained_models(one: Fleet) -> None:
    tool: ChatCompletionFunctionToolParam = {
        "type": "function",
        "function": {"name": "lookup", "parameters": {"type": "object"}},
    }
    raw = await one.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "look up order 42"}], tools=[tool]
    )
    assert route_headers(raw.headers)["model"] == "qwen2.5-coder-7b-instruct"


async def test_models_lists_the_union_once_with_virtual_ids() -> None:
    second = SimSettings(models=[SimModel(id="qwen2.5-coder-7b-instruct"), SimModel(id="phi-3-mini-4k-instruct")])
    async with fleet({"a": FLEET, "b": second}, routing={"aliases": {"coder": ["qwen2.5-coder-7b-instruct"]}}) as f:
        listed = await f.client().models.list()
        ids = [m.id for m in listed.data]
        assert ids[:6] == ["auto", "task:analysis", "task:coding", "task:creative", "task:research", "coder"]
        assert len(ids) == len(set(ids))
        assert "mistral-7b-instruct-v0.3" not in ids  # downloaded only: JIT loading is off by default
        entry = next(m for m in listed.data if m.id == "qwen2.5-coder-7b-instruct")
        where = entry.model_extra["lmwatch"]["backends"]  # type: ignore[index]
        assert [w["backend"] for w in where] == ["a", "b"]
        assert entry.model_extra["lmwatch"]["type"] == "llm"  # type: ignore[index]


# --- bad input -----------------------------------------------------------------------------------


async def test_bad_input_gets_openai_errors_and_never_crashes(one: Fleet, http: aiohttp.ClientSession) -> None:
    url = one.url + "/v1/chat/completions"
    cases: list[tuple[bytes, int, str]] = [
        (b"{nope", 400, "invalid_json"),
        (b"null", 400, "invalid_json"),
        (json.dumps({"model": "qwen2.5-coder-7b-instrukt", **chat()}).encode(), 404, "model_not_found"),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "https://example.com/x.png"}}],
                        }
                    ],
                }
            ).encode(),
            400,
            "image_url_not_supported",
        ),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}],
                        }
                    ],
                }
            ).encode(),
            400,
            "invalid_base64",
        ),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "data:image/tiff;base64," + PNG}}],
                        }
                    ],
                }
            ).encode(),
            400,
            "invalid_image_type",
        ),
        (
            json.dumps(
                {
                    "model": "auto",
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64"}}],
                        }
                    ],
                }
            ).encode(),
            400,
            "invalid_image_url",
        ),
        (json.dumps({"model": "auto", "messages": "hi"}).encode(), 400, "invalid_type"),
    ]
    for raw, status, code in cases:
        async with http.post(url, data=raw, headers={"Content-Type": "application/json"}) as resp:
            body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (status, code), body
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert set(route_headers(resp.headers)) >= HEADERS
    async with http.post(url, json={"model": "qwen2.5-coder-7b-instrukt", **chat()}) as resp:
        assert "closest known ids: qwen2.5-coder-7b-instruct" in (await resp.json())["error"]["message"]
    async with http.get(one.url + "/healthz") as resp:
        assert resp.status == 200  # still alive


async def test_body_over_the_limit_is_413() -> None:
    async def chunked() -> Any:
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        yield b"x" * 2000
        yield b'"}]}'

    async with fleet({"a": FLEET}, server={"max_body_bytes": 1000}) as f, aiohttp.ClientSession() as http:
        for data in (json.dumps(chat("x" * 2000, model="auto")).encode(), chunked()):  # with and without a length
            async with http.post(f.url + "/v1/chat/completions", data=data) as resp:
                body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (413, "request_too_large")
            assert "1000 bytes" in body["error"]["message"]


async def test_no_candidate_is_503_with_retry_after(http: aiohttp.ClientSession) -> None:
    only_embeddings = SimSettings(models=models("nomic-embed-text-v1.5", kind="embeddings"))
    async with fleet({"a": only_embeddings}) as f:
        async with http.post(f.url + "/v1/chat/completions", json=chat(model="auto")) as resp:
            body = await resp.json()
        assert resp.status == 503 and resp.headers["Retry-After"] == "5"
        assert body["error"]["code"] == "no_backend_available"
        assert "no healthy backend has a model for research loaded (a: up)" in body["error"]["message"]
        with pytest.raises(openai.APIStatusError) as caught:
            await f.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "x"}])
        assert caught.value.status_code == 503


DEEP = b'{"model": "auto", "messages": ' + b"[" * 1000 + b"]" * 1000 + b"}"
"""JSON nested 1,000 deep in 2 KB: `json.loads` raises RecursionError on it."""
SURROGATE = b'{"model": "auto", "messages": [{"role": "user", "content": "x\\ud800y"}]}'


async def test_deep_json_and_lone_surrogates_are_400_on_every_json_endpoint(
    one: Fleet, http: aiohttp.ClientSession
) -> None:
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/completions"):
        for raw, says in ((DEEP, "nested too deeply"), (SURROGATE, "lone UTF-16 surrogate")):
            async with http.post(one.url + path, data=raw, headers={"Content-Type": "application/json"}) as resp:
                body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (400, "invalid_json"), (path, body)
            assert says in body["error"]["message"]
    stats = one.sims["studio"].state.stats
    assert stats.completed_total + stats.errors_total == 0  # a client error is never sent on
