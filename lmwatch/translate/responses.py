"""OpenAI's Responses API (`POST /v1/responses`) to chat completions and back.

Request: `instructions` becomes the system message, `input` (a string or items) the turns:
messages (`input_text`, `input_image`, `output_text` parts), `function_call` items an assistant's
`tool_calls`, `function_call_output` items `tool` messages; reasoning items are dropped. Function
tools keep their schema; `text.format` becomes `response_format`, `max_output_tokens`
`max_tokens`, `reasoning.effort` `reasoning_effort`. Answer: reasoning, text and tool calls become
`reasoning`, `message` and `function_call` output items; a cut answer is `incomplete`. Other tool
types (web search, MCP, ...) cannot be translated: only a backend that speaks the API may take them.
"""

from __future__ import annotations

import time
from typing import Any

from lmwatch.api.errors import error_body
from lmwatch.errors import InvalidRequest
from lmwatch.translate.chat import Block, ChatStream, Reply, Tokens, new_id, sse

_PASSED = ("temperature", "top_p", "stream", "parallel_tool_calls", "user")
_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}
_TEXT_PARTS = ("input_text", "output_text", "text", "refusal", "summary_text", "reasoning_text")


class Untranslatable(Exception):
    """Part of a request that only a backend speaking the API itself can serve."""


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_request")


