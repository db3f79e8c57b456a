"""Measure one loaded model: time to first token, prompt and generation speed, throughput under load.

The measurements, in order, each on a fresh prompt (a nonce first, so no prefix cache answers):

1. a warm-up request (discarded: the first request after a load pays for caches and allocation);
2. time to first token for a short and a long prompt, as the wall time of a one-token answer (the
   usage it reports gives the prompt tokens; the long prompt is about a quarter of the loaded
   context, at most `long_prompt_tokens`); prompt processing speed is the extra prompt tokens of the
   long one divided by its extra time, which cancels the fixed per-request cost;
3. generation speed from one stream of `tokens` tokens (the better of two): tokens after the first divided by the time
   from the first to the last text chunk;
4. throughput as concurrency rises (1, 2, 4, ... up to the model's parallel slots): completion tokens
   of all streams divided by the wall time.

Embedding models get step 2 only, with one short and one long input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from lmwatch.backends.base import error_message
from lmwatch.registry import BackendInfo, ModelInfo, ModelProfile, ModelType, ThroughputPoint

DEFAULT_TOKENS = 64
DEFAULT_LONG_PROMPT_TOKENS = 1024
MAX_CONCURRENCY = 8
_FILLER = (
    "The quick survey of local servers found that each machine kept its models warm, answered in "
    "order, and reported how many tokens it read and wrote for every request it served. "
)
_COUNT = "Count from 1 to 500, one number after another, separated by spaces."


class MeasureError(Exception):
    """The backend did not answer a measurement request usefully (the message says what it said)."""


@dataclass(frozen=True)
class Options:
    tokens: int = DEFAULT_TOKENS
    """Completion tokens asked for in each generation request."""
    long_prompt_tokens: int = DEFAULT_LONG_PROMPT_TOKENS
    max_concurrency: int = MAX_CONCURRENCY
    repeats: int = 2
    """Runs of each latency and single-stream measurement; the best counts (noise only adds time)."""


@dataclass(frozen=True)
class _Timed:
    seconds: float
    prompt_tokens: int | None
    chars: int


@dataclass(frozen=True)
class _Stream:
    started: float
    first: float | None
    last: float | None
    ended: float
    tokens: int

    @property
    def tokens_per_second(self) -> float | None:
        if self.first is None or self.last is None or self.tokens < 2 or self.last <= self.first:
            return None
        return (self.tokens - 1) / (self.last - self.first)


class Profiler:
    """Sends the measurement requests straight to a backend (not through the router's gate)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        clock: Callable[[], float] = time.perf_counter,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._session = session
        self._clock = clock
        self._wall = wall

    async def measure(self, backend: BackendInfo, model: ModelInfo, options: Options | None = None) -> ModelProfile:
        options = options or Options()
        instance = model.instance_ids[0] if model.instance_ids else model.id
        call = _Caller(self._session, backend, instance, self._clock)
        context = model.context_of(instance)
        long_tokens = min(options.long_prompt_tokens, context // 4) if context else options.long_prompt_tokens
        embedding = model.model_type is ModelType.EMBEDDINGS
        profile = ModelProfile(
            backend=backend.name,
            model=model.id,
            model_type=model.model_type,
            measured_at=self._wall(),
            quantization=model.quantization,
            context_length=context,
        )
        await call.timed("warm up", embedding)
        short = await call.best("Say hi.", embedding, options.repeats)
        long = await call.best(_filler(long_tokens), embedding, options.repeats)
        profile = _with_prompt_speed(profile, short, long)
        if embedding:
            return profile
        slots = backend.config.max_concurrency or model.parallel or 1
        levels = [c for c in (1, 2, 4, 8, 16) if c <= min(slots, options.max_concurrency)]
        alone = [await call.stream(options.tokens) for _ in range(max(1, options.repeats))]
        points = [_point(1, [max(alone, key=lambda s: s.tokens_per_second or 0.0)])]
        for concurrency in levels[1:]:
            streams = await asyncio.gather(*(call.stream(options.tokens) for _ in range(concurrency)))
            points.append(_point(concurrency, streams))
        single = points[0].per_request_tokens_per_second
        return dataclasses.replace(profile, generation_tokens_per_second=single, throughput=tuple(points))


def _filler(tokens: int) -> str:
    """About `tokens` tokens of plain prose (at 4 characters a token; the usage says how many exactly)."""
    repeats = max(1, tokens * 4 // len(_FILLER))
    return "Read this and answer with one word. " + _FILLER * repeats


def _with_prompt_speed(profile: ModelProfile, short: _Timed, long: _Timed) -> ModelProfile:
    speed = ratio = None
    if short.prompt_tokens and long.prompt_tokens and long.prompt_tokens > short.prompt_tokens:
        extra_tokens = long.prompt_tokens - short.prompt_tokens
        ratio = (long.chars - short.chars) / extra_tokens
        extra_seconds = long.seconds - short.seconds
        speed = extra_tokens / extra_seconds if extra_seconds > 0.001 else None  # too fast to tell
    return dataclasses.replace(
        profile,
        ttft_short_seconds=short.seconds,
        ttft_long_seconds=long.seconds,
        prompt_tokens_short=short.prompt_tokens,
        prompt_tokens_long=long.prompt_tokens,
        prompt_tokens_per_second=speed,
        chars_per_token=ratio,
    )


def _point(concurrency: int, streams: list[_Stream]) -> ThroughputPoint:
    wall = max(s.ended for s in streams) - min(s.started for s in streams)
    speeds = [v for s in streams if (v := s.tokens_per_second) is not None]
    total = sum(s.tokens for s in streams)
    return ThroughputPoint(
        concurrency=concurrency,
        tokens_per_second=total / wall if wall > 0 else 0.0,
        per_request_tokens_per_second=sum(speeds) / len(speeds) if speeds else None,
    )


class _Caller:
    """The requests of one measurement: the backend's token, its timeout, the instance id."""

    def __init__(
        self, session: aiohttp.ClientSession, backend: BackendInfo, model: str, clock: Callable[[], float]
    ) -> None:
        self._session = session
        self._url = backend.url + "/v1"
        self._model = model
        self._clock = clock
        token = backend.config.api_token()
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._timeout = aiohttp.ClientTimeout(total=None, connect=backend.config.timeout, sock_read=120.0)

    def _body(self, text: str, embedding: bool, **extra: Any) -> tuple[str, dict[str, Any], int]:
        text = f"[{uuid.uuid4().hex[:12]}] {text}"  # a fresh prefix: no prompt cache answers for us
        if embedding:
            return "/embeddings", {"model": self._model, "input": text}, len(text)
        messages = [{"role": "user", "content": text}]
        return "/chat/completions", {"model": self._model, "messages": messages, **extra}, len(text)

    async def timed(self, text: str, embedding: bool) -> _Timed:
        """The wall time of a one-token answer (or one embedding) and the prompt tokens it reports."""
        path, body, chars = self._body(text, embedding, max_tokens=1, stream=False)
        started = self._clock()
        answer = await self._post_json(path, body)
        seconds = self._clock() - started
        usage = answer.get("usage")
        tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        return _Timed(seconds, tokens if isinstance(tokens, int) and tokens > 0 else None, chars)

    async def best(self, text: str, embedding: bool, runs: int) -> _Timed:
        """The fastest of a few runs: noise (a busy machine, a GC pause) only ever adds time."""
        return min([await self.timed(text, embedding) for _ in range(max(1, runs))], key=lambda t: t.seconds)

    async def stream(self, tokens: int) -> _Stream:
        path, body, _ = self._body(
            _COUNT, False, max_tokens=tokens, stream=True, stream_options={"include_usage": True}
        )
        started = self._clock()
        first = last = None
        chunks = 0
        reported: int | None = None
        try:
            async with self._session.post(
                self._url + path, json=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                if resp.status != 200 or "text/event-stream" not in resp.headers.get("Content-Type", ""):
                    raise MeasureError(_describe(resp.status, await resp.read()))
                async for line in resp.content:
                    if not line.startswith(b"data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == b"[DONE]":
                        break
                    event = _loads(payload)
                    if "error" in event:
                        raise MeasureError(f"the stream failed: {error_message(event)}")
                    if _has_text(event):
                        now = self._clock()
                        first = now if first is None else first
                        last = now
                        chunks += 1
                    usage = event.get("usage")
                    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
                        reported = usage["completion_tokens"]
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MeasureError(f"{type(exc).__name__}: {exc}") from None
        return _Stream(started, first, last, self._clock(), reported or chunks)

    async def _post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        try:
            async with self._session.post(
                self._url + path, json=body, headers=self._headers, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise MeasureError(f"{type(exc).__name__}: {exc}") from None
        answer = _loads(raw)
        if status != 200 or not answer or "error" in answer:
            raise MeasureError(_describe(status, raw))
        return answer


def _loads(raw: bytes) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _has_text(event: dict[str, Any]) -> bool:
    for choice in event.get("choices") or ():
        if isinstance(choice, dict):
            delta = choice.get("delta")
            text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
            if isinstance(text, str) and text:
                return True
    return False


def _describe(status: int, raw: bytes) -> str:
    message = error_message(_loads(raw)) or raw[:200].decode("utf-8", "replace")
    return f"HTTP {status}: {message}" if message else f"HTTP {status}"
