"""From a request body to a planned answer, and from a planned answer to response bodies.

Pure functions (no I/O, no clock reads beyond `created`), so the request rules (LM Studio's image
and `response_format` checks, tool calls, max_tokens defaults) are easy to read and test, and the
handlers only move bytes and time.
"""

from __future__ import annotations

import itertools
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from lmwatch.simulator import generation
from lmwatch.simulator.flavours.base import SimFlavour
from lmwatch.simulator.generation import ToolCall

Kind = Literal["chat", "text"]

NOT_VISION = "Model does not support images. Please use a model that does."
NOT_BASE64 = "'url' field must be a base64 encoded image."
BAD_RESPONSE_FORMAT = "'response_format.type' must be 'json_schema' or 'text'"
BAD_EMBEDDING_INPUT = "'input' field must be a string or an array of strings"


@dataclass(slots=True)
class Prompt:
    """What an inference request asks for, after validation."""

    kind: Kind
    model: str
    text: str
    last_user_text: str
    has_images: bool
    max_tokens: int | None
    """Explicit positive `max_tokens`/`max_completion_tokens`, else None (server default)."""
    schema: dict[str, object] | None
    stream: bool
    include_usage: bool
    ttl: float | None


@dataclass(slots=True)
class Answer:
    """The planned output: the stream pieces, or one tool call whose arguments are the pieces."""

    pieces: list[str]
    finish_reason: str
    tool_call: ToolCall | None
    prompt_tokens: int
    serial: str
    """Unique to this answer (`Ids.new`): its ids are `chatcmpl-<serial>`, `msg_<serial>`, ..."""

    @property
    def content(self) -> str:
        return "".join(self.pieces)

    @property
    def completion_tokens(self) -> int:
        return len(self.pieces)

    @property
    def stop_reason(self) -> str:
        """The `/api/v0` `stats.stop_reason` name for `finish_reason`."""
        return {"length": "maxPredictedTokensReached", "tool_calls": "toolCalls"}.get(self.finish_reason, "eosFound")

    def usage(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class Ids:
    """Unique answer serials without a random call per request: a random prefix per simulator and a counter."""

    def __init__(self) -> None:
        self._prefix = os.urandom(3).hex()
        self._next = itertools.count(1)

    def new(self) -> str:
        return f"{self._prefix}{next(self._next):x}"


def parse_json(raw: bytes, flavour: SimFlavour) -> dict[str, object]:
    if not raw:
        raise flavour.plain(400, "Request body is empty. Expected a JSON object.")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise flavour.plain(400, f"Invalid JSON in request body: {exc}") from None
    if not isinstance(body, dict):
        raise flavour.plain(400, "Request body must be a JSON object.")
    return body


def parse_prompt(body: Mapping[str, object], kind: Kind, flavour: SimFlavour) -> Prompt:
    """Validate a chat or text completion body the way LM Studio does (400s with its messages)."""
    has_images = False
    last_user = ""
    if kind == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise flavour.plain(400, "'messages' field is required and must be a non-empty array")
        texts: list[str] = []
        for message in messages:
            if not isinstance(message, dict):
                raise flavour.plain(400, "'messages' must be an array of objects")
            content = message.get("content")
            if isinstance(content, str):
                text = content
            elif isinstance(content, list):
                parts: list[str] = []
                for part in content:
                    if not isinstance(part, dict):
                        continue
                    if part.get("type") == "text":
                        parts.append(str(part.get("text", "")))
                    elif part.get("type") == "image_url":
                        has_images = True
                        _check_image(part.get("image_url"), flavour)
                text = " ".join(parts)
            else:
                text = ""
            texts.append(text)
            if message.get("role") == "user":
                last_user = text
        prompt_text = "\n".join(texts)
    else:
        prompt = body.get("prompt")
        if isinstance(prompt, str):
            prompt_text = prompt
        elif isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            prompt_text = "\n".join(prompt)
        else:
            raise flavour.plain(400, "'prompt' field is required and must be a string")
        last_user = prompt_text

    schema: dict[str, object] | None = None
    response_format = body.get("response_format")
    if isinstance(response_format, dict):
        fmt = response_format.get("type")
        if fmt == "json_schema":
            spec = response_format.get("json_schema")
            inner = spec.get("schema") if isinstance(spec, dict) else None
            schema = inner if isinstance(inner, dict) else {"type": "object"}
        elif fmt == "json_object" and flavour.json_object:
            schema = {"type": "object", "properties": {"result": {"type": "string"}}}
        elif fmt not in (None, "text"):
            raise flavour.plain(400, BAD_RESPONSE_FORMAT)

    max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
    options = body.get("stream_options")
    ttl = body.get("ttl")
    model = body.get("model")
    return Prompt(
        kind=kind,
        model=model if isinstance(model, str) else "",
        text=prompt_text,
        last_user_text=last_user,
        has_images=has_images,
        max_tokens=max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else None,
        schema=schema,
        stream=body.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
        ttl=float(ttl) if isinstance(ttl, int | float) and not isinstance(ttl, bool) and ttl > 0 else None,
    )


def _check_image(image_url: object, flavour: SimFlavour) -> None:
    """LM Studio takes only base64 data URLs; remote http(s) images are refused."""
    url = image_url.get("url") if isinstance(image_url, dict) else image_url
    if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url or url.endswith(";base64,"):
        raise flavour.plain(400, NOT_BASE64)


def plan_answer(
    prompt: Prompt, body: Mapping[str, object], default_tokens: int, context: int, natural: int, serial: str
) -> Answer:
    """Decide the output: a tool call, JSON for a schema, or `max_tokens` words of text."""
    seed = generation.seed_of(prompt.text)
    prompt_tokens = generation.count_words(prompt.text)
    if prompt.kind == "chat" and "tools" in body:
        call = generation.plan_tool_call(body, prompt.last_user_text, seed)
        if call is not None:
            return Answer(generation.split_pieces(call.arguments), "tool_calls", call, prompt_tokens, serial)
    if prompt.schema is not None:
        content = json.dumps(generation.schema_value(prompt.schema, seed))
        return Answer(generation.split_pieces(content), "stop", None, prompt_tokens, serial)
    count = min(prompt.max_tokens or default_tokens, max(context, 1))
    # Running into an explicit max_tokens is "length"; the server default stands in for the model
    # stopping on its own ("stop"), so default requests look like normal, complete answers.
    finish = "length" if prompt.max_tokens is not None else "stop"
    if natural and count > natural:  # the model ends its answer before the limit
        count, finish = natural, "stop"
    pieces = list(generation.text_tokens(seed, count))
    return Answer(pieces, finish, None, prompt_tokens, serial)


def message(answer: Answer) -> dict[str, object]:
    """The non-streamed `choices[0].message`."""
    call = answer.tool_call
    if call is None:
        return {"role": "assistant", "content": answer.content}
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": call.arguments}}
        ],
    }


