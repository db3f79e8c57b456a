"""LM Studio's agent APIs: `/v1/responses` (since 0.3.29) and `/v1/messages` (Anthropic, since 0.4.1).

Which version serves which comes from the flavour table lmwatch itself uses (lmwatch/backends).
A request is read into the chat-shaped body the rest of the simulator plans answers from (text,
tools, tool results), and the planned answer is rendered in the API's own shape, whole or as its
event stream. Errors on `/v1/messages` take Anthropic's shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lmwatch.backends.base import version_tuple
from lmwatch.backends.lmstudio import LMStudio
from lmwatch.simulator.errors import SimError
from lmwatch.simulator.inference import Answer, new_id
from lmwatch.simulator.settings import SimSettings
from lmwatch.simulator.streaming import Frames


def serves(settings: SimSettings, api: str) -> bool:
    """Does this simulated server have the API (an LM Studio recent enough)?"""
    since = LMStudio.native_apis.get(api)
    return settings.is_lmstudio and since is not None and version_tuple(settings.version) >= version_tuple(since)


def event(name: str, payload: Mapping[str, object]) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **payload}, separators=(',', ':'))}\n\n".encode()


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(b.get("text", "")) for b in content if isinstance(b, dict) and "text" in b)
    return ""


# --- Anthropic Messages --------------------------------------------------------------------------


def anthropic_error(error: SimError) -> SimError:
    """Any simulator error in Anthropic's shape: `{"type": "error", "error": {"type", "message"}}`."""
    detail = error.body.get("error")
    message = str(detail.get("message", "")) if isinstance(detail, dict) else str(detail)
    kind = {401: "authentication_error", 404: "not_found_error"}.get(
        error.status, "api_error" if error.status >= 500 else "invalid_request_error"
    )
    return SimError(error.status, {"type": "error", "error": {"type": kind, "message": message}})


def messages_as_chat(body: Mapping[str, object]) -> dict[str, object]:
    """The chat-shaped body of a Messages request: text turns, a `tool` turn for tool results, tools."""
    chat: list[dict[str, object]] = []
    system = _text(body.get("system"))
    if system:
        chat.append({"role": "system", "content": system})
    for message in body.get("messages") or []:  # type: ignore[attr-defined]
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        blocks = content if isinstance(content, list) else []
        if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in blocks):
            chat.append({"role": "tool", "content": _text([b for b in blocks if b.get("type") == "tool_result"])})
        else:
            chat.append({"role": message.get("role"), "content": _text(content)})
    converted: dict[str, object] = {"model": body.get("model"), "messages": chat, "stream": body.get("stream")}
    if isinstance(body.get("max_tokens"), int):
        converted["max_tokens"] = body["max_tokens"]
    tools = body.get("tools")
    if isinstance(tools, list):
        converted["tools"] = [
            {"type": "function", "function": {"name": t.get("name"), "parameters": t.get("input_schema")}}
            for t in tools
            if isinstance(t, dict)
        ]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        kind = choice.get("type")
        converted["tool_choice"] = (
            "required" if kind == "any" else {"function": {"name": choice.get("name")}} if kind == "tool" else kind
        )
    return converted


def _message_content(answer: Answer) -> list[dict[str, object]]:
    call = answer.tool_call
    if call is None:
        return [{"type": "text", "text": answer.content}]
    return [{"type": "tool_use", "id": call.id, "name": call.name, "input": json.loads(call.arguments)}]


def _stop_reason(answer: Answer) -> str:
    return {"length": "max_tokens", "tool_calls": "tool_use"}.get(answer.finish_reason, "end_turn")


def message_body(answer: Answer, model_id: str) -> dict[str, object]:
    return {
        "id": new_id("msg", "_"),
        "type": "message",
        "role": "assistant",
        "model": model_id,
        "content": _message_content(answer),
        "stop_reason": _stop_reason(answer),
        "stop_sequence": None,
        "usage": {"input_tokens": answer.prompt_tokens, "output_tokens": answer.completion_tokens},
    }


def message_frames(answer: Answer, model_id: str) -> Frames:
    """Anthropic's stream: message_start, one content block with a delta per token, message_delta, message_stop."""
    usage = {"input_tokens": answer.prompt_tokens, "output_tokens": 0}
    start = {**message_body(answer, model_id), "content": [], "stop_reason": None, "usage": usage}
    call = answer.tool_call
    block: dict[str, object] = {"type": "text", "text": ""}
    if call is not None:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
    head = event("message_start", {"message": start})
    head += event("content_block_start", {"index": 0, "content_block": block})
    kind, key = ("text_delta", "text") if call is None else ("input_json_delta", "partial_json")
    tokens = [event("content_block_delta", {"index": 0, "delta": {"type": kind, key: p}}) for p in answer.pieces]
    tokens = [head + tokens[0], *tokens[1:]] if tokens else [head]
    tail = [
        event("content_block_stop", {"index": 0}),
        event("message_delta", {"delta": {"stop_reason": _stop_reason(answer), "stop_sequence": None},
                                "usage": {"output_tokens": answer.completion_tokens}}),
        event("message_stop", {}),
    ]  # fmt: skip
    return Frames(tokens, tail)
