"""Server-sent events as they pass through: framing, and what the router learns from them.

The relay forwards whole events only, so a stream cut mid-event never leaves half an event before
lmwatch's error event. The meter reads each event as cheaply as it can (byte checks; JSON only for
the first event, usage chunks and error events): time of the first event, the usage chunk, the
`[DONE]` sentinel, an upstream error event, and the model that answered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lmwatch.jsondecode import loads

_TEXT = re.compile(rb'"(?:content|text)":\s*"[^"]')
"""A chunk that carries generated text (chat `delta.content`, completions `text`)."""


class EventSplitter:
    """Cuts a byte stream into complete SSE events (each with its blank-line terminator)."""

    def __init__(self) -> None:
        self._pending = b""

    @property
    def pending(self) -> bytes:
        """Bytes of an event not finished yet."""
        return self._pending

    def feed(self, chunk: bytes) -> list[bytes]:
        data = self._pending + chunk if self._pending else chunk
        events: list[bytes] = []
        start = 0
        while True:
            end, size = _next_separator(data, start)
            if end < 0:
                break
            events.append(data[start : end + size])
            start = end + size
        self._pending = data[start:]
        return events


def _next_separator(data: bytes, start: int) -> tuple[int, int]:
    lf = data.find(b"\n\n", start)
    if b"\r" not in data:
        return lf, 2
    crlf = data.find(b"\r\n\r\n", start)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf, 4
    return lf, 2


def event_data(event: bytes) -> bytes | None:
    """The `data:` payload of an event (None for comments and keep-alives)."""
    if event.startswith(b"data:"):
        index = 0
    else:
        index = event.find(b"\ndata:")
        if index < 0:
            return None
        index += 1
    return event[index + 5 :].strip()


@dataclass(kw_only=True)
class Meter:
    """What the relay learns from a stream, whatever its API."""

    first_at: float | None = None
    first: dict[str, Any] | None = None
    """The first data event, parsed (its `model` says who answered)."""
    usage: dict[str, Any] | None = None
    """`prompt_tokens` and `completion_tokens`."""
    error: dict[str, Any] | None = None
    text_chunks: int = 0
    """Events carrying generated text: one token each on llama.cpp, the estimate when no usage comes."""
    done: bool = False

    def keep(self, event: bytes, now: float) -> bool:
        """Read one event; False when it must not reach the client."""
        payload = event_data(event)
        if payload is None:
            return True
        if payload == b"[DONE]":
            self.done = True
            return True
        return self._read(payload, now)

    def _read(self, payload: bytes, now: float) -> bool:
        raise NotImplementedError


@dataclass
class StreamMeter(Meter):
    """The meter of chat and text completion streams."""

    strip_usage: bool
    """Drop the usage-only chunk: lmwatch asked for it for accounting, the client did not."""

    def _read(self, payload: bytes, now: float) -> bool:
        if self.first_at is None:
            self.first_at = now
            self.first = _loads(payload)
        if b'"error"' in payload[:16]:
            parsed = _loads(payload)
            if parsed is not None and "error" in parsed:
                self.error = parsed
                return False  # replaced by lmwatch's own error event, in one shape
        if b'"usage"' in payload:
            parsed = _loads(payload) or {}
            usage = parsed.get("usage")
            if isinstance(usage, dict):
                self.usage = usage
                if not parsed.get("choices"):
                    return not self.strip_usage
        if _TEXT.search(payload):
            self.text_chunks += 1
        return True


def _loads(payload: bytes) -> dict[str, Any] | None:
    try:
        value = loads(payload)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


@dataclass
class TypedStreamMeter(Meter):
    """The meter for streams whose events each carry a `type` (OpenAI Responses, Anthropic Messages),
    passed through from a backend that speaks the API itself. Usage comes from `response.completed`
    or `message_start` + `message_delta`, errors from `error` and `response.failed` (normalised to
    `{"error": {...}}`), the end from the API's last event; `first` is `{"model", "id"}`."""

    done_types: frozenset[str]

    def _read(self, payload: bytes, now: float) -> bool:
        parsed = _loads(payload) or {}
        kind = parsed.get("type")
        inner = parsed.get("response") or parsed.get("message")
        inner = inner if isinstance(inner, dict) else {}
        if self.first_at is None:
            self.first_at = now
            self.first = {"model": inner.get("model"), "id": inner.get("id")}
        if kind == "error" or kind == "response.failed":
            error = parsed.get("error") if kind == "error" else inner.get("error")
            if not isinstance(error, dict):
                error = {"message": parsed.get("message"), "code": parsed.get("code")}
            self.error = {"error": error}
            return False
        usage = inner.get("usage") if isinstance(inner.get("usage"), dict) else parsed.get("usage")
        if isinstance(usage, dict):
            self._count(usage)
        if kind in ("response.output_text.delta", "content_block_delta"):
            self.text_chunks += 1
        if kind in self.done_types:
            self.done = True
        return True

    def _count(self, usage: dict[str, Any]) -> None:
        counted = self.usage or {"prompt_tokens": 0, "completion_tokens": 0}
        for theirs, ours in (("input_tokens", "prompt_tokens"), ("output_tokens", "completion_tokens")):
            value = usage.get(theirs)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                counted[ours] = value
        self.usage = counted
