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


def _wording(known: Flavour | None) -> list[Flavour]:
    """Whose error wording to read: the backend's flavour, or every flavour's when it is not known
    (a cloud provider, a backend not detected yet)."""
    return [known] if known is not None else detection_order()


def is_model_gone(known: Flavour | None, message: str) -> bool:
    """Whether an error message means "the model is not here"."""
    return any(f.is_model_gone(message) for f in _wording(known))


def is_context_exceeded(known: Flavour | None, message: str) -> bool:
    """Whether an error message means "the prompt does not fit the model's context"."""
    return any(f.is_context_exceeded(message) for f in _wording(known))


def model_type_refused(known: Flavour | None, message: str) -> str | None:
    """`llm` or `embedding` when the error says the request went to a model of the other type."""
    return next((t for f in _wording(known) if (t := f.model_type_refused(message)) is not None), None)


__all__ = [
    "BackendClient",
    "Flavour",
    "ProbeError",
    "detected",
    "detection_order",
    "flavour",
    "is_context_exceeded",
    "is_model_gone",
    "model_type_refused",
]
