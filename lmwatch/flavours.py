"""The table of backend flavours: a `kind` name and the class that speaks it, richest first (the
order detection tries them in). A new flavour is one module in `lmwatch/backends/` plus one line here.

The classes are named by import path, as uvicorn names its protocol classes, so `config` (which every
layer imports) offers the names as `kind` choices without importing the implementations.
"""

from __future__ import annotations

from typing import Final

FLAVOURS: Final[dict[str, str]] = {
    "lmstudio-v1": "lmwatch.backends.lmstudio_v1:LMStudioV1",
    "lmstudio-v0": "lmwatch.backends.lmstudio_v0:LMStudioV0",
    "openai": "lmwatch.backends.openai_compat:OpenAICompat",
}
"""`kind` name → `module:Class` of its `lmwatch.backends.base.Flavour` subclass, in detection order."""

AUTO: Final = "auto"
"""The `kind` that means "detect": try every flavour in table order."""
