"""Server flavours behind one interface; `lmwatch.flavours.FLAVOURS` names them in detection order.

A new engine is a new module here with a `Flavour` subclass, plus one line in that table.
"""

from __future__ import annotations

import functools

from lmwatch.backends.base import BackendClient, Flavour, ProbeError
from lmwatch.classpath import load_class
from lmwatch.flavours import FLAVOURS


@functools.cache
def flavour(name: str) -> Flavour:
    """The flavour the table names `name` (a `kind` or a detected flavour in the registry).

    One instance per name (flavours hold no state): the router asks on every request."""
    return load_class(FLAVOURS[name], Flavour)(name)  # type: ignore[type-abstract]  # the subclass is concrete


def detected(name: str | None) -> Flavour | None:
    """The flavour a backend was detected as (`BackendInfo.flavour`), None before detection."""
    return flavour(name) if name in FLAVOURS else None


def detection_order() -> list[Flavour]:
    """Every flavour, richest first."""
    return [flavour(name) for name in FLAVOURS]


def is_model_gone(known: Flavour | None, message: str) -> bool:
    """Whether an error message means "the model is not here": by the backend's flavour, or by any
    flavour's wording when it is not known (a cloud provider, a backend not detected yet)."""
    candidates = [known] if known is not None else detection_order()
    return any(f.is_model_gone(message) for f in candidates)


__all__ = ["BackendClient", "Flavour", "ProbeError", "detected", "detection_order", "flavour", "is_model_gone"]
