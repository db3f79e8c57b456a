"""JSON from outside (clients, backends, files): one decode whose every failure is a ValueError.

`json.loads` raises RecursionError on arrays nested ~1,000 deep (a 2 KB body) and accepts lone
UTF-16 surrogates (`"\ud800"`) that no UTF-8 encoder can write back; both would surface far from
the edge as a 500 or as a backend failure. Here they are bad input like any other.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_SPACE = json.decoder.WHITESPACE.match  # type: ignore[attr-defined]


def loads(raw: bytes | str) -> Any:
    """Decode JSON; ValueError (UnicodeDecodeError included) for anything that is not usable JSON.

    An object in UTF-8 (every request and answer body) goes straight to the decoder's C scanner,
    skipping `json.loads`' encoding detection and the three Python frames around the scan; anything
    else, and any body the scanner does not take whole, is `json.loads`' (its errors included)."""
    try:
        if isinstance(raw, bytes) and raw[:1] == b"{" and raw[1:2] != b"\x00":  # UTF-16 would have NULs
            text = raw.decode()
            try:
                value, end = _SCAN(text, 0)
            except (ValueError, StopIteration):
                pass
            else:
                if end == len(text) or _SPACE(text, end).end() == len(text):
                    return value
        return json.loads(raw)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def loads_text(raw: bytes) -> Any:
    """`loads`, and a ValueError when a string holds a lone surrogate (only checked when the body
    has a surrogate escape at all, so ordinary bodies pay one byte search)."""
    value = loads(raw)
    if _SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(value):
        raise ValueError("a string holds a lone UTF-16 surrogate (like \\ud800), which is not valid Unicode")
    return value


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False
