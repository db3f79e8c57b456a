"""What lmwatch remembers of the Responses it served, so `previous_response_id` can continue them.

A response a backend produced itself (it speaks `/v1/responses`) lives on that backend: lmwatch
remembers only where, and sends the follow-up there. A response lmwatch made by translation has
its conversation kept here (the chat turns, the answer included), and the follow-up is translated
with it to any backend. Memory is bounded: the oldest entries go first.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

MAX_RESPONSES = 1000


@dataclass(frozen=True)
class Stored:
    backend: str
    """The backend that answered (for a native response: the one that holds its state)."""
    model: str = ""
    """The model id it was sent as (a follow-up prefers it)."""
    turns: list[dict[str, Any]] | None = None
    """The conversation as chat turns, when lmwatch holds it (a translated response)."""


class ResponseStore:
    def __init__(self, limit: int = MAX_RESPONSES) -> None:
        self._limit = limit
        self._entries: OrderedDict[str, Stored] = OrderedDict()

    def get(self, response_id: str) -> Stored | None:
        found = self._entries.get(response_id)
        if found is not None:
            self._entries.move_to_end(response_id)
        return found

    def put(self, response_id: str, stored: Stored) -> None:
        self._entries[response_id] = stored
        self._entries.move_to_end(response_id)
        while len(self._entries) > self._limit:
            self._entries.popitem(last=False)
