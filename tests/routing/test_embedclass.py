"""`routing.classifier.mode: embedding` over real HTTP to simulated embedding models: the task comes
from the nearest exemplar centroid, answers are cached, and the linear model answers (saying why)
when no embedding model is up, the call fails or the bounded wait runs out."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from lmwatch.api.openai import CLASSIFIER
from lmwatch.config import RoutingConfig, parse_config
from lmwatch.http_client import Pool
from lmwatch.metrics.classifier import EmbeddingMetrics
from lmwatch.routing.embedclass import EmbeddingClassifier, Unavailable, Vector, embed, parse_vectors
from lmwatch.routing.select import Target
from lmwatch.simulator import SimModel, SimSettings
from tests.api.fleets import Fleet, chat, eventually, fleet, route_headers

LLM = SimModel(id="meta-llama-3.1-8b-instruct")
EMBED = SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings")
BOTH = SimSettings(models=[LLM, EMBED])
EMBEDDING = {"classifier": {"mode": "embedding", "embedding": {"timeout": 5}}}


async def warmed(f: Fleet) -> None:
    """The exemplars embedded, so a test's first request does not race their embedding."""
    routing, snap = f.daemon.services.config.config.routing, f.daemon.registry.snapshot()
    await f.daemon.app[CLASSIFIER].warm(routing, snap)


async def ask(f: Fleet, text: str) -> dict[str, str]:
    body = {"model": "auto", **chat(text)}
    async with aiohttp.ClientSession() as http, http.post(f.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200, await resp.text()
        return route_headers(resp.headers)


async def test_the_nearest_exemplars_decide_and_a_repeated_prompt_is_answered_from_the_cache() -> None:
    async with fleet({"studio": BOTH}, routing=EMBEDDING) as f:
        stats = f.sims["studio"].state.stats
        await warmed(f)
        assert stats.embedded_inputs_total == 48  # the exemplars, once
        headers = await ask(f, "Write a poem about the sea at night")
        assert headers["task"] == "creative"
        assert headers["task-reason"].startswith("embedding:text-embedding-nomic-embed-text-v1.5(creative+")
        embedded = stats.embedded_inputs_total
        assert embedded == 49  # then the prompt

        again = await ask(f, "Write a poem about the sea at night")
        assert again["task-reason"] == headers["task-reason"]
        assert stats.embedded_inputs_total == embedded  # the cache answered: no call
        coding = await ask(f, "Fix the bug in this Python function: the loop never ends")
        assert coding["task"] == "coding" and stats.embedded_inputs_total == embedded + 1
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="embedded") == 2
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="cached") == 1
        assert f.metric("lmwatch_classifier_embedding_seconds_count") == 3

        async with aiohttp.ClientSession() as http:
            body = {"model": "auto", **chat("Summarize this passage in three sentences")}
            async with http.post(f.url + "/admin/route/explain", json=body) as resp:
                explained = await resp.json()
        assert explained["task"] == "analysis" and explained["task_reasons"][0].startswith("embedding:")
        assert set(explained["scores"]) == {"coding", "research", "creative", "analysis"}


async def test_configured_example_prompts_add_a_task_and_keywords_still_decide_first() -> None:
    routing = {
        "classifier": {
            "mode": "embedding",
            "embedding": {"model": EMBED.id},
            "examples": {"translation": ["Translate this sentence into French", "Translate into German please"]},
            "keywords": {"legal": ["contract clause"]},
        }
    }
    async with fleet({"studio": BOTH}, routing=routing) as f:
        await warmed(f)
        translated = await ask(f, "Translate into Spanish: where is the station")
        assert translated["task"] == "translation" and translated["task-reason"].startswith("embedding:")
        legal = await ask(f, "Is this contract clause fair?")
        assert (legal["task"], legal["task-reason"]) == ("legal", "keyword:contract clause(legal+1)")
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="keyword") == 1


async def test_without_an_embedding_model_the_linear_model_answers_and_says_why() -> None:
    async with fleet({"studio": SimSettings(models=[LLM])}, routing=EMBEDDING) as f:
        headers = await ask(f, "Write a poem about the sea at night")
        assert headers["task"] == "creative"
        reason = headers["task-reason"]
        assert reason.startswith("linear(embedding no_model), ") and "(creative+" in reason, reason
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="no_model") == 1


