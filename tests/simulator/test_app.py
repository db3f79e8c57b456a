"""The LM Studio simulator over real loopback HTTP: shapes per flavour, quirks, JIT, slots, faults, CLI."""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from openai import AsyncOpenAI

from lmwatch.simulator import RunningSimulator, SimModel, SimSettings, start_simulator
from lmwatch.simulator.command import add_arguments, build_settings
from lmwatch.simulator.models_file import ModelsFileError, load_models_file
from lmwatch.simulator.settings import ModelType

REPO = Path(__file__).resolve().parents[2]
CODER = "qwen2.5-coder-7b-instruct"
LLAMA = "meta-llama-3.1-8b-instruct"
GEMMA = "google/gemma-3-4b"
NOMIC = "text-embedding-nomic-embed-text-v1.5"
MISTRAL = "mistral-7b-instruct-v0.3"
HELLO: Any = [{"role": "user", "content": "hello there"}]
PNG = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)

Factory = Callable[..., Awaitable[RunningSimulator]]


@pytest.fixture
async def sim_factory() -> AsyncIterator[Factory]:
    started: list[RunningSimulator] = []

    async def make(**options: Any) -> RunningSimulator:
        sim = await start_simulator(SimSettings(**options), host="127.0.0.1", port=0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, url: str, body: object = None, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, json=body, **kw) as resp:
        return resp.status, await resp.json(content_type=None)


async def stats(http: aiohttp.ClientSession, sim: RunningSimulator) -> dict[str, Any]:
    status, data = await call(http, "GET", sim.url + "/__sim/stats")
    assert status == 200
    return data  # type: ignore[no-any-return]


