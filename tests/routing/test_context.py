"""The context check: estimates, per-instance fit, the 400 before any backend, calibration from usage,
contexts learned from a backend's own error, and the client's model id kept in answers."""

from __future__ import annotations

import json

import openai
import pytest

from lmwatch.api.errors import api_error
from lmwatch.errors import DomainError
from lmwatch.registry import ModelProfile, ModelType, Registry
from lmwatch.routing.context import DEFAULT_CHARS_PER_TOKEN, context_in_error, fit, fit_plan
from lmwatch.routing.request import Endpoint, ParsedRequest, parse_request
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, fleet
from tests.routing.test_select import chat, model, plan, tiers
from tests.routing.test_select import fleet as snapshot

TWO = {
    "a": [
        model(
            "llama-3.1-8b",
            instance_ids=("llama-3.1-8b", "llama-3.1-8b:2"),
            instance_contexts=(4096, 8192),
            loaded_context_length=4096,
        )
    ]
}


def request(chars: int, endpoint: Endpoint = Endpoint.CHAT, **extra: object) -> ParsedRequest:
    body = {"model": "llama-3.1-8b", "messages": [{"role": "user", "content": "x" * chars}], **extra}
    return parse_request(endpoint, json.dumps(body).encode(), "auto")


def fitted(chars: int, **extra: object) -> list[tuple[str, str]]:
    snap = snapshot(TWO)
    req = request(chars, **extra)
    p = plan(snap, json.loads(req.raw))
    return [t for _, _, targets in tiers(fit_plan(p, req, Registry().outcomes)) for t in targets]


def test_a_request_that_fits_both_instances_may_use_either() -> None:
    assert fitted(1000) == [("a", "llama-3.1-8b"), ("a", "llama-3.1-8b:2")]


def test_a_longer_request_goes_only_to_the_instance_whose_loaded_context_holds_it() -> None:
    assert fitted(20_000) == [("a", "llama-3.1-8b:2")]  # about 5,016 tokens: over 4,096, under 8,192
    assert fitted(12_000, max_tokens=2000) == [("a", "llama-3.1-8b:2")]  # 3,016 + 2,000 reserved


def test_nothing_fits_is_openai_context_length_exceeded_with_the_numbers() -> None:
    with pytest.raises(DomainError) as caught:
        fitted(60_000, max_tokens=100)
    err = api_error(caught.value)
    assert (err.status, err.code, err.param) == (400, "context_length_exceeded", "messages")
    needed = 60_000 / DEFAULT_CHARS_PER_TOKEN + 16 + 100
    assert "maximum context length is 8192 tokens" in err.message and f"about {needed:.0f} tokens" in err.message
    assert "a/llama-3.1-8b 4096" in err.message and "a/llama-3.1-8b:2 8192" in err.message


def test_an_unknown_context_is_not_checked_and_embeddings_are_judged_by_their_longest_input() -> None:
    p = plan(snapshot({"a": [model("phi-3-mini")]}), chat("phi-3-mini"))
    req = request(100_000)
    assert fit_plan(p, req, Registry().outcomes) is p
    body = {"model": "x", "input": ["short", "y" * 9000, "z" * 10]}
    embedding = parse_request(Endpoint.EMBEDDINGS, json.dumps(body).encode(), "auto")
    assert embedding.prompt_chars == 9000


@pytest.mark.parametrize(
    ("message", "context"),
    [
        ("This model's maximum context length is 2048 tokens. However, you requested 9000 tokens", 2048),
        ("Requested tokens (3000) exceed context window of 4096", 4096),
        ("Trying to keep the first 5000 tokens when context the overflows. However, the model is loaded with "
         "context length of 4096", 4096),
        ("something else went wrong", None),
    ],
)  # fmt: skip
def test_the_context_a_backend_states_in_its_error(message: str, context: int | None) -> None:
    assert context_in_error(message) == context


SIM = SimSettings(models=[SimModel(id="meta-llama-3.1-8b-instruct", context_length=4096, max_context_length=32768)])


