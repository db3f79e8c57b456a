"""The embedding cache: one entry per input text (model + parameters + text), so a re-index of a
document set whose chunks mostly did not change sends only the changed ones upstream.

A stored vector keeps the backend and model that made it and its share of the prompt tokens (the
API reports only a batch total; it is split by input length), so a hit still reports where the
vector came from and what it saved.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lmwatch.cache.keys import embedding_keys as keys

__all__ = ["Vector", "answer_body", "inputs", "keys", "vectors"]


@dataclass(frozen=True)
class Vector:
    backend: str
    model: str
    tokens: int
    embedding: Any
    """A list of floats, or the base64 string of `encoding_format: base64`."""

    def encode(self) -> bytes:
        """A JSON head line, then the floats as packed doubles (exact, and a third of their JSON size)."""
        floats = isinstance(self.embedding, list) and all(type(x) is float for x in self.embedding)
        head = json.dumps([self.backend, self.model, self.tokens, "f64" if floats else "json"], separators=(",", ":"))
        payload = array("d", self.embedding).tobytes() if floats else json.dumps(self.embedding).encode()
        return head.encode() + b"\n" + payload

    @classmethod
    def decode(cls, raw: bytes) -> Vector | None:
        head, _, payload = raw.partition(b"\n")
        try:
            backend, model, tokens, kind = json.loads(head)
            if kind == "f64":
                embedding: Any = array("d", payload).tolist()
            else:
                embedding = json.loads(payload)
        except (ValueError, TypeError):
            return None
        return cls(str(backend), str(model), int(tokens), embedding)


def inputs(value: Any) -> list[Any]:
    """The inputs of an `input` field: its items, or itself when it is one text or one token list."""
    if isinstance(value, list) and value and not all(isinstance(i, int) for i in value):
        return list(value)
    return [value]


def vectors(status: int, obj: dict[str, Any], items: Sequence[Any], backend: str, model: str) -> list[Vector] | None:
    """The vectors of a successful upstream answer for `items`, in order (None for anything else)."""
    data = obj.get("data")
    if status != 200 or not isinstance(data, list) or len(data) != len(items):
        return None
    by_index: dict[int, Any] = {}
    for position, item in enumerate(data):
        if not isinstance(item, dict) or "embedding" not in item:
            return None
        index = item.get("index")
        by_index[index if isinstance(index, int) else position] = item["embedding"]
    if sorted(by_index) != list(range(len(items))):
        return None
    usage = obj.get("usage")
    total = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    lengths = [len(json.dumps(item)) for item in items]
    share = (total if isinstance(total, int) else 0) / max(1, sum(lengths))
    answered = obj.get("model")
    model = answered if isinstance(answered, str) and answered else model
    return [Vector(backend, model, round(n * share), by_index[i]) for i, n in enumerate(lengths)]


def answer_body(done: Sequence[Vector], prompt_tokens: int) -> dict[str, Any]:
    """The client's answer: every vector in input order; usage counts the tokens sent upstream now."""
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": v.embedding} for i, v in enumerate(done)],
        "model": done[0].model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
