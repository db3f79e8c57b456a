"""Which requests the response cache may answer, and what a stored answer holds.

Only requests meant to repeat are cached: `temperature: 0` or a `seed`, or every request with
`cache.all_requests`, or one the client opts in with `X-LMWatch-Cache: on`. A client opts out with
`X-LMWatch-Cache: off` or `Cache-Control: no-store` (neither read nor stored); `Cache-Control:
no-cache` skips the lookup but stores the fresh answer; a client key with `cache: false` always
bypasses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any

from lmwatch.config import CacheConfig

HEADER = "X-LMWatch-Cache"
"""Request: `on` / `off`; response: `hit`, `miss` or `bypass`."""
ON = ("on", "1", "true", "yes")
OFF = ("off", "0", "false", "no")


class Result(StrEnum):
    HIT = "hit"
    MISS = "miss"
    BYPASS = "bypass"


@dataclass(frozen=True)
class Decision:
    read: bool
    write: bool


BYPASS = Decision(read=False, write=False)


def decide(config: CacheConfig, headers: Mapping[str, str], key_allows: bool, repeatable: bool) -> Decision:
    """May the cache answer this request (read), and keep its answer (write)? `repeatable`: the
    request asks for a repeatable answer (see `deterministic`; embeddings always are)."""
    if not config.enabled or not key_allows:
        return BYPASS
    asked = headers.get(HEADER, "").strip().lower()
    control = {d.strip().lower() for d in headers.get("Cache-Control", "").split(",")}
    if asked in OFF or "no-store" in control:
        return BYPASS
    if not (asked in ON or config.all_requests or repeatable):
        return BYPASS
    return Decision(read="no-cache" not in control, write=True)


def deterministic(body: Mapping[str, Any]) -> bool:
    """Asked to repeat: greedy sampling (`temperature: 0`) or a fixed `seed`."""
    temperature, seed = body.get("temperature"), body.get("seed")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
    return greedy or (isinstance(seed, int) and not isinstance(seed, bool))


@dataclass(frozen=True)
class Entry:
    """A stored answer: the JSON body or the SSE bytes the client received, and who produced it."""

    backend: str
    model: str
    task: str
    sse: bool
    prompt_tokens: int
    completion_tokens: int
    body: bytes

    def encode(self) -> bytes:
        """A JSON head line of the fields but the body, then the body (built field by field: it runs
        on the request path, and `dataclasses.asdict` copies deeply)."""
        meta = {f.name: getattr(self, f.name) for f in _META}
        return json.dumps(meta, separators=(",", ":")).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """None for bytes that are not an entry (another version's, or damaged): a miss, not an error."""
        head, sep, body = raw.partition(b"\n")
        try:
            meta = json.loads(head) if sep else None
            return cls(**meta, body=body) if isinstance(meta, dict) else None
        except (ValueError, TypeError):
            return None


_META = tuple(f for f in fields(Entry) if f.name != "body")
