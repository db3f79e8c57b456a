"""The usage log's family."""

from __future__ import annotations

from lmwatch.metrics.family import Family

USAGE_WRITE_FAILURES = Family(
    "lmwatch_usage_write_failures",
    "counter",
    "Usage rows that could not be written (disk, lock) or were dropped because the writer fell behind.",
)
