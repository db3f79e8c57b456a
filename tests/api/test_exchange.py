"""Fallback, retries, breakers, queueing, cancellation and mid-stream failure, through the openai SDK
against simulated backends with injected faults. Every fallback step has its test.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import time
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp import web

from lmwatch.api.calls import Stream
from lmwatch.simulator import SimSettings
from tests.api.fleets import Fleet, chat, eventually, fleet, models, route_headers

CODER = "qwen2.5-coder-7b-instruct"
LLAMA = "meta-llama-3.1-8b-instruct"
FIRST = {"weight": 100.0}
"""Backend options that make the balancer try a backend first (the test needs a known order)."""


def sim(*ids: str, **knobs: Any) -> SimSettings:
    return SimSettings(models=models(*ids), **knobs)


async def ask(f: Fleet, model: str = CODER, **extra: Any) -> tuple[dict[str, str], Any]:
    raw = await f.client().chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": "hello"}], **extra
    )
    return route_headers(raw.headers), raw.parse()


async def test_same_model_on_another_backend() -> None:
    async with fleet({"a": sim(CODER, error_rate=1), "b": sim(CODER)}, a=FIRST) as f:
        headers, answer = await ask(f)
        assert (headers["backend"], headers["route"]) == ("b", "failover")
        assert answer.choices[0].message.content
        assert f.sims["a"].state.stats.errors_injected_total == 1
        assert f.metric("lmwatch_fallbacks_total", from_backend="a", to_backend="b", reason="http_5xx") == 1
        assert f.metric("lmwatch_requests_total", backend="b", route="failover", code="200") == 1


async def test_next_preferred_model() -> None:
    routing = {"preferences": {"coding": ["deepseek-coder", "qwen2.5-coder"]}}
    async with fleet({"a": sim("deepseek-coder-6.7b-instruct", error_rate=1), "b": sim(CODER)}, routing) as f:
        headers, _ = await ask(f, "auto", extra_headers={"X-LMWatch-Task": "coding"})
        assert (headers["backend"], headers["model"], headers["route"]) == ("b", CODER, "failover")
        # and without the failure, the first preference serves with route `preference`
        f.sims["a"].settings.error_rate = 0
        headers, _ = await ask(f, "auto", extra_headers={"X-LMWatch-Task": "coding"})
        assert (headers["model"], headers["route"]) == ("deepseek-coder-6.7b-instruct", "preference")


@pytest.fixture
def cloud_key(monkeypatch: pytest.MonkeyPatch) -> str:
    key = "sk-cloud-test-key-0123456789"
    monkeypatch.setenv("LMWATCH_TEST_CLOUD_KEY", key)
    return key


async def test_cloud_is_the_last_resort_and_local_only_forbids_it(cloud_key: str) -> None:
    provider = await_cloud = SimSettings(flavour="openai", models=models("gpt-4o-mini"), api_token=cloud_key)
    async with fleet({"cloudsim": provider}) as cloud_fleet:
        url = cloud_fleet.sims["cloudsim"].url + "/v1"
        routing = {
            "cloud": {
                "allowed": True,
                "providers": [
                    {
                        "name": "hosted",
                        "base_url": url,
                        "api_key_env": "LMWATCH_TEST_CLOUD_KEY",
                        "models": {"default": "gpt-4o-mini"},
                    }
                ],
            }
        }
        async with fleet({"a": sim(CODER, error_rate=1)}, routing) as f:
            headers, answer = await ask(f)
            assert (headers["backend"], headers["model"], headers["route"]) == ("cloud:hosted", "gpt-4o-mini", "cloud")
            assert answer.model == "gpt-4o-mini"
            assert f.metric("lmwatch_fallbacks_total", from_backend="a", to_backend="cloud:hosted") == 1
            assert f.metric("lmwatch_tokens_total", backend="cloud:hosted") > 0
            assert f.metric("lmwatch_cloud_cost_avoided_dollars_total") == 0  # cloud tokens save nothing
            with pytest.raises(openai.APIStatusError) as caught:
                await ask(f, extra_headers={"X-LMWatch-Local-Only": "true"})
            assert caught.value.status_code == 502  # local was tried and failed; cloud was not allowed
            assert "every backend failed" in caught.value.message
            f.sims["a"].settings.error_rate = 0
            headers, _ = await ask(f)
            assert headers["route"] == "explicit"  # local works again: no cloud
            assert f.metric("lmwatch_cloud_cost_avoided_dollars_total", backend="a", task="research") > 0
        assert await_cloud.api_token == cloud_key


async def test_cloud_forbidden_by_config(cloud_key: str) -> None:
    routing = {
        "cloud": {
            "allowed": False,
            "providers": [
                {
                    "name": "hosted",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": "LMWATCH_TEST_CLOUD_KEY",
                    "models": {"default": "gpt-4o-mini"},
                }
            ],
        }
    }
    async with fleet({"a": sim(CODER, error_rate=1)}, routing) as f:
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(f)
        assert caught.value.status_code == 502 and "cloud" not in caught.value.message


async def test_transient_errors_retry_with_backoff_then_fail_over() -> None:
    backends = {"a": sim(CODER), "b": sim(CODER)}
    async with fleet(backends, {"retry_backoff": 0.05}, a={**FIRST, "retry_attempts": 3}) as f:
        await f.sims["a"].stop()  # the registry still has `a` up (no poll yet): connections are refused
        headers, _ = await ask(f)
        assert (headers["backend"], headers["route"]) == ("b", "failover")
        assert f.metric("lmwatch_fallbacks_total", from_backend="a", to_backend="b", reason="connect") == 1


async def test_single_backend_is_retried_then_502(http: aiohttp.ClientSession) -> None:
    async with fleet({"a": sim(CODER)}, {"retry_backoff": 0.05}, a={"retry_attempts": 3}) as f:
        await f.sims["a"].stop()
        started = time.monotonic()
        async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER)) as resp:
            body = await resp.json()
        assert resp.status == 502 and body["error"]["code"] == "upstream_failed"
        assert body["error"]["message"].count("a (qwen2.5-coder-7b-instruct): connect") == 3
        assert time.monotonic() - started >= 0.05 * 1.5 * 0.5  # two backoffs, jittered down to half
        assert f.metric("lmwatch_requests_total", backend="a", code="502") == 1


@pytest.fixture
async def http() -> Any:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_stream_failing_before_the_first_byte_fails_over() -> None:
    async with fleet({"a": sim(CODER, error_rate=1), "b": sim(CODER)}, a=FIRST) as f:
        raw = await f.client().chat.completions.with_raw_response.create(
            model=CODER, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert (route_headers(raw.headers)["backend"], route_headers(raw.headers)["route"]) == ("b", "failover")
        assert "".join([c.choices[0].delta.content or "" async for c in raw.parse() if c.choices])


async def test_mid_stream_failure_ends_with_an_error_event_and_no_replay() -> None:
    async with fleet({"a": sim(CODER, drop_rate=1, max_tokens_default=40), "b": sim(CODER)}, a=FIRST) as f:
        stream = await f.client().chat.completions.create(
            model=CODER, messages=[{"role": "user", "content": "hi"}], stream=True
        )
        received: list[str] = []
        with pytest.raises(openai.APIError) as caught:
            async for c in stream:
                received += [c.choices[0].delta.content or ""] if c.choices else []
        assert received  # some tokens arrived before the cut...
        assert "upstream a failed mid-stream" in caught.value.message
        assert f.sims["b"].state.stats.requests_total.get("/v1/chat/completions", 0) == 0  # ...and no replay
        assert f.metric("lmwatch_requests_total", backend="a", code="stream_error") == 1


async def test_a_stalled_stream_hits_the_idle_timeout(http: aiohttp.ClientSession) -> None:
    async with fleet({"a": sim(CODER, stall_rate=1)}, {"idle_timeout": 0.3}) as f:
        started = time.monotonic()
        async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER, stream=True)) as resp:
            text = await resp.text()
        assert 0.3 <= time.monotonic() - started < 5
        last = [e for e in text.split("\n\n") if e][-1]
        error = json.loads(last.removeprefix("data: "))["error"]
        assert error["code"] == "upstream_failed" and "idle timeout" in error["message"]
        assert "[DONE]" not in text


async def test_slow_generation_is_never_cut_by_a_total_cap(http: aiohttp.ClientSession) -> None:
    slow = sim(CODER, tokens_per_second=20, max_tokens_default=16)  # ~0.8 s in all, 50 ms between tokens
    async with fleet({"a": slow}, {"idle_timeout": 0.25}) as f:
        async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER, stream=True)) as resp:
            text = await resp.text()
        assert text.rstrip().endswith("data: [DONE]")


async def test_client_disconnect_cancels_the_upstream_generation(http: aiohttp.ClientSession) -> None:
    slow = sim(CODER, tokens_per_second=20, max_tokens_default=200)
    async with fleet({"a": slow}) as f:
        async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER, stream=True)) as resp:
            await resp.content.readuntil(b"\n\n")  # the first token arrived: now hang up
            resp.close()
        stats = f.sims["a"].state.stats
        await eventually(lambda: stats.cancelled_total == 1)
        assert stats.completed_total == 0
        await eventually(lambda: f.outcomes.inflight.get("a") == 0)
        await eventually(lambda: f.metric("lmwatch_requests_total", backend="a", code="499") == 1)


async def test_non_streamed_disconnect_cancels_upstream_when_handlers_are_cancelled(
    monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    """A non-streamed answer has no chunk to fail on: the daemon's runner must cancel handlers
    (aiohttp `handler_cancellation=True`); then the waiting upstream call is cut at once."""
    monkeypatch.setattr(web, "AppRunner", functools.partial(web.AppRunner, handler_cancellation=True))
    async with fleet({"a": sim(CODER, ttft=30)}) as f:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.3):
                await http.post(f.url + "/v1/chat/completions", json=chat(model=CODER))
        stats = f.sims["a"].state.stats
        await eventually(lambda: stats.cancelled_total == 1)
        await eventually(lambda: f.outcomes.inflight.get("a") == 0)


async def test_queueing_at_the_concurrency_cap() -> None:
    slow = sim(CODER, ttft=0.2)
    async with fleet({"a": slow}, a={"max_concurrency": 2}) as f:
        seen_queue: list[float] = []

        async def watch() -> None:
            while True:
                seen_queue.append(f.metric("lmwatch_queue_depth", backend="a"))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        answers = await asyncio.gather(*(ask(f) for _ in range(6)))
        watcher.cancel()
        assert all(h["backend"] == "a" for h, _ in answers)
        assert f.sims["a"].state.stats.max_inflight_seen == 2  # never more than the cap reached the server
        assert max(seen_queue) >= 3
        assert f.outcomes.queued["a"] == 0 and f.outcomes.inflight["a"] == 0


@pytest.mark.parametrize(
    ("flavour", "in_flight", "cap", "cap_from"),
    [
        ("openai", 8, None, "openai default"),  # vLLM, llama.cpp -np: they batch, lmwatch does not cap
        ("0.3", 4, 4, "lmstudio-v0 default"),  # LM Studio that reports no slots: its default of 4
    ],
)
async def test_the_default_cap_is_the_flavours(
    http: aiohttp.ClientSession, flavour: str, in_flight: int, cap: int | None, cap_from: str
) -> None:
    async with fleet({"a": sim(CODER, ttft=0.3, flavour=flavour, parallel=16)}) as f:
        await asyncio.gather(*(ask(f) for _ in range(8)))
        assert f.sims["a"].state.stats.max_inflight_seen == in_flight
        async with http.get(f.url + "/status") as resp:
            [backend] = (await resp.json())["backends"]
        assert (backend["max_concurrency"], backend["max_concurrency_from"]) == (cap, cap_from)


async def test_queue_wait_is_bounded_then_503_with_retry_after(http: aiohttp.ClientSession) -> None:
    async with fleet({"a": sim(CODER, ttft=1.0)}, {"queue_timeout": 0.2}, a={"max_concurrency": 1}) as f:
        first = asyncio.create_task(ask(f))
        await eventually(lambda: f.outcomes.inflight.get("a") == 1)
        async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER)) as resp:
            body = await resp.json()
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert "queue_timeout" in body["error"]["message"]
        await first


async def test_breaker_opens_skips_the_backend_and_shows_in_metrics() -> None:
    routing = {"breaker": {"failures": 2, "cooldown": 30}}
    async with fleet({"a": sim(CODER, error_rate=1), "b": sim(CODER)}, routing, a=FIRST) as f:
        for _ in range(2):
            assert (await ask(f))[0]["backend"] == "b"
        assert f.metric("lmwatch_circuit_state", backend="a", model=CODER, state="open") == 1
        headers, _ = await ask(f)
        assert headers["backend"] == "b"
        assert f.sims["a"].state.stats.errors_injected_total == 2  # the third request never reached `a`
        assert f.metric("lmwatch_fallbacks_total", from_backend="a", to_backend="b", reason="breaker_open") == 1
        [view] = [v for v in f.outcomes.view().breakers if v.backend == "a"]
        assert view.reason == "http_5xx" and view.retry_at is not None


async def test_lm_studio_answering_with_another_model_fails_over() -> None:
    """LM Studio with one LLM loaded ignores the requested name: lmwatch notices and moves on."""
    async with fleet({"a": sim(CODER, LLAMA, jit=False), "b": sim(CODER)}, a=FIRST) as f:
        f.sims["a"].state.catalogue.unload(CODER)  # behind the registry's back (next poll is a minute away)
        headers, answer = await ask(f)
        assert (headers["backend"], answer.model) == ("b", CODER)
        # and the watcher was asked to re-poll `a`, so the registry catches up at once
        await f.daemon.registry.wait_for(
            lambda s: not any(m.loaded and m.id == CODER for m in s.backends["a"].models), timeout=5
        )


async def test_explicit_unloaded_model_needs_allow_jit(http: aiohttp.ClientSession) -> None:
    settings = SimSettings(models=[*models(CODER), *models("mistral-7b-instruct-v0.3")])
    settings.models[1].loaded = False
    async with (
        fleet({"a": settings}) as f,
        http.post(f.url + "/v1/chat/completions", json=chat(model="mistral-7b-instruct-v0.3")) as resp,
    ):
        assert resp.status == 503
        assert "'mistral-7b-instruct-v0.3' loaded" in (await resp.json())["error"]["message"]
    async with fleet({"a": settings}, {"allow_jit": True}) as f:
        headers, answer = await ask(f, "mistral-7b-instruct-v0.3")
        assert answer.model == "mistral-7b-instruct-v0.3" and headers["route"] == "explicit"
        stats = f.sims["a"].state.stats  # placed through the load API, not JIT (no auto-evict)
        assert (stats.loads_total, stats.jit_loads_total) == (1, 0)


async def test_backend_token_is_sent_and_never_leaks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LMWATCH_TEST_BACKEND_TOKEN", "sk-lm-abcdefgh:correcttoken0123456")
    protected = sim(CODER, api_token="sk-lm-abcdefgh:correcttoken0123456")
    async with fleet({"a": protected}, a={"api_token_env": "LMWATCH_TEST_BACKEND_TOKEN"}) as f:
        headers, _ = await ask(f)
        assert headers["backend"] == "a"
        f.sims["a"].settings.api_token = "sk-lm-abcdefgh:rotatedtoken99999999"
        with pytest.raises(openai.APIStatusError) as caught:
            await ask(f)
        assert "refused lmwatch's credentials" in caught.value.message
        assert "correcttoken" not in json.dumps(caught.value.body)


async def test_an_unreadable_token_file_fails_over_without_a_500(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lmwatch.config.TOKEN_FILE_TTL_SECONDS", 0.0)  # no caching: the next read sees the change
    token = tmp_path / "token"
    token.write_text("sk-lm-abcdefgh:filetoken0123456789")
    async with fleet({"a": sim(CODER), "b": sim(CODER)}, a={"api_token_file": str(token), **FIRST}) as f:
        assert (await ask(f))[0]["backend"] == "a"
        token.unlink()  # re-read (rotation without restart): now it is gone
        headers, _ = await ask(f)
        assert headers["backend"] == "b"
        assert f.metric("lmwatch_fallbacks_total", from_backend="a", to_backend="b", reason="bad_config") == 1


async def test_a_client_gone_at_the_very_end_of_a_stream_is_a_499(
    monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    from lmwatch.api import sse_relay

    class LeavingAtTheEnd:
        """The stream the relay writes to, whose client is gone when it is ended."""

        def __init__(self, out: Stream) -> None:
            self.out = out

        async def write(self, data: bytes) -> None:
            await self.out.write(data)

        async def write_eof(self, data: bytes = b"") -> None:
            raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    open_stream = sse_relay.open_stream

    async def leaving_at_the_end(*args: Any) -> Stream:
        return LeavingAtTheEnd(await open_stream(*args))

    monkeypatch.setattr(sse_relay, "open_stream", leaving_at_the_end)
    async with fleet({"a": sim(CODER)}) as f:
        with contextlib.suppress(aiohttp.ClientError):
            async with http.post(f.url + "/v1/chat/completions", json=chat(model=CODER, stream=True)) as resp:
                await resp.read()
        await eventually(lambda: f.metric("lmwatch_requests_total", backend="a", code="499") == 1)
        assert f.metric("lmwatch_requests_total", code="500") == 0
        assert f.outcomes.inflight.get("a") == 0


async def test_embeddings_are_batched_across_backends_and_reassembled_in_order(http: aiohttp.ClientSession) -> None:
    emb = "text-embedding-nomic-embed-text-v1.5"
    settings = SimSettings(models=models(emb, kind="embeddings"))
    inputs = [f"sentence number {i}" for i in range(10)]
    async with fleet({"a": settings, "b": settings}, {"embedding_batch_size": 4}) as f:
        raw = await f.client().embeddings.with_raw_response.create(model="auto", input=inputs)
        result = raw.parse()
        assert [d.index for d in result.data] == list(range(10))
        assert set(route_headers(raw.headers)["backend"].split(",")) == {"a", "b"}
        assert result.usage.prompt_tokens > 0
        async with http.post(f.sims["a"].url + "/v1/embeddings", json={"model": emb, "input": inputs}) as resp:
            direct = await resp.json()
        for got, want in zip(result.data, direct["data"], strict=True):  # the SDK moves float32 (base64)
            assert got.embedding == pytest.approx(want["embedding"], rel=1e-6, abs=1e-7)
        assert sum(s.state.stats.requests_total.get("/v1/embeddings", 0) for s in f.sims.values()) == 4


async def test_metrics_pass_promtool_after_traffic(http: aiohttp.ClientSession) -> None:
    async with fleet({"a": sim(CODER, error_rate=1), "b": sim(CODER)}, {"breaker": {"failures": 1}}, a=FIRST) as f:
        await ask(f)
        await ask(f, "auto")
        stream = await f.client().chat.completions.create(
            model=CODER, messages=[{"role": "user", "content": "x"}], stream=True
        )
        [c async for c in stream]
        async with http.post(f.url + "/v1/chat/completions", data=b"{") as resp:
            assert resp.status == 400
        async with http.get(f.url + "/metrics") as resp:
            text = await resp.text()
    for name in (
        "lmwatch_requests_total",
        "lmwatch_request_duration_seconds_bucket",
        "lmwatch_time_to_first_token_seconds_bucket",
        "lmwatch_tokens_total",
        "lmwatch_inflight_requests",
        "lmwatch_queue_depth",
        "lmwatch_fallbacks_total",
        "lmwatch_overhead_seconds_bucket",
        "lmwatch_circuit_state",
        "lmwatch_cloud_cost_avoided_dollars_total",
    ):
        assert f"\n{name}" in text, name
    check = await asyncio.create_subprocess_exec(
        "promtool",
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await check.communicate(text.encode())
    assert check.returncode == 0, output.decode()


async def test_a_buffered_answer_over_the_cap_is_a_clear_502_and_streams_are_not_capped(
    http: aiohttp.ClientSession,
) -> None:
    async with fleet({"a": sim(CODER)}, {"max_answer_bytes": 200, "breaker": {"failures": 1}}) as f:
        for _ in range(2):  # a breaker fed by it would be open for the second
            async with http.post(f.url + "/v1/chat/completions", json=chat("write a long story", model=CODER)) as resp:
                body = await resp.json()
            assert (resp.status, body["error"]["code"]) == (502, "upstream_failed")
            assert (
                "answer_too_large" in body["error"]["message"]
                and "routing.max_answer_bytes" in body["error"]["message"]
            )
        assert f.metric("lmwatch_circuit_state", backend="a", model=CODER, state="open") == 0
        chunks = [
            c
            async for c in await f.client().chat.completions.create(
                model=CODER, messages=[{"role": "user", "content": "write a long story"}], stream=True
            )
        ]
        assert len(chunks) > 3
