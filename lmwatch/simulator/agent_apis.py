"""LM Studio's agent APIs: `/v1/responses` (since 0.3.29) and `/v1/messages` (Anthropic, since 0.4.1).

Which version serves which is the simulated flavour's (`SimFlavour.native_apis`).
A request is read into the chat-shaped body the rest of the simulator plans answers from (text,
tools, tool results), and the planned answer is rendered in the API's own shape, whole or as its
event stream. Errors on `/v1/messages` take Anthropic's shape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from lmwatch.simulator.errors import SimError
from lmwatch.simulator.inference import Answer
from lmwatch.simulator.streaming import Frames


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
        "id": f"msg_{answer.serial}",
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


# --- OpenAI Responses ----------------------------------------------------------------------------


def responses_as_chat(body: Mapping[str, object], history: list[dict[str, object]]) -> dict[str, object]:
    """The chat-shaped body of a Responses request, after the turns of its previous response."""
    chat: list[dict[str, object]] = []
    if isinstance(body.get("instructions"), str):
        chat.append({"role": "system", "content": body["instructions"]})
    chat += history
    items = body.get("input")
    for item in [{"role": "user", "content": items}] if isinstance(items, str) else items or []:  # type: ignore[attr-defined]
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call_output":
            chat.append({"role": "tool", "content": str(item.get("output", ""))})
        elif item.get("type") in (None, "message"):
            chat.append({"role": item.get("role"), "content": _text(item.get("content"))})
    converted: dict[str, object] = {"model": body.get("model"), "messages": chat, "stream": body.get("stream")}
    if isinstance(body.get("max_output_tokens"), int):
        converted["max_tokens"] = body["max_output_tokens"]
    tools = body.get("tools")
    if isinstance(tools, list):
        converted["tools"] = [{"type": "function", "function": t} for t in tools if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if choice is not None:
        converted["tool_choice"] = {"function": choice} if isinstance(choice, dict) else choice
    fmt = body.get("text", {}).get("format") if isinstance(body.get("text"), dict) else None  # type: ignore[attr-defined]
    if isinstance(fmt, dict):
        converted["response_format"] = {"type": fmt.get("type"), "json_schema": fmt}
    return converted


def _output(answer: Answer) -> list[dict[str, object]]:
    call = answer.tool_call
    if call is None:
        text = {"type": "output_text", "text": answer.content, "annotations": []}
        return [{"type": "message", "id": f"msg_{answer.serial}", "status": "completed", "role": "assistant",
                 "content": [text]}]  # fmt: skip
    return [{"type": "function_call", "id": f"fc_{answer.serial}", "call_id": call.id, "name": call.name,
             "arguments": call.arguments, "status": "completed"}]  # fmt: skip


def response_body(answer: Answer, model_id: str, response_id: str, previous: object) -> dict[str, object]:
    incomplete = answer.finish_reason == "length"
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": "incomplete" if incomplete else "completed",
        "incomplete_details": {"reason": "max_output_tokens"} if incomplete else None,
        "model": model_id,
        "output": _output(answer),
        "previous_response_id": previous,
        "usage": {
            "input_tokens": answer.prompt_tokens,
            "output_tokens": answer.completion_tokens,
            "total_tokens": answer.prompt_tokens + answer.completion_tokens,
        },
    }


def response_frames(whole: dict[str, object]) -> Frames:
    """The Responses stream of `whole`: created, the output item with a delta per piece, completed."""
    sequence = iter(range(1 << 30))

    def ev(name: str, payload: dict[str, object]) -> bytes:
        return event(name, {**payload, "sequence_number": next(sequence)})

    started = {**whole, "status": "in_progress", "output": []}
    item: dict[str, Any] = whole["output"][0]  # type: ignore[index]
    head = ev("response.created", {"response": started}) + ev("response.in_progress", {"response": started})
    empty = {**item, "status": "in_progress", "content": [], "arguments": ""}
    head += ev("response.output_item.added", {"output_index": 0, "item": empty})
    at = {"item_id": item["id"], "output_index": 0}
    if item["type"] == "message":
        text = item["content"][0]["text"]
        head += ev(
            "response.content_part.added", {**at, "content_index": 0, "part": {**item["content"][0], "text": ""}}
        )
        pieces = [text[i : i + 6] for i in range(0, len(text), 6)] or [""]
        tokens = [ev("response.output_text.delta", {**at, "content_index": 0, "delta": p}) for p in pieces]
        tail = [
            ev("response.output_text.done", {**at, "content_index": 0, "text": text}),
            ev("response.content_part.done", {**at, "content_index": 0, "part": item["content"][0]}),
        ]
    else:
        arguments = item["arguments"]
        tokens = [ev("response.function_call_arguments.delta", {**at, "delta": arguments})]
        tail = [ev("response.function_call_arguments.done", {**at, "arguments": arguments})]
    tail.append(ev("response.output_item.done", {"output_index": 0, "item": item}))
    final = "response.incomplete" if whole["status"] == "incomplete" else "response.completed"
    tail.append(ev(final, {"response": whole}))
    return Frames([head + tokens[0], *tokens[1:]], tail)
