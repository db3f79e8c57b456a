"""Chat completions read into the parts every translation needs, whole or as a stream.

An answer is a list of blocks in order (reasoning, text, tool calls) plus why it stopped and its
token counts: what both the Responses API (output items) and Anthropic Messages (content blocks)
are made of. `ChatStream` reads streamed chunks into the same blocks and asks its subclass for the
client's events as each block opens, grows and closes.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from lmwatch.api.sse import event_data
from lmwatch.jsondecode import loads

Kind = Literal["reasoning", "text", "tool"]


def new_id(prefix: str) -> str:
    """A unique id in the API's style (`msg_…`, `resp_…`, `call_…`)."""
    return f"{prefix}_{os.urandom(12).hex()}"


@dataclass
class Block:
    kind: Kind
    text: str = ""
    """The text, the reasoning, or a tool call's JSON arguments."""
    call_id: str = ""
    name: str = ""
    slot: int = 0
    """The tool call's `index` in the chat chunks (several calls interleave by it)."""
    position: int = 0
    """The block's place in the answer (Anthropic's content block `index`, the Responses `output_index`)."""
    item_id: str = ""
    """The Responses API's output item id, once one was made."""


@dataclass
class Reply:
    """A chat-completions answer reduced to what any API can say."""

    model: str
    blocks: list[Block] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def text(self) -> str:
        return "".join(b.text for b in self.blocks if b.kind == "text")


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _reasoning(message: dict[str, Any]) -> str:
    value = message.get("reasoning_content") or message.get("reasoning")
    return value if isinstance(value, str) else ""


def reply_of(answer: dict[str, Any], model: str) -> Reply:
    """A non-streamed `chat.completion` as a Reply."""
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    message = _dict(choice.get("message"))
    reply = Reply(model=str(answer.get("model") or model), finish_reason=choice.get("finish_reason"))
    reasoning = _reasoning(message)
    if reasoning:
        reply.blocks.append(Block("reasoning", reasoning))
    content = message.get("content")
    if isinstance(content, str) and content:
        reply.blocks.append(Block("text", content))
    for slot, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            reply.blocks.append(
                Block(
                    "tool",
                    arguments if isinstance(arguments, str) else json.dumps(arguments or {}),
                    call_id=str(call.get("id") or f"call_{slot}"),
                    name=str(function.get("name") or ""),
                    slot=slot,
                )
            )
    for position, block in enumerate(reply.blocks):
        block.position = position
    usage = _dict(answer.get("usage"))
    reply.prompt_tokens = _count(usage.get("prompt_tokens"))
    reply.completion_tokens = _count(usage.get("completion_tokens"))
    return reply


def arguments_object(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object; text that is not one is kept under `arguments`."""
    try:
        value = loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


Tokens = Callable[[], tuple[int, int]]
"""The (prompt, completion) tokens of the stream so far, as the relay counted them."""


class ChatStream(ABC):
    """Streamed chat chunks in, the client API's events out (whole SSE events, as bytes)."""

    def __init__(self, model: str, tokens: Tokens) -> None:
        self.reply = Reply(model=model)
        self._tokens = tokens
        self._open: Block | None = None
        self._started = False
        self._finished = False

    def translate(self, events: list[bytes]) -> bytes:
        out: list[bytes] = []
        for event in events:
            payload = event_data(event)
            if payload is None:
                out.append(event)  # a comment or keep-alive: valid in every SSE stream
                continue
            if not self._started:
                self._started = True
                out.append(self.start())
            if payload == b"[DONE]":
                out.append(self.finish())
                continue
            try:
                chunk = loads(payload)
            except ValueError:
                continue
            if isinstance(chunk, dict):
                self._chunk(chunk, out)
        return b"".join(out)

    def _chunk(self, chunk: dict[str, Any], out: list[bytes]) -> None:
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.reply.model = chunk["model"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = _dict(choice.get("delta"))
        reasoning = _reasoning(delta)
        if reasoning:
            self._piece(Block("reasoning"), reasoning, out)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._piece(Block("text"), content, out)
        for call in delta.get("tool_calls") or []:
            if not isinstance(call, dict):
                continue
            function = _dict(call.get("function"))
            slot = call["index"] if isinstance(call.get("index"), int) else 0
            block = Block("tool", call_id=str(call.get("id") or ""), name=str(function.get("name") or ""), slot=slot)
            arguments = function.get("arguments")
            self._piece(block, arguments if isinstance(arguments, str) else "", out)
        if choice.get("finish_reason"):
            self.reply.finish_reason = str(choice["finish_reason"])

    def _piece(self, block: Block, text: str, out: list[bytes]) -> None:
        current = self._open
        if current is None or current.kind != block.kind or (block.kind == "tool" and current.slot != block.slot):
            if current is not None:
                out.append(self.close(current))
            if block.kind == "tool" and not block.call_id:
                block.call_id = f"call_{len(self.reply.blocks)}"
            block.position = len(self.reply.blocks)
            self.reply.blocks.append(block)
            self._open = current = block
            out.append(self.open(current))
        if text:
            current.text += text
            out.append(self.delta(current, text))

    def finish(self) -> bytes:
        """The closing events, once: the open block's end, then the whole answer with its usage."""
        if self._finished:
            return b""
        self._finished = True
        out = [self.close(self._open)] if self._open is not None else []
        self._open = None
        self.reply.prompt_tokens, self.reply.completion_tokens = self._tokens()
        out.append(self.end(self.reply))
        return b"".join(out)

    @abstractmethod
    def start(self) -> bytes:
        """The events before any content (`message_start`, `response.created`)."""

    @abstractmethod
    def open(self, block: Block) -> bytes: ...

    @abstractmethod
    def delta(self, block: Block, text: str) -> bytes: ...

    @abstractmethod
    def close(self, block: Block) -> bytes: ...

    @abstractmethod
    def end(self, reply: Reply) -> bytes:
        """The last events, with the stop reason and the token counts."""

    @abstractmethod
    def error(self, message: str, code: str | None) -> bytes:
        """The event that ends a stream which failed after it started."""


def sse(event: str, payload: dict[str, Any]) -> bytes:
    """A named SSE event whose data repeats the type (both Responses and Messages streams do)."""
    data = json.dumps({"type": event, **payload}, ensure_ascii=False, separators=(",", ":"))
    return f"event: {event}\ndata: {data}\n\n".encode()