def completion_body(prompt: Prompt, answer: Answer, model_id: str, *, fingerprint: bool) -> dict[str, object]:
    """A non-streamed `chat.completion` or `text_completion` body (without `/api/v0` extras)."""
    created = int(time.time())
    if prompt.kind == "chat":
        body: dict[str, object] = {
            "id": f"chatcmpl-{answer.serial}",
            "object": "chat.completion",
            "created": created,
            "model": model_id,
            "choices": [
                {"index": 0, "message": message(answer), "logprobs": None, "finish_reason": answer.finish_reason}
            ],
            "usage": answer.usage(),
        }
    else:
        body = {
            "id": f"cmpl-{answer.serial}",
            "object": "text_completion",
            "created": created,
            "model": model_id,
            "choices": [{"index": 0, "text": answer.content, "logprobs": None, "finish_reason": answer.finish_reason}],
            "usage": answer.usage(),
        }
    if fingerprint:
        body["system_fingerprint"] = model_id
    return body


def v0_stats(answer: Answer, ttft: float, generation_time: float) -> dict[str, object]:
    tps = answer.completion_tokens / generation_time if generation_time > 0 else 0.0
    return {
        "tokens_per_second": round(tps, 3),
        "time_to_first_token": round(ttft, 3),
        "generation_time": round(generation_time, 3),
        "stop_reason": answer.stop_reason,
    }


def embedding_inputs(body: Mapping[str, object], flavour: SimFlavour) -> list[str]:
    """`input` as a list of strings. LM Studio refuses token-id arrays (a real, reported error)."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [raw]
    if isinstance(raw, list) and raw and all(isinstance(item, str) for item in raw):
        return [str(item) for item in raw]
    raise flavour.plain(400, BAD_EMBEDDING_INPUT)


def embeddings_body(inputs: list[str], model_id: str, encoding: object) -> dict[str, object]:
    data: list[dict[str, object]] = []
    for index, text in enumerate(inputs):
        vector = generation.embedding(text)
        value: object = generation.embedding_base64(vector) if encoding == "base64" else list(vector)
        data.append({"object": "embedding", "embedding": value, "index": index})
    tokens = sum(generation.count_words(text) for text in inputs)
    return {
        "object": "list",
        "data": data,
        "model": model_id,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }
