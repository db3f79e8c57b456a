"""Fixtures shared by the test modules: a default simulator and an HTTP client session."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from lmwatch import event_loop
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The loop LMWATCH_EVENT_LOOP names, picked as the daemon picks it: `make test` runs the suite on both."""
    name, factory = event_loop.loop_factory()
    return {name: factory}


@pytest.fixture(autouse=True)
def _no_admin_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's or CI's LMWATCH_ADMIN_TOKEN must not change what a test sees."""
    monkeypatch.delenv("LMWATCH_ADMIN_TOKEN", raising=False)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    """A simulated LM Studio 0.4 with the default models, on a free loopback port."""
    server = await start_simulator(SimSettings(), port=0)
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session
