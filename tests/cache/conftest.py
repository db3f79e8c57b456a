"""A real redis-server (Debian's package, installed by `make tools`) on a free loopback port."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from tests.ports import free_port


@dataclass
class RedisServer:
    port: int
    proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Start redis-server (empty: nothing is saved) on this port, and wait until it accepts connections."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: run `make tools`"
        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        proc = self.proc = await asyncio.create_subprocess_exec(binary, *args, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        stdout = proc.stdout

        async def ready() -> None:
            while b"Ready to accept connections" not in (line := await stdout.readline()):
                assert line, "redis-server exited before it was ready"

        await asyncio.wait_for(ready(), 30)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer(free_port())
    try:
        await server.start()
        yield server
    finally:
        await server.stop()
