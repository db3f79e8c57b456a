"""Capability checks on explicit ids and aliases, and variant ids: refused before any backend is asked.

Plans over registry snapshots, then the same through the openai SDK against a simulated LM Studio
(where today's main answered a chat to an embedding model with 502 `model_unavailable`).
"""

from __future__ import annotations

import aiohttp
import openai
import pytest

from lmwatch.api.errors import ApiError, api_error
from lmwatch.errors import DomainError
from lmwatch.routing.request import Endpoint
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import fleet as sim_fleet
from tests.routing.test_select import EMB, VLM, chat, fleet, model, plan, routing, tiers

PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
IMAGE = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
FLEET = {
    "a": [
        model("meta-llama-3.1-8b-instruct", quantization="Q4_K_M"),
        model("nomic-embed-text-v1.5", EMB),
        model("gemma-3-4b", VLM),
    ],
    "b": [model("phi-3-mini-4k")],  # a plain /v1 server: no quantization reported
}


def refusal(body: dict[str, object], endpoint: Endpoint = Endpoint.CHAT, config: str = "") -> ApiError:
    with pytest.raises(DomainError) as caught:
        plan(fleet(FLEET), body, routing(config), endpoint=endpoint)
    return api_error(caught.value)


def test_chat_to_an_embedding_model_is_400_naming_its_type() -> None:
    err = refusal(chat("nomic-embed-text-v1.5"))
    assert (err.status, err.code, err.param) == (400, "model_type_mismatch", "model")
    assert "an embedding model" in err.message and "/v1/embeddings" in err.message


def test_embeddings_from_a_chat_model_is_400_naming_its_type() -> None:
    err = refusal({"model": "meta-llama-3.1-8b-instruct", "input": "x"}, Endpoint.EMBEDDINGS)
    assert (err.status, err.code) == (400, "model_type_mismatch")
    assert "a text model (llm)" in err.message


def test_an_image_to_a_model_without_vision_is_400() -> None:
    body = {"model": "meta-llama-3.1-8b-instruct", "messages": [{"role": "user", "content": [IMAGE]}]}
    err = refusal(body)
    assert (err.status, err.code, err.param) == (400, "image_input_not_supported", "messages")
    assert "does not support images" in err.message
    assert tiers(plan(fleet(FLEET), {**body, "model": "gemma-3-4b"}))[0][2] == [("a", "gemma-3-4b")]


def test_an_alias_passes_over_models_that_cannot_serve_and_refuses_when_none_can() -> None:
    config = "routing: {aliases: {look: [meta-llama-3.1-8b-instruct, gemma-3-4b], text: [phi-3-mini-4k]}}"
    body = {"model": "look", "messages": [{"role": "user", "content": [IMAGE]}]}
    assert tiers(plan(fleet(FLEET), body, routing(config))) == [("explicit", "gemma-3-4b", [("a", "gemma-3-4b")])]
    err = refusal({**body, "model": "text"}, config=config)
    assert (err.status, err.code) == (400, "image_input_not_supported")


def test_a_variant_is_not_served_by_whatever_quantization_is_loaded() -> None:
    assert tiers(plan(fleet(FLEET), chat("meta-llama-3.1-8b-instruct@q4_k_m")))[0][2] == [
        ("a", "meta-llama-3.1-8b-instruct")
    ]
    err = refusal(chat("meta-llama-3.1-8b-instruct@q8_0"))
    assert (err.status, err.code) == (404, "model_not_found")
    assert "a has meta-llama-3.1-8b-instruct (Q4_K_M)" in err.message
    err = refusal(chat("phi-3-mini-4k@q8_0"))  # the server never said which quantization it loaded
    assert err.status == 404 and "b has phi-3-mini-4k (quantization not reported)" in err.message


SIM = SimSettings(
    models=[
        SimModel(id="meta-llama-3.1-8b-instruct"),
        SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings"),
    ]
)


@pytest.mark.parametrize("flavour", ["0.4", "0.3"])
async def test_through_the_sdk_the_type_mismatch_is_400_and_no_backend_is_asked(flavour: str) -> None:
    settings = SimSettings(flavour=flavour, models=SIM.models)  # type: ignore[arg-type]
    async with sim_fleet({"studio": settings}) as f:
        client = f.client()
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="text-embedding-nomic-embed-text-v1.5", messages=[{"role": "user", "content": "hi"}]
            )
        assert caught.value.code == "model_type_mismatch" and "embedding model" in caught.value.message
        with pytest.raises(openai.BadRequestError) as caught:
            await client.embeddings.create(model="meta-llama-3.1-8b-instruct", input="hi")
        assert caught.value.code == "model_type_mismatch"
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.chat.completions.create(
                model="meta-llama-3.1-8b-instruct@q8_0", messages=[{"role": "user", "content": "hi"}]
            )
        assert "(Q4_K_M)" in not_found.value.message
        with pytest.raises(openai.BadRequestError) as pictured:
            await client.chat.completions.create(
                model="meta-llama-3.1-8b-instruct",
                messages=[{"role": "user", "content": [IMAGE]}],  # type: ignore[list-item]
            )
        assert (
            pictured.value.code == "image_input_not_supported" and "does not support images" in pictured.value.message
        )
        assert f.sims["studio"].state.stats.requests_total.get("/v1/chat/completions", 0) == 0


async def test_a_plain_v1_server_gets_its_models_capabilities_from_the_table() -> None:
    """A plain OpenAI-compatible server lists ids only: /status and /metrics say what routing knows
    (gemma-3 sees images, qwen2.5-coder calls tools), from the table; `routing.capabilities` counts."""
    settings = SimSettings(
        flavour="openai",
        models=[
            SimModel(id="google/gemma-3-4b", type="vlm"),
            SimModel(id="qwen2.5-coder-7b-instruct"),
            SimModel(id="my-eye-1b"),
        ],
    )
    extra = {"capabilities": {"my-eye": {"match": ["my-eye"], "roles": ["vision"], "vision": True}}}
    async with sim_fleet({"plain": settings}, routing=extra) as f, aiohttp.ClientSession() as http:
        async with http.get(f.url + "/status") as resp:
            [backend] = (await resp.json())["backends"]
        async with http.get(f.url + "/metrics") as resp:
            metrics = await resp.text()
    found = {m["id"]: m for m in backend["models"]}
    assert (found["google/gemma-3-4b"]["model_type"], found["google/gemma-3-4b"]["vision"]) == ("vlm", True)
    assert (found["my-eye-1b"]["model_type"], found["my-eye-1b"]["vision"]) == ("vlm", True)
    coder = found["qwen2.5-coder-7b-instruct"]
    assert (coder["model_type"], coder["vision"], coder["tool_use"]) == ("llm", False, True)
    assert 'lmwatch_model_loaded{backend="plain",model="google/gemma-3-4b",model_type="vlm"} 1.0' in metrics