def to_chat(body: dict[str, Any], history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The chat-completions body for `body`, after the `history` a previous response left.

    Raises InvalidRequest for a malformed request, Untranslatable for tools only the API itself has."""
    messages: list[dict[str, Any]] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    messages += history or []
    messages += input_messages(body.get("input"))
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    for key in _PASSED:
        if key in body:
            chat[key] = body[key]
    if isinstance(body.get("max_output_tokens"), int):
        chat["max_tokens"] = body["max_output_tokens"]
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("effort"), str):
        chat["reasoning_effort"] = reasoning["effort"]
    fmt = body.get("text", {}).get("format") if isinstance(body.get("text"), dict) else None
    if isinstance(fmt, dict):
        chat.update(_response_format(fmt))
    tools = body.get("tools")
    if isinstance(tools, list) and tools:
        chat["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    if "tool_choice" in body:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    return chat


def input_messages(items: Any) -> list[dict[str, Any]]:
    if isinstance(items, str):
        return [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise _bad("`input` must be a string or a list of input items", "input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(items):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise _bad(f"{where} must be an object", where)
        kind = item.get("type", "message" if "role" in item else None)
        if kind == "message":
            messages.append(_message(item, where))
        elif kind == "function_call":
            call = {"name": str(item.get("name", "")), "arguments": str(item.get("arguments", "{}"))}
            tool_call = {"id": str(item.get("call_id", "")), "type": "function", "function": call}
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                last.setdefault("tool_calls", []).append(tool_call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [tool_call]})
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else _parts_text(output, where + ".output")
            messages.append({"role": "tool", "tool_call_id": str(item.get("call_id", "")), "content": text})
        elif kind != "reasoning":
            raise Untranslatable(f"{where}: input items of type {kind!r} need a backend that serves /v1/responses")
    return messages


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = _ROLES.get(str(item.get("role")))
    if role is None:
        raise _bad(f"{where}.role must be user, assistant, system or developer", where + ".role")
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content parts", where + ".content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text", part.get("refusal", "")))})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            parts.append({"type": "image_url", "image_url": {"url": part["image_url"]}})
        else:
            raise Untranslatable(f"{at}: content of type {kind!r} needs a backend that serves /v1/responses")
    if role != "user" or not any(p["type"] == "image_url" for p in parts):
        return {"role": role, "content": "\n".join(p["text"] for p in parts)}
    return {"role": role, "content": parts}


def _parts_text(value: Any, where: str) -> str:
    if isinstance(value, list):
        return "\n".join(str(p.get("text", "")) for p in value if isinstance(p, dict) and p.get("type") in _TEXT_PARTS)
    raise _bad(f"{where} must be a string or a list of text parts", where)


def _response_format(fmt: dict[str, Any]) -> dict[str, Any]:
    kind = fmt.get("type")
    if kind == "json_schema":
        spec = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"response_format": {"type": "json_schema", "json_schema": spec}}
    if kind == "json_object":
        return {"response_format": {"type": "json_object"}}
    return {}


def _tool(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict):
        raise _bad(f"{where} must be an object", where)
    if tool.get("type") != "function":
        raise Untranslatable(f"{where}: {tool.get('type')!r} tools need a backend that serves /v1/responses")
    if not isinstance(tool.get("name"), str):
        raise _bad(f"{where}: a function tool needs a `name`", where)
    function = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": function}


def _tool_choice(choice: Any) -> Any:
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    if choice in ("auto", "none", "required"):
        return choice
    raise Untranslatable(f"tool_choice {choice!r} needs a backend that serves /v1/responses")


# --- answers -------------------------------------------------------------------------------------


def item_id(block: Block) -> str:
    """The output item's id, made when the block first needs one (stream events and the end agree)."""
    if not block.item_id:
        block.item_id = new_id({"text": "msg", "tool": "fc", "reasoning": "rs"}[block.kind])
    return block.item_id


def _part(block: Block) -> dict[str, Any]:
    if block.kind == "reasoning":
        return {"type": "reasoning_text", "text": block.text}
    return {"type": "output_text", "text": block.text, "annotations": [], "logprobs": []}


def output_item(block: Block, status: str = "completed") -> dict[str, Any]:
    done = status == "completed"
    if block.kind == "tool":
        return {
            "type": "function_call",
            "id": item_id(block),
            "call_id": block.call_id,
            "name": block.name,
            "arguments": block.text if done else "",
            "status": status,
        }
    if block.kind == "reasoning":
        return {"type": "reasoning", "id": item_id(block), "summary": [], "content": [_part(block)] if done else []}
    content = [_part(block)] if done else []
    return {"type": "message", "id": item_id(block), "status": status, "role": "assistant", "content": content}


def response_object(
    reply: Reply, request: dict[str, Any], response_id: str, status: str | None = None
) -> dict[str, Any]:
    """The Responses API's `response` for an answer (`status` None: completed, or incomplete if cut)."""
    cut = reply.finish_reason == "length"
    status = status or ("incomplete" if cut else "completed")
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if cut and status == "incomplete" else None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "model": reply.model,
        "output": [output_item(b) for b in reply.blocks] if status != "in_progress" else [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "reasoning": request.get("reasoning") or {"effort": None, "summary": None},
        "store": request.get("store", True),
        "temperature": request.get("temperature", 1.0),
        "text": request.get("text") or {"format": {"type": "text"}},
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": {
            "input_tokens": reply.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": reply.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
        "user": request.get("user"),
        "metadata": request.get("metadata") or {},
    }


def assistant_message(reply: Reply) -> dict[str, Any]:
    """The answer as a chat turn, for the history the next response continues."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None}
    calls = [
        {"id": b.call_id, "type": "function", "function": {"name": b.name, "arguments": b.text}}
        for b in reply.blocks
        if b.kind == "tool"
    ]
    if calls:
        message["tool_calls"] = calls
    return message


_DELTA_EVENTS = {
    "text": "response.output_text.delta",
    "reasoning": "response.reasoning_text.delta",
    "tool": "response.function_call_arguments.delta",
}


class ResponsesStream(ChatStream):
    """Chat chunks as the Responses API's stream: created, output items and their deltas, completed."""

    def __init__(self, model: str, tokens: Tokens, request: dict[str, Any], response_id: str) -> None:
        super().__init__(model, tokens)
        self.request = request
        self.response_id = response_id
        self._sequence = 0

    def _event(self, name: str, payload: dict[str, Any]) -> bytes:
        self._sequence += 1
        return sse(name, {**payload, "sequence_number": self._sequence - 1})

    def _response(self, status: str | None = None) -> dict[str, Any]:
        return response_object(self.reply, self.request, self.response_id, status)

    def start(self) -> bytes:
        response = self._response("in_progress")
        return self._event("response.created", {"response": response}) + self._event(
            "response.in_progress", {"response": response}
        )

    def _at(self, block: Block) -> dict[str, Any]:
        at: dict[str, Any] = {"item_id": item_id(block), "output_index": block.position}
        if block.kind != "tool":
            at["content_index"] = 0
        return at

    def open(self, block: Block) -> bytes:
        added = self._event(
            "response.output_item.added", {"output_index": block.position, "item": output_item(block, "in_progress")}
        )
        if block.kind == "tool":
            return added
        empty = _part(Block(block.kind))
        return added + self._event("response.content_part.added", {**self._at(block), "part": empty})

    def delta(self, block: Block, text: str) -> bytes:
        return self._event(_DELTA_EVENTS[block.kind], {**self._at(block), "delta": text})

    def close(self, block: Block) -> bytes:
        done = self._event("response.output_item.done", {"output_index": block.position, "item": output_item(block)})
        if block.kind == "tool":
            return (
                self._event("response.function_call_arguments.done", {**self._at(block), "arguments": block.text})
                + done
            )
        name = "response.output_text.done" if block.kind == "text" else "response.reasoning_text.done"
        return (
            self._event(name, {**self._at(block), "text": block.text})
            + self._event("response.content_part.done", {**self._at(block), "part": _part(block)})
            + done
        )

    def end(self, reply: Reply) -> bytes:
        response = self._response()
        name = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return self._event(name, {"response": response})

    def error(self, message: str, code: str | None) -> bytes:
        return stream_error(message, code, self._sequence)


def stream_error(message: str, code: str | None, sequence: int = 0) -> bytes:
    """The Responses `error` event; its `error` object also makes the openai SDKs raise an APIError."""
    body = error_body(message, "server_error", code)
    return sse(
        "error", {"code": code, "message": body["error"]["message"], "param": None, "sequence_number": sequence, **body}
    )
