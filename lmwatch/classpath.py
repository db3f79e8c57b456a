"""`module:Class` names to classes: the form every extension table uses (backend flavours, simulated
flavours), so a table module imports nothing it names and an import cycle cannot start there."""

from __future__ import annotations

import importlib
from typing import TypeVar

T = TypeVar("T")


def load_class(spec: str, base: type[T]) -> type[T]:
    """The class `spec` (`package.module:Class`) names; TypeError unless it subclasses `base`."""
    module, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise TypeError(f"{spec} is not a {base.__name__} subclass")
    return cls
