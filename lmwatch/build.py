"""Which build of lmwatch is running: the compiled one (setup.py, `LMWATCH_MYPYC=1`) or pure Python."""

from __future__ import annotations

import importlib.machinery
import importlib.util

PROBE = "lmwatch.api.lean"
"""A module the compiled build compiles (every one of them is, or none)."""


def kind() -> str:
    """`mypyc` when the request path is compiled, else `python`."""
    spec = importlib.util.find_spec(PROBE)
    origin = spec.origin if spec is not None else None
    return "mypyc" if origin and origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES)) else "python"
