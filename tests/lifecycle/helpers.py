"""Helpers for the lifecycle tests: a daemon over simulators, waiting on the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from lmwatch.daemon import Daemon
from lmwatch.registry import Snapshot
from tests.daemons import config_file, daemon_for

GIB = 1024**3
MISTRAL = "mistral-7b-instruct-v0.3"
"""The default simulator's one downloaded model that is not loaded at start."""


def loaded(backend: str, model: str, want: bool = True) -> Any:
    def check(snap: Snapshot) -> bool:
        info = snap.backend(backend)
        found = info.model(model) if info is not None else None
        return info is not None and info.reachable and (found is not None and found.loaded) == want

    return check


@asynccontextmanager
async def lifecycle_daemon(tmp_path: Path, body: str, name: str = "lmwatch.yaml") -> AsyncIterator[Daemon]:
    async with daemon_for(config_file(tmp_path, body, name=name)) as daemon:
        yield daemon


async def sim_post(url: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.post(url + path, json=body) as resp:
        return resp.status, await resp.json(content_type=None)


async def status(daemon: Daemon) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(daemon.url + "/status") as resp:
        data: dict[str, Any] = await resp.json()
        return data
