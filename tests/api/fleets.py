"""Shared by the /v1 routing tests: simulated fleets behind a real daemon running the router."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import openai
import yaml
from prometheus_client.parser import text_string_to_metric_families

from lmwatch.api import openai as router
from lmwatch.config import parse_config
from lmwatch.daemon import Daemon, running_daemon
from lmwatch.outcomes import RequestOutcomes
from lmwatch.simulator import RunningSimulator, SimModel, SimSettings, start_simulator
from lmwatch.simulator.settings import ModelType

POLL = 60.0
"""Poll interval of test backends: long, so the registry only changes when a test says so."""


@dataclass
class Fleet:
    daemon: Daemon
    sims: dict[str, RunningSimulator]
    clients: list[openai.AsyncOpenAI | openai.OpenAI] = field(default_factory=list)

    @property
    def url(self) -> str:
        return str(self.daemon.url)

    @property
    def outcomes(self) -> RequestOutcomes:
        return self.daemon.registry.outcomes

    def client(self) -> openai.AsyncOpenAI:
        """An async SDK client of lmwatch (closed with the fleet)."""
        client = openai.AsyncOpenAI(base_url=self.url + "/v1", api_key="sk-client-key", max_retries=0)
        self.clients.append(client)
        return client

    def sync_client(self) -> openai.OpenAI:
        client = openai.OpenAI(base_url=self.url + "/v1", api_key="sk-client-key", max_retries=0)
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            if isinstance(client, openai.AsyncOpenAI):
                await client.close()
            else:
                client.close()

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        from prometheus_client import generate_latest

        text = generate_latest(self.daemon.services.metrics).decode()
        total = 0.0
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total


def models(*ids: str, kind: ModelType = "llm") -> list[SimModel]:
    """Loaded simulator models of one type, by id."""
    return [SimModel(id=i, type=kind) for i in ids]


@asynccontextmanager
async def fleet(
    backends: dict[str, SimSettings],
    routing: dict[str, Any] | None = None,
    server: dict[str, Any] | None = None,
    clients: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    **backend_options: Any,
) -> AsyncIterator[Fleet]:
    """Start one simulator per backend and a daemon (port 0) routing to them; `backend_options`
    maps a backend name to extra keys of its config entry, `extra` holds more top-level sections."""
    sims: dict[str, RunningSimulator] = {}
    try:
        for name, settings in backends.items():
            sims[name] = await start_simulator(settings, port=0)
        config = {
            "server": {"port": 0, **(server or {})},
            "backends": [
                {"name": name, "url": sim.url, "poll_interval": POLL, **backend_options.get(name, {})}
                for name, sim in sims.items()
            ],
            "routing": routing or {},
            **({"clients": clients} if clients else {}),
            **(extra or {}),
        }
        loaded = parse_config(yaml.safe_dump(config), env={})
        async with running_daemon(loaded, [router.setup]) as daemon:
            made = Fleet(daemon, sims)
            try:
                yield made
            finally:
                await made.close_clients()
    finally:
        for sim in sims.values():
            await sim.stop()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait for a condition another task makes true (a simulator counter, a registry value)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def chat(text: str = "hello", **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}], **extra}


def route_headers(headers: Any) -> dict[str, str]:
    return {k.lower()[len("x-lmwatch-") :]: v for k, v in headers.items() if k.lower().startswith("x-lmwatch-")}
