"""Server flavours, richest first: detection tries them in this order.

A new engine is a new module with a `Flavour` subclass, added to `FLAVOURS`.
"""

from lmwatch.backends.base import BackendClient, Flavour, ProbeError
from lmwatch.backends.lmstudio_v0 import LMStudioV0
from lmwatch.backends.lmstudio_v1 import LMStudioV1
from lmwatch.backends.openai_compat import OpenAICompat

FLAVOURS: tuple[Flavour, ...] = (LMStudioV1(), LMStudioV0(), OpenAICompat())
BY_NAME: dict[str, Flavour] = {f.name: f for f in FLAVOURS}

__all__ = ["BY_NAME", "FLAVOURS", "BackendClient", "Flavour", "ProbeError"]
