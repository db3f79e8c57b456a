"""The GPU memory of one simulated server: what each loaded instance holds, and whether a load fits.

An instance holds its weights (`size_bytes`) plus a KV cache that grows with its context length.
The KV cache uses a rule of thumb, `size_bytes / 32768` bytes per token of context (about 140 KiB
per token for a 7B Q4 model, close to llama.cpp's f16 cache for such models); lmwatch's estimate
(lmwatch/lifecycle/memory.py) uses the same rule, so the simulator runs out of memory exactly where
lmwatch predicts it would. A budget of 0 means unlimited (no memory model).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

KV_BYTES_DIVISOR = 32768
"""Bytes of KV cache per token of context = weights / this."""


class Held(Protocol):
    """What memory accounting needs of an instance."""

    @property
    def memory_bytes(self) -> int: ...


def footprint(size_bytes: int, context_length: int) -> int:
    """Bytes an instance of a `size_bytes` model with `context_length` tokens of context holds."""
    return size_bytes + context_length * max(1, size_bytes // KV_BYTES_DIVISOR)


def used(instances: Iterable[Held]) -> int:
    return sum(inst.memory_bytes for inst in instances)


def insufficient_message(model_id: str, needed: int, free: int) -> str:
    """LM Studio's guardrail text for a load the machine cannot hold (issue threads quote it)."""
    return (
        f'Failed to load model "{model_id}". Error: Model loading aborted due to insufficient system resources. '
        f"Overloading the system will likely cause it to freeze. (needs {needed} bytes, {free} bytes free)"
    )
