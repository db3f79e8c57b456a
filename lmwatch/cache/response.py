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
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple

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
READ_WRITE = Decision(read=True, write=True)
WRITE_ONLY = Decision(read=False, write=True)
_NONE: frozenset[str] = frozenset()


def decide(config: CacheConfig, headers: Mapping[str, str], key_allows: bool, repeatable: bool) -> Decision:
    """May the cache answer this request (read), and keep its answer (write)? `repeatable`: the
    request asks for a repeatable answer (see `deterministic`; embeddings always are)."""
    if not config.enabled or not key_allows:
        return BYPASS
    asked = headers.get(HEADER)
    asked = asked.strip().lower() if asked is not None else ""
    control = headers.get("Cache-Control")  # most requests have neither header
    directives = {d.strip().lower() for d in control.split(",")} if control is not None else _NONE
    if asked in OFF or "no-store" in directives:
        return BYPASS
    if not (asked in ON or config.all_requests or repeatable):
        return BYPASS
    return READ_WRITE if "no-cache" not in directives else WRITE_ONLY


def deterministic(body: Mapping[str, Any]) -> bool:
    """Asked to repeat: greedy sampling (`temperature: 0`) or a fixed `seed`."""
    temperature, seed = body.get("temperature"), body.get("seed")
    greedy = isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature == 0
    return greedy or (isinstance(seed, int) and not isinstance(seed, bool))


class Entry(NamedTuple):
    """A stored answer: the JSON body or the SSE bytes the client received, and who produced it (a
    named tuple: one is made for every answer the cache keeps)."""

    backend: str
    model: str
    task: str
    sse: bool
    prompt_tokens: int
    completion_tokens: int
    body: bytes

    def encode(self) -> bytes:
        """A JSON list of the fields but the body on the first line, then the body (the list, not an
        object: `json.dumps` without options takes its fast path)."""
        return json.dumps(self[:-1]).encode() + b"\n" + self.body

    @classmethod
    def decode(cls, raw: bytes) -> Entry | None:
        """None for bytes that are not an entry (another version's, or damaged): a miss, not an error."""
        head, sep, body = raw.partition(b"\n")
        try:
            meta = json.loads(head) if sep else None
        except ValueError:
            return None
        if not (isinstance(meta, list) and len(meta) == 6):  # the head of an older entry is an object
            return None
        backend, model, task, sse, prompt_tokens, completion_tokens = meta
        return cls(backend, model, task, sse, prompt_tokens, completion_tokens, body)