async def wait_stats(
    http: aiohttp.ClientSession, sim: RunningSimulator, check: Callable[[dict[str, Any]], bool], timeout: float = 5
) -> dict[str, Any]:
    """Poll /__sim/stats until `check` holds; fail with the last snapshot after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        data = await stats(http, sim)
        if check(data):
            return data
        if time.monotonic() > deadline:
            pytest.fail(f"condition not reached within {timeout}s; stats: {data}")
        await asyncio.sleep(0.01)


def sse_payloads(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n") if line.startswith("data: ")]


def model(id_: str, type_: ModelType = "llm", loaded: bool = True, **kw: Any) -> SimModel:
    return SimModel(id=id_, type=type_, loaded=loaded, **kw)


# --- model lists -----------------------------------------------------------------------------------


async def test_default_catalogue() -> None:
    models = {m.id: m for m in SimSettings.default_models()}
    assert set(models) == {CODER, LLAMA, GEMMA, NOMIC, MISTRAL}
    assert [m.id for m in models.values() if not m.loaded] == [MISTRAL]
    assert models[GEMMA].type == "vlm" and models[NOMIC].type == "embeddings"
    assert models[CODER].arch == "qwen2" and models[CODER].tool_use


async def test_v1_models_follow_jit(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    _, data = await call(http, "GET", sim.url + "/v1/models")
    assert data["object"] == "list"
    assert [e["id"] for e in data["data"]] == [CODER, LLAMA, GEMMA, NOMIC, MISTRAL]
    assert data["data"][0] == {"id": CODER, "object": "model", "owned_by": "organization_owner"}
    sim.state.settings.jit = False
    _, data = await call(http, "GET", sim.url + "/v1/models")
    assert MISTRAL not in [e["id"] for e in data["data"]]


async def test_v0_models_shape(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    _, data = await call(http, "GET", sim.url + "/api/v0/models")
    entries = {e["id"]: e for e in data["data"]}
    assert entries[GEMMA] == {
        "id": GEMMA, "object": "model", "type": "vlm", "publisher": "google", "arch": "gemma3",
        "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded",
        "max_context_length": 131072, "loaded_context_length": 12918,
    }  # fmt: skip
    assert entries[CODER]["capabilities"] == ["tool_use"]
    assert entries[NOMIC]["type"] == "embeddings"
    assert entries[MISTRAL]["state"] == "not-loaded"
    assert "loaded_context_length" not in entries[MISTRAL] and "capabilities" not in entries[MISTRAL]
    status, one = await call(http, "GET", sim.url + f"/api/v0/models/{GEMMA}")
    assert status == 200 and one == entries[GEMMA]
    status, missing = await call(http, "GET", sim.url + "/api/v0/models/nope")
    assert status == 404 and missing["error"]["code"] == "model_not_found"


async def test_api_v1_models_shape(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(parallel=2)
    _, data = await call(http, "GET", sim.url + "/api/v1/models")
    entries = {e["key"]: e for e in data["models"]}
    coder = entries[CODER]
    assert coder["type"] == "llm" and coder["architecture"] == "qwen2" and coder["params_string"] == "7B"
    assert coder["quantization"] == {"name": "Q4_K_M", "bits_per_weight": 4}
    assert coder["capabilities"] == {"vision": False, "trained_for_tool_use": True}
    assert coder["loaded_instances"][0]["id"] == CODER
    assert coder["loaded_instances"][0]["config"]["parallel"] == 2
    assert coder["loaded_instances"][0]["config"]["context_length"] == 8192
    assert entries[GEMMA]["capabilities"]["vision"] is True
    nomic = entries[NOMIC]
    assert nomic["type"] == "embedding"
    assert "architecture" not in nomic and "capabilities" not in nomic
    assert nomic["loaded_instances"][0]["config"] == {"context_length": 2048}
    assert entries[MISTRAL]["loaded_instances"] == []
    for entry in data["models"]:
        assert {"publisher", "display_name", "size_bytes", "max_context_length", "format"} <= set(entry)


async def test_openai_flavour(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(flavour="openai")
    _, data = await call(http, "GET", sim.url + "/v1/models")
    ids = [e["id"] for e in data["data"]]
    assert ids == [CODER, LLAMA, GEMMA, NOMIC]  # loaded only, even with jit on
    assert set(data["data"][0]) == {"id", "object", "owned_by", "created"}
    assert data["data"][0]["owned_by"] == "llamacpp"
    assert await call(http, "GET", sim.url + "/health") == (200, {"status": "ok"})
    for path in ("/api/v0/models", "/lmstudio-greeting", "/nope"):
        status, _ = await call(http, "GET", sim.url + path)
        assert status == 404, path
    status, err = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": "nope", "messages": HELLO})
    assert status == 404
    assert set(err["error"]) == {"message", "type", "param", "code"}


# --- unknown routes, flavours, status routes -------------------------------------------------------


@pytest.mark.parametrize("flavour", ["0.3", "0.4"])
async def test_unknown_routes_answer_200(flavour: str, sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(flavour=flavour)
    for method, path in [("GET", "/"), ("POST", "/v1/models"), ("OPTIONS", "/v1/chat/completions"),
                         ("GET", "/v1//models"), ("GET", "/api/health")]:  # fmt: skip
        status, body = await call(http, method, sim.url + path)
        assert status == 200
        assert body == {"error": f"Unexpected endpoint or method. ({method} {path})"}


async def test_api_v1_absent_on_03(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(flavour="0.3")
    for method, path in [("GET", "/api/v1/models"), ("POST", "/api/v1/models/load")]:
        status, body = await call(http, method, sim.url + path, {"model": CODER})
        assert (status, body) == (200, {"error": f"Unexpected endpoint or method. ({method} {path})"})
    assert await call(http, "GET", sim.url + "/lms-status") == (200, {"package": "llmster", "version": "0.3.31"})
    status, _ = await call(http, "GET", sim.url + "/api/v0/models")
    assert status == 200


async def test_greeting_and_status(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(version="0.4.99")
    assert await call(http, "GET", sim.url + "/lmstudio-greeting") == (200, {"lmstudio": True})
    assert await call(http, "GET", sim.url + "/lms-status") == (200, {"package": "llmster", "version": "0.4.99"})


# --- inference -------------------------------------------------------------------------------------


async def test_stream_ends_with_usage_and_done(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    body = {"model": CODER, "messages": HELLO, "stream": True, "max_tokens": 5,
            "stream_options": {"include_usage": True}}  # fmt: skip
    async with http.post(sim.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        payloads = sse_payloads(await resp.text())
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == CODER for c in chunks)
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[:5]]
    assert len(tokens) == 5 and all(tokens)
    finish = chunks[5]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "length"
    usage_chunk = chunks[6]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"] == {"prompt_tokens": 2, "completion_tokens": 5, "total_tokens": 7}
    # without include_usage: no usage chunk; the same prompt gives the same text
    body["stream_options"] = {}
    async with http.post(sim.url + "/v1/chat/completions", json=body) as resp:
        again = [json.loads(p) for p in sse_payloads(await resp.text())[:-1]]
    assert len(again) == 6 and [c["choices"][0]["delta"].get("content") for c in again[:5]] == tokens


async def test_text_completion_stream_and_v0_extras(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    status, data = await call(http, "POST", sim.url + "/api/v0/completions", {"model": CODER, "prompt": "def f("})
    assert status == 200 and data["object"] == "text_completion"
    assert data["stats"]["stop_reason"] == "eosFound"
    assert data["model_info"] == {"arch": "qwen2", "quant": "Q4_K_M", "format": "gguf", "context_length": 8192}
    assert set(data["runtime"]) == {"name", "version", "supported_formats"}
    status, data = await call(http, "POST", sim.url + "/api/v0/chat/completions", {"model": LLAMA, "messages": HELLO})
    assert status == 200 and {"stats", "model_info", "runtime"} <= set(data)
    async with http.post(sim.url + "/api/v0/chat/completions",
                         json={"model": LLAMA, "messages": HELLO, "stream": True}) as resp:  # fmt: skip
        payloads = sse_payloads(await resp.text())
    assert payloads[-1] == "[DONE]"
    assert not any({"stats", "model_info", "runtime"} & set(json.loads(p)) for p in payloads[:-1])
    async with http.post(sim.url + "/v1/completions", json={"model": CODER, "prompt": "x", "stream": True}) as resp:
        payloads = sse_payloads(await resp.text())
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2])["choices"][0]["finish_reason"] == "stop"
    assert len(payloads) == 16 + 2


async def test_openai_sdk_chat_and_embeddings(sim_factory: Factory) -> None:
    sim = await sim_factory()
    client = AsyncOpenAI(base_url=sim.url + "/v1", api_key="lm-studio", max_retries=0)
    try:
        reply = await client.chat.completions.create(model=LLAMA, messages=HELLO, max_tokens=4)
        assert reply.model == LLAMA and reply.choices[0].finish_reason == "length"
        assert reply.usage is not None and reply.usage.completion_tokens == 4
        text = reply.choices[0].message.content
        assert text and len(text.split()) == 4
        stream = await client.chat.completions.create(
            model=LLAMA, messages=HELLO, max_tokens=4, stream=True,
            stream_options={"include_usage": True},
        )  # fmt: skip
        parts, usage = [], None
        async for chunk in stream:
            if chunk.choices:
                parts.append(chunk.choices[0].delta.content or "")
            usage = chunk.usage or usage
        assert "".join(parts) == text
        assert usage is not None and usage.total_tokens == 6
        emb = await client.embeddings.create(model=NOMIC, input=["first text", "second"])
        assert [d.index for d in emb.data] == [0, 1]
        vectors = [d.embedding for d in emb.data]
        assert all(len(v) == 768 for v in vectors)
        assert math.isclose(math.fsum(x * x for x in vectors[0]), 1.0, rel_tol=1e-5)
        assert vectors[0] != vectors[1]
        assert emb.usage.prompt_tokens == 3
        again = await client.embeddings.create(model=NOMIC, input="first text", encoding_format="float")
        assert again.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)
    finally:
        await client.close()


async def test_tool_calls(sim_factory: Factory) -> None:
    sim = await sim_factory()
    client = AsyncOpenAI(base_url=sim.url + "/v1", api_key="x", max_retries=0)
    tools: Any = [{"type": "function", "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                       "required": ["city"]}}}]  # fmt: skip
    ask: Any = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]
    try:
        reply = await client.chat.completions.create(model=CODER, messages=ask, tools=tools)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls"
        call_ = choice.message.tool_calls[0]  # type: ignore[index]
        assert call_.function.name == "get_weather"  # type: ignore[union-attr]
        args = json.loads(call_.function.arguments)  # type: ignore[union-attr]
        assert isinstance(args["city"], str) and isinstance(args["days"], int)
        stream = await client.chat.completions.create(model=CODER, messages=ask, tools=tools, stream=True)
        name, arguments, finish = "", "", None
        async for chunk in stream:
            delta = chunk.choices[0].delta
            for piece in delta.tool_calls or []:
                name += piece.function.name or "" if piece.function else ""
                arguments += piece.function.arguments or "" if piece.function else ""
            finish = chunk.choices[0].finish_reason or finish
        assert (name, json.loads(arguments), finish) == ("get_weather", args, "tool_calls")
        plain = await client.chat.completions.create(model=CODER, messages=HELLO, tools=tools)
        assert plain.choices[0].finish_reason == "stop" and plain.choices[0].message.tool_calls is None
        forced = await client.chat.completions.create(
            model=CODER,
            messages=HELLO,
            tools=tools,
            tool_choice="required",
        )
        assert forced.choices[0].finish_reason == "tool_calls"
    finally:
        await client.close()


async def test_response_format(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    url = sim.url + "/v1/chat/completions"
    status, err = await call(http, "POST", url, {"model": CODER, "messages": HELLO,
                                                 "response_format": {"type": "json_object"}})  # fmt: skip
    assert (status, err) == (400, {"error": "'response_format.type' must be 'json_schema' or 'text'"})
    schema = {"type": "object", "properties": {"name": {"type": "string"}, "tags": {"type": "array"}}}
    status, data = await call(http, "POST", url, {"model": CODER, "messages": HELLO, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": schema}}})  # fmt: skip
    assert status == 200
    content = json.loads(data["choices"][0]["message"]["content"])
    assert isinstance(content["name"], str) and isinstance(content["tags"], list)


async def test_images(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    url = sim.url + "/v1/chat/completions"

    def ask(image: str, model_id: str) -> dict[str, Any]:
        parts = [{"type": "text", "text": "what is this"}, {"type": "image_url", "image_url": {"url": image}}]
        return {"model": model_id, "messages": [{"role": "user", "content": parts}]}

    status, err = await call(http, "POST", url, ask("https://example.com/cat.png", GEMMA))
    assert (status, err) == (400, {"error": "'url' field must be a base64 encoded image."})
    status, err = await call(http, "POST", url, ask(PNG, CODER))
    assert (status, err) == (400, {"error": "Model does not support images. Please use a model that does."})
    status, data = await call(http, "POST", url, ask(PNG, GEMMA))
    assert status == 200 and data["model"] == GEMMA


async def test_embedding_errors(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    status, err = await call(http, "POST", sim.url + "/v1/embeddings", {"model": CODER, "input": "x"})
    assert status == 400 and err["error"]["message"].endswith("Model is not embedding.")
    status, err = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": NOMIC, "messages": HELLO})
    assert status == 400 and err["error"]["code"] == "model_not_found"
    status, err = await call(http, "POST", sim.url + "/v1/embeddings", {"model": NOMIC, "input": [[1, 2, 3]]})
    assert (status, err) == (400, {"error": "'input' field must be a string or an array of strings"})
    status, data = await call(http, "POST", sim.url + "/api/v0/embeddings", {"model": NOMIC, "input": "a b c"})
    assert status == 200 and data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}


# --- model resolution quirks -----------------------------------------------------------------------


async def test_single_loaded_model_ignores_name(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(models=[model("only-llm"), model("emb", "embeddings")], jit=False)
    url = sim.url + "/v1/chat/completions"
    status, data = await call(http, "POST", url, {"model": "gpt-4o", "messages": HELLO})
    assert status == 200 and data["model"] == "only-llm"
    await sim.state.catalogue.load("only-llm")  # a second instance: now the name matters
    status, err = await call(http, "POST", url, {"model": "gpt-4o", "messages": HELLO})
    assert status == 400 and err["error"]["code"] == "model_not_found"


async def test_unknown_model_errors_by_version(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    old = await sim_factory(flavour="0.3")
    new = await sim_factory(flavour="0.4")
    body = {"model": "nope", "messages": HELLO}
    assert await call(http, "POST", old.url + "/v1/chat/completions", body) == (404, {"error": {
        "message": 'Model "nope" not found. Please specify a valid model.',
        "type": "invalid_request_error", "param": "model", "code": "model_not_found"}})  # fmt: skip
    status, err = await call(http, "POST", new.url + "/v1/chat/completions", body)
    assert status == 400
    expected = 'Invalid model identifier "nope". Please specify a valid downloaded model (e.g., '
    assert err["error"]["message"].startswith(expected) and CODER in err["error"]["message"]
    assert (err["error"]["type"], err["error"]["param"], err["error"]["code"]) == (
        "invalid_request_error", "model", "model_not_found")  # fmt: skip


async def test_no_models_loaded_by_version(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    models = [model("sleepy", loaded=False)]
    old = await sim_factory(flavour="0.3", jit=False, models=models)
    new = await sim_factory(flavour="0.4", jit=False, models=[model("sleepy", loaded=False)])
    body = {"model": "sleepy", "messages": HELLO}
    status, err = await call(http, "POST", old.url + "/v1/chat/completions", body)
    assert status == 404 and isinstance(err["error"], str) and err["error"].startswith("No models loaded.")
    status, err = await call(http, "POST", new.url + "/v1/chat/completions", body)
    assert status == 400
    assert err["error"]["message"].startswith("No models loaded.")
    assert (err["error"]["type"], err["error"]["param"], err["error"]["code"]) == (
        "invalid_request_error", "model", None)  # fmt: skip
    status, _ = await call(http, "GET", new.url + "/v1/models")
    assert _ == {"object": "list", "data": []}


async def test_instance_and_variant_ids(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    url = sim.url + "/v1/chat/completions"
    status, loaded = await call(http, "POST", sim.url + "/api/v1/models/load", {"model": CODER})
    assert status == 200
    assert loaded == {"type": "llm", "instance_id": f"{CODER}:2", "load_time_seconds": 0.0, "status": "loaded"}
    status, data = await call(http, "POST", url, {"model": f"{CODER}:2", "messages": HELLO})
    assert status == 200 and data["model"] == f"{CODER}:2"
    status, data = await call(http, "POST", url, {"model": f"{CODER}@q4_k_m", "messages": HELLO})
    assert status == 200 and data["model"] == CODER
    _, listed = await call(http, "GET", sim.url + "/v1/models")
    assert f"{CODER}:2" in [e["id"] for e in listed["data"]]


async def test_load_and_unload_endpoints(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(load_seconds=0.05)
    load, unload = sim.url + "/api/v1/models/load", sim.url + "/api/v1/models/unload"
    status, data = await call(http, "POST", load, {"model": MISTRAL, "context_length": 2048, "echo_load_config": True})
    assert status == 200 and data["instance_id"] == MISTRAL and data["load_time_seconds"] >= 0.05
    assert data["load_config"]["context_length"] == 2048
    status, data = await call(http, "POST", load, {"model": NOMIC})
    assert (status, data["type"], data["instance_id"]) == (200, "embedding", f"{NOMIC}:2")
    _, models = await call(http, "GET", sim.url + "/api/v1/models")
    nomic = next(m for m in models["models"] if m["key"] == NOMIC)
    assert [i["id"] for i in nomic["loaded_instances"]] == [NOMIC, f"{NOMIC}:2"]
    assert await call(http, "POST", unload, {"instance_id": f"{NOMIC}:2"}) == (200, {"instance_id": f"{NOMIC}:2"})
    status, err = await call(http, "POST", unload, {"instance_id": f"{NOMIC}:2"})
    assert status == 404 and err["error"]["type"] == "model_not_found" and err["error"]["message"]
    status, err = await call(http, "POST", load, {"model": "no/such-model"})
    assert status == 404 and err["error"]["type"] == "model_not_found" and err["error"]["message"]
    s = await stats(http, sim)
    assert (s["loads_total"], s["unloads_total"]) == (2, 1)
    # manual loads are never JIT: a JIT load does not evict them
    status, _ = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": MISTRAL, "messages": HELLO})
    assert status == 200 and sim.state.catalogue.instances[MISTRAL].jit is False


async def test_jit_load_and_auto_evict(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    models = [model("manual"), model("jit-a", loaded=False), model("jit-b", loaded=False)]
    sim = await sim_factory(models=models, load_seconds=0.05)
    url = sim.url + "/v1/chat/completions"
    first, second = await asyncio.gather(
        # both carry the ttl: which of two concurrent requests reaches the server first is not defined
        call(http, "POST", url, {"model": "jit-a", "messages": HELLO, "ttl": 300}),
        call(http, "POST", url, {"model": "jit-a", "messages": HELLO, "ttl": 300}),
    )
    assert first[0] == second[0] == 200 and first[1]["model"] == second[1]["model"] == "jit-a"
    catalogue = sim.state.catalogue
    assert catalogue.instances["jit-a"].jit and catalogue.instances["jit-a"].ttl == 300
    s = await stats(http, sim)
    assert (s["loads_total"], s["jit_loads_total"]) == (1, 1)  # two requests shared one load
    status, data = await call(http, "POST", url, {"model": "jit-b", "messages": HELLO})
    assert status == 200 and data["model"] == "jit-b"
    assert list(catalogue.instances) == ["manual", "jit-b"]  # jit-a evicted, the manual load untouched
    s = await stats(http, sim)
    assert (s["evictions_total"], s["unloads_total"]) == (1, 1)
    _, v0 = await call(http, "GET", sim.url + "/api/v0/models")
    assert {e["id"]: e["state"] for e in v0["data"]} == {"manual": "loaded", "jit-a": "not-loaded", "jit-b": "loaded"}
    sim.state.settings.auto_evict = False
    await call(http, "POST", url, {"model": "jit-a", "messages": HELLO})
    assert list(catalogue.instances) == ["manual", "jit-b", "jit-a"]


async def test_api_v1_chat(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    url = sim.url + "/api/v1/chat"
    status, data = await call(http, "POST", url, {"model": CODER, "input": "hello there", "max_output_tokens": 3})
    assert status == 200 and data["model_instance_id"] == CODER
    assert data["output"][0]["type"] == "message" and len(data["output"][0]["content"].split()) == 3
    assert data["stats"]["total_output_tokens"] == 3 and data["response_id"].startswith("resp_")
    async with http.post(url, json={"model": CODER, "input": "hello there", "stream": True}) as resp:
        text = await resp.text()
    events = re.findall(r"^event: (\S+)$", text, re.MULTILINE)
    assert events[0] == "chat.start" and events[-1] == "chat.end" and "message.delta" in events
    status, err = await call(http, "POST", url, {"model": "nope", "input": "x"})
    assert status == 400 and err["error"]["type"] == "model_not_found"


# --- auth ------------------------------------------------------------------------------------------


async def test_api_token(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(api_token="sk-lm-abc:def")
    status, err = await call(http, "GET", sim.url + "/v1/models")
    assert status == 401
    assert (err["error"]["type"], err["error"]["code"]) == ("invalid_request", "invalid_api_key")
    assert "'Authorization: Bearer $LM_API_TOKEN'" in err["error"]["message"]
    status, _ = await call(http, "GET", sim.url + "/v1/models", headers={"Authorization": "Bearer wrong"})
    assert status == 401
    for path in ("/api/v0/models", "/nope", "/__sim/stats"):
        status, _ = await call(http, "GET", sim.url + path)
        assert status == 401, path
    good = {"Authorization": "Bearer sk-lm-abc:def"}
    status, data = await call(http, "GET", sim.url + "/v1/models", headers=good)
    assert status == 200 and data["data"]
    assert await call(http, "GET", sim.url + "/lmstudio-greeting") == (200, {"lmstudio": True})
    client = AsyncOpenAI(base_url=sim.url + "/v1", api_key="sk-lm-abc:def", max_retries=0)
    try:
        reply = await client.chat.completions.create(model=CODER, messages=HELLO)
        assert reply.choices[0].message.content
    finally:
        await client.close()


# --- slots, queueing, disconnects ------------------------------------------------------------------


async def test_queueing_at_parallel_cap(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(parallel=1, ttft=0.3)
    body = {"model": CODER, "messages": HELLO}
    tasks = [asyncio.create_task(call(http, "POST", sim.url + "/v1/chat/completions", body)) for _ in range(3)]
    s = await wait_stats(http, sim, lambda s: s["queued"] == 2)
    assert s["inflight"] == 3 and s["instances"][CODER]["active"] == 1 and s["instances"][CODER]["queued"] == 2
    results = await asyncio.gather(*tasks)
    assert [status for status, _ in results] == [200, 200, 200]
    s = await stats(http, sim)
    assert (s["queued"], s["inflight"], s["queued_total"], s["max_inflight_seen"]) == (0, 0, 2, 3)
    assert s["completed_total"] == 3


async def test_disconnect_mid_stream_is_cancelled(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(tokens_per_second=50)
    body = {"model": CODER, "messages": HELLO, "stream": True, "max_tokens": 500}
    resp = await http.post(sim.url + "/v1/chat/completions", json=body)
    first = await resp.content.readline()
    assert first.startswith(b"data: ")
    resp.close()  # drop the connection mid-generation
    s = await wait_stats(http, sim, lambda s: s["cancelled_total"] == 1)
    assert s["inflight"] == 0 and s["completed_total"] == 0 and s["instances"][CODER]["active"] == 0


async def test_disconnect_while_queued_or_waiting(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(parallel=1, ttft=0.5)
    body = {"model": CODER, "messages": HELLO}
    url = sim.url + "/v1/chat/completions"
    holder = asyncio.create_task(call(http, "POST", url, body))
    waiter = asyncio.create_task(call(http, "POST", url, body))
    await wait_stats(http, sim, lambda s: s["queued"] == 1)
    waiter.cancel()  # the client gives up while queued
    s = await wait_stats(http, sim, lambda s: s["cancelled_total"] == 1)
    assert s["queued"] == 0
    holder.cancel()  # and this one during its time to first token
    s = await wait_stats(http, sim, lambda s: s["cancelled_total"] == 2)
    assert (s["inflight"], s["instances"][CODER]["active"], s["completed_total"]) == (0, 0, 0)
    status, _ = await call(http, "POST", url, body)  # the slot was given back
    assert status == 200


# --- fault injection and live config ---------------------------------------------------------------


async def test_error_rate(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(error_rate=1.0)
    status, err = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": CODER, "messages": HELLO})
    assert status == 500 and "crashed" in err["error"]
    status, _ = await call(http, "POST", sim.url + "/v1/embeddings", {"model": NOMIC, "input": "x"})
    assert status == 500
    s = await stats(http, sim)
    assert s["errors_injected_total"] == 2 and s["completed_total"] == 0


async def test_error_rate_is_seeded(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    runs = []
    for _ in range(2):
        sim = await sim_factory(error_rate=0.5, seed=7)
        statuses = []
        for _ in range(20):
            status, _ = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": CODER, "messages": HELLO})
            statuses.append(status)
        runs.append(statuses)
    assert runs[0] == runs[1] and {200, 500} == set(runs[0])


async def test_drop_rate_cuts_stream(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(drop_rate=1.0)
    body = {"model": CODER, "messages": HELLO, "stream": True, "max_tokens": 50}
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(sim.url + "/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            async for line in resp.content:
                received += line
    assert received.startswith(b"data: ") and b"[DONE]" not in received
    s = await stats(http, sim)
    assert s["errors_injected_total"] == 1 and s["completed_total"] == 0


async def test_stall_rate_holds_stream(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory(stall_rate=1.0)
    body = {"model": CODER, "messages": HELLO, "stream": True}
    resp = await http.post(sim.url + "/v1/chat/completions", json=body)
    try:
        assert (await resp.content.readline()).startswith(b"data: ")
        assert await resp.content.readline() == b"\n"
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(resp.content.readline(), 0.3)
    finally:
        resp.close()
    await wait_stats(http, sim, lambda s: s["cancelled_total"] == 1 and s["errors_injected_total"] == 1)


async def test_sim_config_live(sim_factory: Factory, http: aiohttp.ClientSession) -> None:
    sim = await sim_factory()
    url = sim.url + "/__sim/config"
    status, data = await call(http, "POST", url, {"error_rate": 1, "ttft": 0.01, "jit": False})
    assert status == 200
    assert (data["config"]["error_rate"], data["config"]["ttft"], data["config"]["jit"]) == (1.0, 0.01, False)
    status, _ = await call(http, "POST", sim.url + "/v1/chat/completions", {"model": CODER, "messages": HELLO})
    assert status == 500
    _, models = await call(http, "GET", sim.url + "/v1/models")
    assert MISTRAL not in [e["id"] for e in models["data"]]
    status, err = await call(http, "POST", url, {"error_rate": 2, "nonsense": 1})
    assert status == 400 and "error_rate" in err["error"] and "nonsense" in err["error"]
    assert sim.state.settings.error_rate == 1.0  # all or nothing
    status, data = await call(http, "POST", url, {"error_rate": 0, "parallel": 2})
    assert status == 200 and sim.state.catalogue.instances[CODER].parallel == 2
    assert (await call(http, "POST", sim.url + "/v1/chat/completions", {"model": CODER, "messages": HELLO}))[0] == 200
    assert (await stats(http, sim))["completed_total"] == 1
    assert await call(http, "POST", sim.url + "/__sim/reset-stats") == (200, {"ok": True})
    s = await stats(http, sim)
    assert s["completed_total"] == 0 and s["requests_total"] == {"/__sim/stats": 1}


async def test_settings_validation() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        SimSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="duplicate"):
        SimSettings(models=[model("a"), model("a")])
    assert SimSettings(flavour="0.3").version == "0.3.31"
    assert SimSettings().version == "0.4.12"


# --- CLI -------------------------------------------------------------------------------------------


def parse(argv: list[str]) -> Any:
    import argparse

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIM_TOKEN", "sk-lm-x:y")
    args = parse(["--port", "0", "--flavour", "0.3", "--model", "a", "--model", "b", "--no-jit", "--no-auto-evict",
                  "--parallel", "2", "--ttft", "0.5", "--api-token-env", "SIM_TOKEN", "--seed", "3"])  # fmt: skip
    settings = build_settings(args)
    assert [m.id for m in settings.models] == ["a", "b"] and all(m.loaded for m in settings.models)
    assert (settings.flavour, settings.jit, settings.auto_evict, settings.parallel) == ("0.3", False, False, 2)
    assert (settings.api_token, settings.ttft, settings.seed, settings.version) == ("sk-lm-x:y", 0.5, 3, "0.3.31")
    assert len(build_settings(parse(["--port", "0"])).models) == 5
    monkeypatch.delenv("SIM_TOKEN")
    with pytest.raises(ValueError, match="SIM_TOKEN"):
        build_settings(parse(["--port", "0", "--api-token-env", "SIM_TOKEN"]))
    example = load_models_file(REPO / "lmwatch" / "simulator" / "example-models.yaml")
    assert len(example) >= 4 and {m.type for m in example} == {"llm", "vlm", "embeddings"}


def test_models_file_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  - id: x\n    type: chat\n  - id: y\n    contxt_length: 4\n")
    with pytest.raises(ModelsFileError) as info:
        load_models_file(bad)
    assert "models[0].type" in str(info.value) and "models[1].contxt_length" in str(info.value)
    bad.write_text("- just a list\n")
    with pytest.raises(ModelsFileError, match="models"):
        load_models_file(bad)


async def test_cli_subprocess(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    env = {**os.environ, "SIM_TOKEN": "sk-lm-secret:value"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lmwatch.simulator.command", "--port", "0", "--api-token-env", "SIM_TOKEN",
        "--model", "tiny-llm", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        banner = r"lmwatch simulator \(LM Studio 0\.4\.12\) listening on (http://127\.0\.0\.1:\d+)"
        match = re.fullmatch(banner + r" with 1 models \(1 loaded\)\n", line)
        assert match, line
        assert "sk-lm-secret" not in line
        url = match.group(1)
        assert await call(http, "GET", url + "/lmstudio-greeting") == (200, {"lmstudio": True})
        status, data = await call(http, "POST", url + "/v1/chat/completions", {"model": "x", "messages": HELLO},
                                  headers={"Authorization": "Bearer sk-lm-secret:value"})  # fmt: skip
        assert status == 200 and data["model"] == "tiny-llm"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_cli_bad_models_file(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  - id: x\n    loaded: maybe\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lmwatch.simulator.command", "--port", "0", "--models", str(bad),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    assert proc.returncode == 2 and out == b""
    assert b"models[0].loaded" in err and str(bad).encode() in err
