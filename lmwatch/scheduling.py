"""APScheduler coroutine jobs that stay quiet when lmwatch stops.

APScheduler logs `Job "..." raised an exception` with a `CancelledError` traceback for a coroutine
job that is cancelled, and `scheduler.shutdown()` cancels every job still running (so does the event
loop's own shutdown). A stop during a slow job (the lifecycle's idle sweep waiting on a hung
backend, a sampler, a scan of the backend files) is no error: the job ends quietly instead.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("lmwatch.scheduling")


def quiet_when_cancelled(job: Callable[..., Awaitable[object]]) -> Callable[..., Coroutine[Any, Any, None]]:
    """`job` as an APScheduler job: a cancellation ends it with a debug line, not a traceback."""

    @functools.wraps(job)
    async def run(*args: Any, **kwargs: Any) -> None:
        try:
            await job(*args, **kwargs)
        except asyncio.CancelledError:
            log.debug("%s cancelled: lmwatch is stopping", getattr(job, "__qualname__", job))

    return run
