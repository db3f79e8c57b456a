"""Deterministic "model output": text, tool calls, JSON for a schema, and embedding vectors.

The same request always gets the same answer (a hash of the prompt seeds everything), so tests can
compare outputs and benchmarks measure the server, not a random generator. Results are cached:
a load generator repeating one body costs a dict lookup, not a regeneration.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import sys
import zlib
from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

EMBEDDING_DIM = 768
VOCAB = (
    "the", "model", "answer", "local", "server", "token", "stream", "context", "prompt", "quick",
    "simple", "value", "result", "function", "returns", "a", "list", "of", "every", "request",
    "is", "handled", "by", "one", "slot", "while", "others", "wait", "in", "line", "and", "then",
    "data", "flows", "through", "cache", "layer", "with", "care", "so", "each", "step", "stays",
    "fast", "clear", "small", "this", "code", "works", "well", "on", "GPU", "memory", "batch",
    "query", "vector", "space", "metric", "latency", "window", "output", "input", "state", "time",
)  # fmt: skip


def seed_of(text: str) -> int:
    """A stable 32-bit seed for a prompt (crc32: fast, and stable across processes and runs)."""
    return zlib.crc32(text.encode("utf-8", "surrogatepass"))


def count_words(text: str) -> int:
    """LM Studio-ish prompt token count: a rough word count, at least 1 for a non-empty prompt."""
    return len(text.split())


@lru_cache(maxsize=4096)
def text_tokens(seed: int, count: int) -> tuple[str, ...]:
    """`count` tokens of plausible-looking text: a capitalised first word, then ` word` pieces."""
    state = (seed & 0x7FFFFFFF) or 1
    out: list[str] = []
    for i in range(count):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        word = VOCAB[(state >> 10) % len(VOCAB)]
        out.append(word.capitalize() if i == 0 else " " + word)
    if out:
        out[-1] += "."
    return tuple(out)


@lru_cache(maxsize=4096)
def text_content(seed: int, count: int) -> str:
    return "".join(text_tokens(seed, count))


def split_pieces(text: str, size: int = 4) -> list[str]:
    """Cut a string (JSON arguments, a JSON answer) into stream-sized pieces."""
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- tool calls and structured output ------------------------------------------------------------


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    """JSON text, as OpenAI puts it in `function.arguments`."""


_TOOL_HINTS = ("tool", "function", "call ", "use the", "look up", "lookup", "weather", "search")


def plan_tool_call(body: Mapping[str, object], last_user_text: str, seed: int) -> ToolCall | None:
    """The tool call the model "decides" on, or None to answer with text.

    A call is made when the request offers `tools` and either `tool_choice` demands one
    ("required" or a named function) or the last user message asks for one (names a tool, or says
    "tool", "call ", "search"...). After a `tool` result message the model answers in text.
    """
    tools = body.get("tools")
    choice = body.get("tool_choice", "auto")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    messages = body.get("messages")
    last = messages[-1] if isinstance(messages, list) and messages else None
    if isinstance(last, dict) and last.get("role") == "tool":
        return None
    functions = [t["function"] for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)]
    if not functions:
        return None
    chosen: Mapping[str, object] | None = None
    if isinstance(choice, dict):
        wanted = choice.get("function", {}).get("name") if isinstance(choice.get("function"), dict) else None
        chosen = next((f for f in functions if f.get("name") == wanted), None)
        if chosen is None and isinstance(wanted, str):
            chosen = {"name": wanted}
    if chosen is None:
        text = last_user_text.lower()
        for function in functions:
            name = str(function.get("name", ""))
            if name and (name.lower() in text or name.lower().replace("_", " ") in text):
                chosen = function
                break
        if chosen is None and (choice == "required" or any(h in text for h in _TOOL_HINTS)):
            chosen = functions[0]
    if chosen is None:
        return None
    params = chosen.get("parameters")
    arguments = schema_value(params if isinstance(params, dict) else {"type": "object"}, seed)
    call_id = str(100_000_000 + seed % 900_000_000)  # LM Studio's call ids are numeric strings
    return ToolCall(call_id, str(chosen.get("name", "tool")), json.dumps(arguments))


def schema_value(schema: Mapping[str, object], seed: int, depth: int = 0) -> object:
    """A small value that validates against a (simple) JSON schema, chosen deterministically."""
    if depth > 6:
        return None
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[seed % len(enum)]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], dict):
            return schema_value(options[0], seed, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    word = VOCAB[seed % len(VOCAB)]
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {
            str(name): schema_value(sub if isinstance(sub, dict) else {}, seed + i + 1, depth + 1)
            for i, (name, sub) in enumerate(props.items())
        }
    if kind == "array":
        items = schema.get("items")
        min_items = schema.get("minItems")
        n = min_items if isinstance(min_items, int) and min_items > 0 else 1
        return [schema_value(items if isinstance(items, dict) else {}, seed + i, depth + 1) for i in range(n)]
    if kind == "integer":
        return int(seed % 100)
    if kind == "number":
        return round((seed % 1000) / 10, 1)
    if kind == "boolean":
        return seed % 2 == 0
    if kind == "null":
        return None
    return word


# --- embeddings ----------------------------------------------------------------------------------

_WORDS = re.compile(r"\w+")
_DIRECTIONS = 8
"""Dimensions each word moves (sparse, so unrelated words stay nearly orthogonal)."""
_UNPACK = struct.Struct(f"<{_DIRECTIONS}H").unpack
_FUNCTION_WORDS = frozenset(
    (
        "a", "an", "the", "this", "that", "these", "those", "is", "are", "was", "were", "be", "of", "in",
        "on", "at", "to", "for", "from", "by", "with", "and", "or", "but", "it", "its", "my", "me", "i",
        "you", "your", "we", "our", "what", "which", "who", "how", "why", "when", "where", "do", "does", "can",
    )
)  # fmt: skip
_FUNCTION_WORD_WEIGHT = 0.1
"""Words that say little about a text weigh little, as in a real model."""


@lru_cache(maxsize=65536)
def _direction(word: str) -> tuple[tuple[int, float], ...]:
    """The fixed pseudo-random (dimension, sign) moves of one word."""
    raw = hashlib.shake_256(word.encode("utf-8", "surrogatepass")).digest(_DIRECTIONS * 2)
    return tuple((x % EMBEDDING_DIM, 1.0 if x & 0x8000 else -1.0) for x in _UNPACK(raw))


@lru_cache(maxsize=8192)
def embedding(text: str) -> tuple[float, ...]:
    """A unit vector of `EMBEDDING_DIM` floats: the sum of each (lower-cased) word's fixed direction.

    Same text, same vector; texts that share words point alike, as a real embedding model's texts on
    one subject do, so a similarity search against the simulator finds what shares its words.
    """
    vector = [0.0] * EMBEDDING_DIM
    for word in _WORDS.findall(text.lower()) or [text]:
        weight = _FUNCTION_WORD_WEIGHT if word in _FUNCTION_WORDS else 1.0
        for i, sign in _direction(word):
            vector[i] += sign * weight
    norm = math.sqrt(math.fsum(x * x for x in vector)) or 1.0
    return tuple(x / norm for x in vector)


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's `encoding_format: "base64"`: little-endian float32, base64-encoded."""
    packed = array("f", vector)
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")