async def _second_instance(f: Fleet, context: int) -> None:
    await f.sims["studio"].state.catalogue.load("meta-llama-3.1-8b-instruct", context_length=context)
    await f.daemon.control.fleet.poll("studio")


async def test_through_the_sdk_too_long_is_400_before_the_backend_is_asked_and_the_id_is_kept() -> None:
    async with fleet({"studio": SIM}) as f:
        await _second_instance(f, 8192)
        client = f.client()
        stats = f.sims["studio"].state.stats
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(
                model="meta-llama-3.1-8b-instruct", messages=[{"role": "user", "content": "word " * 12_000}]
            )
        assert caught.value.code == "context_length_exceeded"
        assert stats.requests_total.get("/v1/chat/completions", 0) == 0
        # 24,000 characters: about 6,000 tokens, so only the 8,192-token second instance can take it
        long = [{"role": "user", "content": "word " * 4_800}]
        raw = await client.chat.completions.with_raw_response.create(model="meta-llama-3.1-8b-instruct", messages=long)
        assert raw.headers["X-LMWatch-Model"] == "meta-llama-3.1-8b-instruct:2"
        assert raw.parse().model == "meta-llama-3.1-8b-instruct"  # the client's id, not the instance's
        stream = await client.chat.completions.create(model="meta-llama-3.1-8b-instruct", messages=long, stream=True)
        assert {chunk.model async for chunk in stream} == {"meta-llama-3.1-8b-instruct"}


async def test_calibration_from_usage_lets_a_sparse_tokenizer_use_its_real_context() -> None:
    """The simulator counts words as tokens (6 characters each here): once one answer reported its
    usage, a prompt the default estimate would refuse is judged by the learned ratio and served."""
    async with fleet({"studio": SIM}) as f:
        client = f.client()
        text = "abcde " * 3_400  # 20,400 characters: 5,116 tokens by default, 3,400 by the simulator
        with pytest.raises(openai.BadRequestError):
            await client.chat.completions.create(
                model="meta-llama-3.1-8b-instruct", messages=[{"role": "user", "content": text}]
            )
        await client.chat.completions.create(
            model="meta-llama-3.1-8b-instruct", messages=[{"role": "user", "content": "abcde " * 200}]
        )
        ratio = f.outcomes.chars_per_token("studio", "meta-llama-3.1-8b-instruct")
        assert ratio is not None and 6.0 <= ratio <= 6.6
        answer = await client.chat.completions.create(
            model="meta-llama-3.1-8b-instruct", messages=[{"role": "user", "content": text}]
        )
        assert answer.usage is not None and answer.usage.prompt_tokens == 3_400


def test_the_plan_kept_is_exactly_the_targets_whose_own_check_fits() -> None:
    """Whether or not the request fits everywhere (when no target is checked one by one), the plan
    keeps exactly the targets `fit` keeps, around every context, with a denser tokenizer learned on
    one backend, a context learned from another's error and a profile's ratio on a third."""
    contexts = {f"b{i}": 2048 * (1 + i % 4) for i in range(12)}
    snap = snapshot({b: [model("llama-3.1-8b", loaded_context_length=c)] for b, c in contexts.items()})
    registry = Registry()
    outcomes = registry.outcomes
    outcomes.record_prompt("b4", "llama-3.1-8b", 6_000, 2_000)  # 3 characters per token
    outcomes.record_context("b5", "llama-3.1-8b", 800)
    registry.record_profiles([ModelProfile("b8", "llama-3.1-8b", ModelType.LLM, 0.0, chars_per_token=2.5)])
    for chars in range(0, 40_000, 100):
        req = request(chars, max_tokens=500)
        p = plan(snap, json.loads(req.raw))
        targets = [t for tier in p.tiers for t in tier.targets]
        expected = [(t.backend, t.model) for t in targets if fit(req, t, registry.outcomes).fits]
        try:
            kept = [t for _, _, ts in tiers(fit_plan(p, req, registry.outcomes)) for t in ts]
        except DomainError:
            kept = []
        assert kept == expected, chars
