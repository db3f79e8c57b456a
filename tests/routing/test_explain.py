"""`/admin/route/explain` per candidate: context fit, capability and speed, as the router decides."""

from __future__ import annotations

from typing import Any

import aiohttp

from lmwatch.registry import ModelProfile, ModelType
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, fleet

SIM = SimSettings(
    models=[
        SimModel(id="meta-llama-3.1-8b-instruct", context_length=4096),
        SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings", context_length=2048),
    ]
)


async def explain(f: Fleet, body: dict[str, Any]) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.post(f.url + "/admin/route/explain", json=body) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def test_candidates_say_whether_they_fit_and_how_fast_they_are_expected_to_be() -> None:
    async with fleet({"studio": SIM}) as f:
        await f.sims["studio"].state.catalogue.load("meta-llama-3.1-8b-instruct", context_length=8192)
        await f.daemon.control.fleet.poll("studio")
        f.daemon.registry.record_profiles(
            [
                ModelProfile(
                    backend="studio",
                    model="meta-llama-3.1-8b-instruct",
                    model_type=ModelType.LLM,
                    measured_at=1.0,
                    ttft_short_seconds=0.25,
                    generation_tokens_per_second=50.0,
                )
            ]
        )
        long = {"model": "meta-llama-3.1-8b-instruct", "messages": [{"role": "user", "content": "word " * 4_800}]}
        answer = await explain(f, long)
        by_model = {c["model"]: c for c in answer["candidates"]}
        first, second = by_model["meta-llama-3.1-8b-instruct"], by_model["meta-llama-3.1-8b-instruct:2"]
        assert not first["usable"] and "skipped: needs about 6016 tokens, its loaded context is 4096" in first["reason"]
        assert first["fit"] == {
            "fits": False,
            "needed_tokens": 6016,
            "prompt_tokens_estimated": 6016,
            "context_length": 4096,
            "chars_per_token": 4.0,
            "calibrated": False,
        }
        assert second["usable"] and second["fit"]["fits"] and answer["chosen"]["model"] == second["model"]
        assert (first["decision"], second["decision"]) == ("skipped", "chosen")
        assert first["profile"] == second["profile"] and second["profile"]["generation_tokens_per_second"] == 50.0
        assert second["speed"] == {
            "expected_seconds": 0.25 + 200 / 50.0,
            "source": "profile",
            "ttft_seconds": 0.25,
            "tokens_per_second": 50.0,
            "prompt_tokens_per_second": None,
        }

        auto = await explain(f, {"model": "auto", "messages": [{"role": "user", "content": "word " * 12_000}]})
        assert auto["chosen"] is None and not any(c["fit"]["fits"] for c in auto["candidates"])
        assert "maximum context length is 8192 tokens" in auto["unavailable"]
        assert auto["passed_over"] == [
            {
                "backend": "studio",
                "model": "text-embedding-nomic-embed-text-v1.5",
                "capability": "the model 'text-embedding-nomic-embed-text-v1.5' is an embedding model: it serves "
                "/v1/embeddings, not /v1/chat/completions",
            }
        ]
