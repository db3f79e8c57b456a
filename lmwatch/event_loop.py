"""Which asyncio event loop the daemon runs on: uvloop when it is installed, the stdlib's otherwise.

uvloop (the `fast` extra, `pip install 'lmwatch[fast]'`) takes about a fifth off the proxy's added
latency. `LMWATCH_EVENT_LOOP=asyncio` forces the stdlib loop (to rule uvloop out when debugging);
`LMWATCH_EVENT_LOOP=uvloop` insists on it and fails clearly when it is missing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "LMWATCH_EVENT_LOOP"
CHOICES = ("auto", "asyncio", "uvloop")


class EventLoopError(RuntimeError):
    """The event loop named in LMWATCH_EVENT_LOOP cannot be used."""


def loop_factory(choice: str | None = None) -> tuple[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop's name and a factory for it, from `choice` or the environment (default `auto`)."""
    choice = (choice if choice is not None else os.environ.get(ENV, "auto")).strip().lower() or "auto"
    if choice not in CHOICES:
        raise EventLoopError(f"{ENV}={choice!r}: must be one of {', '.join(CHOICES)}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise EventLoopError(
                    f"{ENV}=uvloop but uvloop is not installed (pip install 'lmwatch[fast]')"
                ) from None
        else:
            return "uvloop", uvloop.new_event_loop
    return "asyncio", asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)` on the chosen loop."""
    _, factory = loop_factory()
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
