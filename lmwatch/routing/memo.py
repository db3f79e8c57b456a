"""Derived data rebuilt only when the config object changes (a reload swaps the whole object)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class PerConfig(Generic[K, V]):
    """Remembers `build(config)` for the last config seen; the config is compared by identity."""

    def __init__(self, build: Callable[[K], V]) -> None:
        self._build = build
        self._key: K | None = None
        self._value: V | None = None

    def __call__(self, config: K) -> V:
        if self._key is not config or self._value is None:
            self._value = self._build(config)
            self._key = config
        return self._value
