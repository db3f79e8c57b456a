"""Cache keys: a digest of the request as it would be sent, so equal requests meet and others never do.

The body is normalised (keys sorted, compact JSON) without the fields that do not change the answer
(`user`, `metadata`, `store`) or that change only its framing (`stream`, `stream_options`, which go
into the key as two flags, since a streamed and a JSON answer are stored apart). The model is the
resolved one, not what the client wrote: `auto` today and `auto` after a model swap are different
requests.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

FRAMING = frozenset({"model", "stream", "stream_options", "user", "metadata", "store"})


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def response_key(endpoint: str, models: Iterable[str], body: dict[str, Any], stream: bool, usage: bool) -> str:
    digest = hashlib.sha256(f"{endpoint}\0{','.join(models)}\0{int(stream)}{int(usage)}\0".encode())
    digest.update(canonical({k: v for k, v in body.items() if k not in FRAMING}))
    return "r:" + digest.hexdigest()


def embedding_keys(model: str, body: dict[str, Any], inputs: list[Any]) -> list[str]:
    """One key per input text (or token list): the model, the parameters (dimensions, encoding) and it."""
    params = canonical({k: v for k, v in body.items() if k not in FRAMING and k != "input"})
    prefix = hashlib.sha256(f"{model}\0".encode() + params + b"\0")
    keys = []
    for item in inputs:
        digest = prefix.copy()
        digest.update(canonical(item))
        keys.append("e:" + digest.hexdigest())
    return keys
