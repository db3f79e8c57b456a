"""Parse an inference request once, at the edge, into the facts routing needs.

The JSON is decoded once; the original bytes are kept so they can be forwarded unchanged when the
body need not change. Every bad input raises `InvalidRequest` (the API layer answers it in the API's
own shape): invalid JSON, wrong field types, and images LM Studio cannot take (remote URLs, broken
data URLs, non-images).
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lmwatch.errors import InvalidRequest
from lmwatch.jsondecode import loads_text


class Endpoint(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    RESPONSES = "responses"
    """OpenAI's Responses API."""
    MESSAGES = "messages"
    """Anthropic's Messages API."""

    @property
    def path(self) -> str:
        return "/chat/completions" if self is Endpoint.CHAT else f"/{self.value}"


_REQUIRED = {
    Endpoint.CHAT: "messages",
    Endpoint.COMPLETIONS: "prompt",
    Endpoint.EMBEDDINGS: "input",
    Endpoint.RESPONSES: "input",
    Endpoint.MESSAGES: "messages",
}
Translate = Callable[[dict[str, Any]], dict[str, Any]]
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+)?(;[^,]*)?,", re.ASCII)
IMAGE_TYPES = frozenset(("image/png", "image/jpeg", "image/jpg", "image/gif", "image/webp", "image/bmp"))
_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")


@dataclass(slots=True)
class ParsedRequest:
    """What routing reads of a request (treat it as immutable: `dataclasses.replace` makes another).
    Not a frozen dataclass: one is made per request, and freezing costs a `__setattr__` per field."""

    endpoint: Endpoint
    raw: bytes
    body: dict[str, Any]
    model: str
    stream: bool
    wants_usage: bool
    """The client asked for the streamed usage chunk itself (`stream_options.include_usage`)."""
    needs_vision: bool
    has_tools: bool
    prompt_chars: int = 0
    """Characters of prompt text (messages, prompt, tool definitions); for embeddings, of the longest
    input, since each input must fit on its own. What the context check estimates tokens from."""
    max_tokens: int = 0
    """Completion tokens the request reserves (`max_tokens` / `max_completion_tokens`; 0 when unset)."""
    chat: dict[str, Any] | None = None
    """The chat-completions body a Responses or Messages request translates to: sent to backends
    that do not speak its API, and what classification reads."""

    @property
    def as_chat(self) -> dict[str, Any]:
        return self.chat if self.chat is not None else self.body


def json_object(raw: bytes) -> dict[str, Any]:
    """A request body as a JSON object, or the OpenAI-style 400 that says what is wrong with it."""
    try:
        body = loads_text(raw)
    except ValueError as exc:
        raise InvalidRequest(f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the request body must be a JSON object", code="invalid_json")
    return body


def parse_request(
    endpoint: Endpoint, raw: bytes, default_model: str, translate: Translate | None = None
) -> ParsedRequest:
    """The request's facts; `translate` makes the chat body of an API that is not chat completions."""
    body = json_object(raw)
    model = body.get("model")
    if model is None or model == "":
        model = default_model
    elif not isinstance(model, str):
        raise InvalidRequest("`model` must be a string", param="model", code="invalid_type")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be true or false", param="stream", code="invalid_type")
    if endpoint is Endpoint.EMBEDDINGS and stream:
        raise InvalidRequest("embeddings cannot be streamed", param="stream")
    field = _REQUIRED[endpoint]
    if body.get(field) in (None, "", []):
        raise InvalidRequest(f"`{field}` is required", param=field, code="missing_required_parameter")
    messages = body.get("messages")
    if endpoint is Endpoint.CHAT and not isinstance(messages, list):
        raise InvalidRequest("`messages` must be a list", param="messages", code="invalid_type")
    chat = translate(body) if translate is not None else None
    if chat is not None:
        messages = chat.get("messages")
    options = body.get("stream_options")
    shape = chat if chat is not None else body
    return ParsedRequest(  # by position, in the fields' order: keywords cost twice as much per request
        endpoint,
        raw,
        body,
        model.strip(),
        stream,
        isinstance(options, dict) and options.get("include_usage") is True,
        (endpoint is Endpoint.CHAT or chat is not None) and _check_images(messages),
        bool(shape.get("tools") or shape.get("functions")),
        _prompt_chars(endpoint if chat is None else Endpoint.CHAT, shape),
        _max_tokens(shape),
        chat,
    )


def _prompt_chars(endpoint: Endpoint, body: dict[str, Any]) -> int:
    if endpoint is Endpoint.EMBEDDINGS:
        items = body.get("input")
        if isinstance(items, list) and items and all(isinstance(i, int) for i in items):
            items = [items]  # one input given as token ids
        texts = items if isinstance(items, list) else [items]
        return max(
            (len(t) if isinstance(t, str) else len(t) * 4 if isinstance(t, list) else 0 for t in texts), default=0
        )
    if endpoint is Endpoint.COMPLETIONS:
        prompt = body.get("prompt")
        texts = prompt if isinstance(prompt, list) else [prompt]
        return sum(len(t) for t in texts if isinstance(t, str))
    chars = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p["text"]) for p in content if isinstance(p, dict) and isinstance(p.get("text"), str))
    tools = body.get("tools")
    if tools:
        chars += len(json.dumps(tools))
    return chars


def _max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens", body.get("max_completion_tokens"))
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _check_images(messages: Any) -> bool:
    """Validate every image part; True when there is at least one."""
    found = False
    for i, message in enumerate(messages):
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "image_url":
                continue
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            _check_image_url(url, f"messages[{i}].content[{j}].image_url")
            found = True
    return found


def _check_image_url(url: Any, param: str) -> None:
    if not isinstance(url, str) or not url:
        raise InvalidRequest("an image part needs an image_url with a url", param=param, code="invalid_image")
    if url[:8].lower().startswith(("http://", "https://")):
        raise InvalidRequest(
            "remote image URLs are not supported: LM Studio only accepts images inline, as base64 data URLs "
            "(data:image/png;base64,...). Download the image and send it as a data URL.",
            param=param,
            code="image_url_not_supported",
        )
    match = _DATA_URL.match(url)
    if match is None or match.group(2) is None or "base64" not in match.group(2):
        raise InvalidRequest(
            "the image must be a base64 data URL (data:image/<type>;base64,...)",
            param=param,
            code="invalid_image_url",
        )
    mime = (match.group(1) or "").lower()
    if mime not in IMAGE_TYPES:
        raise InvalidRequest(
            f"unsupported image type {mime or '(none)'!r}; use one of: " + ", ".join(sorted(IMAGE_TYPES)),
            param=param,
            code="invalid_image_type",
        )
    try:
        data = binascii.a2b_base64(url[match.end() :], strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest("the image data is not valid base64", param=param, code="invalid_base64") from None
    if not (data.startswith(_MAGIC) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")):
        raise InvalidRequest(
            "the image data is not a PNG, JPEG, GIF, WebP or BMP image", param=param, code="invalid_image_type"
        )