async def test_a_slow_or_failing_embedding_model_costs_at_most_the_timeout() -> None:
    routing = {"classifier": {"mode": "embedding", "embedding": {"timeout": 0.2}}}
    async with fleet({"chat": SimSettings(models=[LLM]), "embed": SimSettings(models=[EMBED])}, routing=routing) as f:
        await warmed(f)
        embed = f.sims["embed"].state
        embed.configure({"ttft": 3600.0})  # a model that never answers: only the timeout ends the wait
        slow = await ask(f, "Write a short story about a dragon")
        assert slow["task"] == "creative" and slow["task-reason"].startswith("linear(embedding timeout)")
        embed.configure({"ttft": 0.0, "error_rate": 1.0})
        failed = await ask(f, "Write a limerick about a cat")
        assert failed["task-reason"].startswith("linear(embedding error)")
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="timeout") == 1
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="error") == 1


async def test_the_embedding_takes_a_slot_under_the_backends_concurrency_cap() -> None:
    """A one-slot embedding backend busy with a client's batch: the prompt is not sent alongside
    (no queue here), and the linear model answers, saying so."""
    routing = {**EMBEDDING, "max_queue": 0}
    backends = {"chat": SimSettings(models=[LLM]), "embed": SimSettings(models=[EMBED])}
    async with fleet(backends, routing=routing, embed={"max_concurrency": 1}) as f:
        embedder = f.sims["embed"].state
        await warmed(f)
        exemplars = embedder.stats.embedded_inputs_total
        embedder.configure({"ttft": 1.0})
        batch = asyncio.create_task(f.client().embeddings.create(model=EMBED.id, input=["a document"]))
        await eventually(lambda: embedder.stats.inflight == 1)  # the slot is taken
        headers = await ask(f, "Write a poem about the sea at night")
        assert headers["task"] == "creative" and headers["task-reason"].startswith("linear(embedding busy)")
        assert f.metric("lmwatch_classifier_embedding_lookups_total", outcome="busy") == 1
        await batch
        assert embedder.stats.embedded_inputs_total == exemplars + 1  # the batch's input; the prompt never went


async def test_exemplars_that_failed_to_embed_are_retried_later_not_on_every_request() -> None:
    now = [0.0]
    async with fleet({"embed": SimSettings(models=[EMBED], error_rate=1.0)}) as f:
        routing = parse_config(json.dumps({"backends": [], "routing": EMBEDDING}), env={}).config.routing
        snap = f.daemon.registry.snapshot()
        pool = Pool()

        async def direct(target: Target, texts: list[str], routing: RoutingConfig) -> list[Vector]:
            return await embed(pool, target, texts, routing)

        classifier = EmbeddingClassifier(direct, EmbeddingMetrics(CollectorRegistry()), clock=lambda: now[0])
        stats = f.sims["embed"].state.stats
        try:
            with pytest.raises(Unavailable):
                await classifier.warm(routing, snap)
            calls = stats.errors_total
            first = await classifier.classify(routing, snap, chat("Write a poem"))
            assert first.reasons[0] == "linear(embedding error)" and stats.errors_total == calls
            f.sims["embed"].state.configure({"error_rate": 0.0})
            now[0] = 31.0  # past RETRY_SECONDS: the next request embeds them again
            second = await classifier.classify(routing, snap, chat("Write a poem"))
            assert second.reasons[0].startswith("embedding:")
        finally:
            classifier.close()
            pool.close()


def test_token_vectors_are_mean_pooled_and_malformed_answers_are_refused() -> None:
    tokens = {"data": [{"index": 0, "embedding": [[1.0, 0.0], [0.0, 1.0]]}]}
    [pooled] = parse_vectors(json.dumps(tokens).encode(), 1)
    assert pooled == pytest.approx((2**-0.5, 2**-0.5))
    one = {"data": [{"embedding": [1.0]}]}
    for bad, count in (({"data": [{"embedding": ["x"]}]}, 1), ({"nope": 1}, 1), (one, 2)):
        with pytest.raises(Unavailable) as refused:
            parse_vectors(json.dumps(bad).encode(), count)
        assert refused.value.outcome == "error"


@pytest.mark.parametrize(
    ("classifier", "key"),
    [
        ({"mode": "semantic"}, "mode"),
        ({"embedding": {"timeout": 0}}, "timeout"),
        ({"embedding": {"cache_entries": 0}}, "cache_entries"),
        ({"embedding": {"model": ""}}, "model"),
    ],
)
def test_invalid_embedding_mode_config_names_the_key(classifier: dict[str, Any], key: str) -> None:
    with pytest.raises(ValueError, match=key):
        RoutingConfig.model_validate({"classifier": classifier})
