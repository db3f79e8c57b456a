"""Anthropic Messages (`POST /v1/messages`) to chat completions and back.

Request: `system` becomes the system message; content blocks become chat parts (`text`, `image`
as a data URL), `tool_use` blocks an assistant's `tool_calls`, `tool_result` blocks `tool`
messages (placed before the rest of that user turn, as chat templates expect); thinking blocks
are dropped (a local model cannot verify their signatures). Tools keep their JSON schema;
`tool_choice` any/tool/none become required/function/none. Answer: reasoning, text and tool calls
become `thinking`, `text` and `tool_use` blocks; `finish_reason` becomes `stop_reason`.
"""

from __future__ import annotations

import json
import math
from typing import Any

from lmwatch.api.errors import anthropic_body
from lmwatch.errors import InvalidRequest
from lmwatch.translate.chat import Block, ChatStream, Reply, Tokens, arguments_object, new_id, sse

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use", "function_call": "tool_use"}
_PASSED = ("temperature", "top_p", "top_k", "stream")


def _bad(message: str, param: str) -> InvalidRequest:
    return InvalidRequest(message, param=param, code="invalid_request")


def validate(body: dict[str, Any], *, counting: bool = False) -> None:
    """The checks Anthropic's API makes before anything runs (count_tokens needs no `max_tokens`)."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("`messages` is required: a non-empty list of {role, content}", "messages")
    if not counting:
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            raise _bad("`max_tokens` is required: a positive integer", "max_tokens")


def to_chat(body: dict[str, Any]) -> dict[str, Any]:
    """The chat-completions body that asks a backend what `body` asks (raises InvalidRequest)."""
    validate(body)
    chat: dict[str, Any] = {"model": body.get("model"), "messages": chat_messages(body)}
    chat["max_tokens"] = body["max_tokens"]
    for key in _PASSED:
        if key in body:
            chat[key] = body[key]
    stop = body.get("stop_sequences")
    if isinstance(stop, list) and stop:
        chat["stop"] = stop
    tools = body.get("tools")
    if tools:
        chat["tools"] = [_tool(t, i) for i, t in enumerate(tools if isinstance(tools, list) else [])]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        chat.update(_tool_choice(choice))
    return chat


def chat_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    system = _text_of(body.get("system"), "system")
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(body["messages"]):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant", "system"):
            raise _bad(f"{where} must be an object with role `user` or `assistant` (or `system`)", where)
        if message["role"] == "system":  # Claude Code's mid-conversation system turns
            messages.append({"role": "system", "content": _text_of(message.get("content"), where + ".content")})
        else:
            messages.extend(_turn(message, where))
    return messages


def _turn(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    role, content = message["role"], message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise _bad(f"{where}.content must be a string or a list of content blocks", where + ".content")
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    for j, block in enumerate(content):
        at = f"{where}.content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append({"type": "text", "text": str(block.get("text", ""))})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _image_url(block.get("source"), at)}})
        elif kind == "document":
            parts.append({"type": "text", "text": _document_text(block.get("source"), at)})
        elif kind == "tool_use" and role == "assistant":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            call = {"name": str(block.get("name", "")), "arguments": arguments}
            calls.append({"id": str(block.get("id", "")), "type": "function", "function": call})
        elif kind == "tool_result" and role == "user":
            text = _text_of(block.get("content"), at + ".content")
            if block.get("is_error") is True:
                text = "Error: " + text
            results.append({"role": "tool", "tool_call_id": str(block.get("tool_use_id", "")), "content": text})
        elif kind not in ("thinking", "redacted_thinking"):
            raise _bad(f"{at}: content blocks of type {kind!r} are not supported in a {role} turn", at)
    if role == "assistant":
        text = "".join(p["text"] for p in parts if p["type"] == "text")
        answer: dict[str, Any] = {"role": "assistant", "content": text or None}
        if calls:
            answer["tool_calls"] = calls
        return [answer] if text or calls else []
    if parts:
        images = any(p["type"] == "image_url" for p in parts)
        user = parts if images else "\n".join(p["text"] for p in parts)
        results.append({"role": "user", "content": user})
    return results


def _text_of(value: Any, where: str) -> str:
    """A string, or the text of a list of text blocks (system prompts, tool results)."""
    if value is None or isinstance(value, str):
        return value or ""
    if isinstance(value, list):
        texts = []
        for block in value:
            if isinstance(block, dict) and block.get("type") == "text":
                texts.append(str(block.get("text", "")))
            elif isinstance(block, dict) and block.get("type") == "image":
                raise _bad(f"{where}: images are only supported in user messages", where)
        return "\n".join(texts)
    raise _bad(f"{where} must be a string or a list of text blocks", where)


def _image_url(source: Any, where: str) -> str:
    if isinstance(source, dict) and source.get("type") == "base64":
        return f"data:{source.get('media_type', 'image/png')};base64,{source.get('data', '')}"
    if isinstance(source, dict) and source.get("type") == "url":
        return str(source.get("url", ""))  # the chat check explains that remote images cannot be served
    raise _bad(f"{where}: an image needs a `source` of type base64 or url", where)


def _document_text(source: Any, where: str) -> str:
    if isinstance(source, dict) and source.get("type") == "text":
        return str(source.get("data", ""))
    raise _bad(f"{where}: only plain-text documents can be sent to a local model", where)


def _tool(tool: Any, i: int) -> dict[str, Any]:
    where = f"tools[{i}]"
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise _bad(f"{where} must be an object with a `name`", where)
    if tool.get("type") not in (None, "custom"):
        raise _bad(f"{where}: Anthropic's server tool {tool['type']!r} cannot run on a local model", where)
    function: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema") or {"type": "object"}}
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}


def _tool_choice(choice: dict[str, Any]) -> dict[str, Any]:
    kind = choice.get("type")
    chosen: dict[str, Any] = {}
    if kind == "any":
        chosen["tool_choice"] = "required"
    elif kind == "tool":
        chosen["tool_choice"] = {"type": "function", "function": {"name": str(choice.get("name", ""))}}
    elif kind in ("auto", "none"):
        chosen["tool_choice"] = kind
    else:
        raise _bad(f"unknown tool_choice type {kind!r}", "tool_choice")
    if choice.get("disable_parallel_tool_use") is True:
        chosen["parallel_tool_calls"] = False
    return chosen


def count_tokens(body: dict[str, Any]) -> int:
    """An estimate of the prompt's tokens (about four characters each), as no backend can count them:
    the text of the system prompt and messages, and the tool definitions."""
    validate(body, counting=True)
    chars = 0
    for message in chat_messages(body):
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            chars += sum(len(p.get("text", "")) for p in content)
        calls = message.get("tool_calls", [])
        chars += sum(len(c["function"]["name"]) + len(c["function"]["arguments"]) for c in calls)
    tools = body.get("tools")
    if isinstance(tools, list):
        chars += len(json.dumps(tools, ensure_ascii=False))
    return max(1, math.ceil(chars / 4))


# --- answers -------------------------------------------------------------------------------------


def _content(block: Block) -> dict[str, Any]:
    if block.kind == "reasoning":
        return {"type": "thinking", "thinking": block.text, "signature": ""}
    if block.kind == "tool":
        return {"type": "tool_use", "id": block.call_id, "name": block.name, "input": arguments_object(block.text)}
    return {"type": "text", "text": block.text}


def stop_reason(reply: Reply) -> str:
    if any(b.kind == "tool" for b in reply.blocks) and reply.finish_reason in (None, "stop", "tool_calls"):
        return "tool_use"
    return STOP_REASONS.get(reply.finish_reason or "stop", "end_turn")


def usage(reply: Reply) -> dict[str, int]:
    return {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens}


def from_chat(reply: Reply, message_id: str | None = None) -> dict[str, Any]:
    """The Messages answer for a chat-completions one."""
    return {
        "id": message_id or new_id("msg"),
        "type": "message",
        "role": "assistant",
        "model": reply.model,
        "content": [_content(b) for b in reply.blocks],
        "stop_reason": stop_reason(reply),
        "stop_sequence": None,
        "usage": usage(reply),
    }


_DELTAS = {
    "text": ("text_delta", "text"),
    "reasoning": ("thinking_delta", "thinking"),
    "tool": ("input_json_delta", "partial_json"),
}


class MessagesStream(ChatStream):
    """Chat chunks as Anthropic's stream: message_start, content blocks, message_delta, message_stop."""

    def __init__(self, model: str, tokens: Tokens) -> None:
        super().__init__(model, tokens)
        self.message_id = new_id("msg")

    def start(self) -> bytes:
        message = {**from_chat(Reply(model=self.reply.model), self.message_id), "stop_reason": None}
        return sse("message_start", {"message": message})

    def open(self, block: Block) -> bytes:
        started = _content(block)
        if block.kind == "tool":
            started["input"] = {}
        elif block.kind == "text":
            started["text"] = ""
        else:
            started["thinking"] = ""
        return sse("content_block_start", {"index": block.position, "content_block": started})

    def delta(self, block: Block, text: str) -> bytes:
        kind, key = _DELTAS[block.kind]
        return sse("content_block_delta", {"index": block.position, "delta": {"type": kind, key: text}})

    def close(self, block: Block) -> bytes:
        return sse("content_block_stop", {"index": block.position})

    def end(self, reply: Reply) -> bytes:
        delta = {"stop_reason": stop_reason(reply), "stop_sequence": None}
        return sse("message_delta", {"delta": delta, "usage": usage(reply)}) + sse("message_stop", {})

    def error(self, message: str, code: str | None) -> bytes:
        return stream_error(message)


def stream_error(message: str) -> bytes:
    """Anthropic's `error` event (the SDKs raise it as an APIError)."""
    data = json.dumps(anthropic_body(500, message), ensure_ascii=False, separators=(",", ":"))
    return f"event: error\ndata: {data}\n\n".encode()
