"""Cache keys: a digest of the request as it would be sent, so equal requests meet and others never do.

The body is normalised (keys sorted, compact JSON) without the fields that do not change the answer
(`user`, `metadata`, `store`) or that change only its framing (`stream`, `stream_options`, which go
into the key as two flags, since a streamed and a JSON answer are stored apart). The model is the
resolved one, not what the client wrote: `auto` today and `auto` after a model swap are different
requests.

A body without the fields the answer ignores is keyed on its bytes as sent instead: hashing them
costs a fraction of re-serialising it (this runs on every cacheable request, a miss included). The
same bytes meet; the same request spelled otherwise (key order, spaces) merely misses. The two forms
never mix up two requests: one body's bytes equal another's canonical form only when both ask the same.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

IGNORED = frozenset({"user", "metadata", "store"})
"""Fields that do not change the answer."""
FRAMING = frozenset({"model", "stream", "stream_options"}) | IGNORED


def canonical_encoder() -> json.JSONEncoder:
    """One per call site that encodes many values: `json.dumps` with options builds an encoder each time."""
    return json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> bytes:
    """Only for bodies with fields the key ignores; the common case keys the bytes as sent."""
    return canonical_encoder().encode(value).encode()


def request_digest(endpoint: str, models: Iterable[str], stream: bool, usage: bool) -> hashlib.blake2b:
    """A digest begun with what the key takes from outside the body (the semantic cache's scopes too)."""
    return hashlib.blake2b(f"{endpoint}\0{','.join(models)}\0{int(stream)}{int(usage)}\0".encode(), digest_size=16)


def response_key(
    endpoint: str, models: Iterable[str], body: dict[str, Any], raw: bytes, stream: bool, usage: bool
) -> str:
    """`raw`: the body's bytes as the client sent them (keyed on directly when `body` has no ignored field)."""
    digest = request_digest(endpoint, models, stream, usage)
    if raw and IGNORED.isdisjoint(body):
        digest.update(raw)
    else:
        digest.update(canonical({k: v for k, v in body.items() if k not in FRAMING}))
    return "r:" + digest.hexdigest()


def embedding_keys(model: str, body: dict[str, Any], inputs: list[Any]) -> list[str]:
    """One key per input text (or token list): the model, the parameters (dimensions, encoding) and it."""
    params = canonical({k: v for k, v in body.items() if k not in FRAMING and k != "input"})
    prefix = hashlib.sha256(f"{model}\0".encode() + params + b"\0")
    encode = canonical_encoder().encode
    keys = []
    for item in inputs:
        digest = prefix.copy()
        digest.update(encode(item).encode())
        keys.append("e:" + digest.hexdigest())
    return keys
