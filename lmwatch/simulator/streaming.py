"""Server-sent events: the chunk frames of a streamed completion and the timed writer that sends them.

Frames are rendered from a pre-serialised prefix (one `json.dumps` per delta, not per chunk), and
with no delays and no faults the whole stream goes out in one write: the zero-delay path is the
benchmark path. With delays, each frame is its own write so clients see real token timing, and a
closed socket shows up at the next write or sleep.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from aiohttp import web

from lmwatch.simulator.inference import Answer, Prompt

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "Connection": "keep-alive"}
Outcome = Literal["done", "dropped", "unloaded"]


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sse(payload: object) -> bytes:
    return b"data: " + _dumps(payload) + b"\n\n"


def named_event(event: str, payload: dict[str, object]) -> bytes:
    """A `/api/v1/chat` frame: `event: <type>` plus `data:` repeating the type."""
    return b"event: " + event.encode() + b"\ndata: " + _dumps({"type": event, **payload}) + b"\n\n"


class _Chunks:
    def __init__(self, prompt: Prompt, answer: Answer, model_id: str, fingerprint: bool) -> None:
        chat = prompt.kind == "chat"
        head: dict[str, object] = {
            "id": f"{'chatcmpl' if chat else 'cmpl'}-{answer.serial}",
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": model_id,
        }
        if fingerprint:
            head["system_fingerprint"] = model_id
        self._head = b"data: " + _dumps(head)[:-1]
        self._choice = self._head + b',"choices":[{"index":0,' + (b'"delta":' if chat else b'"text":')

    def choice(self, value: object, finish: str | None) -> bytes:
        return self._choice + _dumps(value) + b',"logprobs":null,"finish_reason":' + _dumps(finish) + b"}]}\n\n"

    def usage(self, usage: dict[str, int]) -> bytes:
        return self._head + b',"choices":[],"usage":' + _dumps(usage) + b"}\n\n"


@dataclass(slots=True)
class Frames:
    """`tokens`: one frame per generated token (paced); `tail`: finish, usage and `[DONE]` frames."""

    tokens: list[bytes]
    tail: list[bytes]


def completion_frames(prompt: Prompt, answer: Answer, model_id: str, fingerprint: bool) -> Frames:
    chunks = _Chunks(prompt, answer, model_id, fingerprint)
    tokens: list[bytes] = []
    if prompt.kind == "chat":
        call = answer.tool_call
        if call is not None:
            header = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
            tokens.append(chunks.choice({"role": "assistant", "tool_calls": [header]}, None))
            for piece in answer.pieces:
                delta = {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}
                tokens.append(chunks.choice(delta, None))
        else:
            for i, piece in enumerate(answer.pieces or [""]):
                text: dict[str, object] = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
                tokens.append(chunks.choice(text, None))
        tail = [chunks.choice({}, answer.finish_reason)]
    else:
        tokens = [chunks.choice(piece, None) for piece in answer.pieces or [""]]
        tail = [chunks.choice("", answer.finish_reason)]
    if prompt.include_usage:
        tail.append(chunks.usage(answer.usage()))
    tail.append(DONE)
    return Frames(tokens, tail)


@dataclass(slots=True)
class Pacing:
    ttft: float
    interval: float
    """Seconds between tokens (1 / tokens_per_second), 0 for as fast as possible."""
    stall_seconds: float | None
    """Go silent this long after the first frame (fault injection), or None."""
    drop: bool
    """Cut the connection after the first frames, without the tail (fault injection)."""


async def write_frames(
    resp: web.StreamResponse,
    frames: Frames,
    pacing: Pacing,
    cut: Callable[[], None],
    unloaded: Callable[[], bool],
) -> Outcome:
    """Send `frames` with `pacing`. Raises `ConnectionResetError` if the client went away."""
    if not (pacing.ttft or pacing.interval or pacing.drop or pacing.stall_seconds is not None):
        await resp.write(b"".join(frames.tokens) + b"".join(frames.tail))
        return "done"
    if pacing.ttft > 0:
        await asyncio.sleep(pacing.ttft)
    # tokens are paced against the clock, not by chained sleeps, so sleep overshoot never adds up
    loop = asyncio.get_running_loop()
    start = loop.time()
    for i, frame in enumerate(frames.tokens):
        if i and pacing.interval > 0:
            await asyncio.sleep(max(0.0, start + i * pacing.interval - loop.time()))
        if unloaded():
            cut()
            return "unloaded"
        await resp.write(frame)
        if i == 0 and pacing.stall_seconds is not None:
            await asyncio.sleep(pacing.stall_seconds)
            start = loop.time()
        if pacing.drop and (i >= 1 or len(frames.tokens) == 1):
            cut()
            return "dropped"
    await resp.write(b"".join(frames.tail))
    return "done"
