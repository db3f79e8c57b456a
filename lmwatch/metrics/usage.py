"""The usage log's family."""

from __future__ import annotations

from lmwatch.metrics.family import Family

USAGE_WRITE_FAILURES = Family(
    "lmwatch_usage_write_failures",
    "counter",
    "Requests whose usage could not be written (disk, lock) or was dropped because the writer fell behind.",
)
