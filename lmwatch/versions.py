"""Server version strings as comparable numbers (both the watcher and the simulator compare them)."""

from __future__ import annotations

import re


def version_tuple(version: str) -> tuple[int, ...]:
    """`0.4.12` or `0.4.4+1` as numbers to compare (the leading digits of each dotted part)."""
    parts = []
    for part in version.split("+", 1)[0].split("."):
        digits = re.match(r"\d*", part.strip())
        parts.append(int(digits.group()) if digits and digits.group() else 0)
    return tuple(parts)
