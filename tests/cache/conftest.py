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
    proc: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    binary = shutil.which("redis-server")
    assert binary, "redis-server is missing: run `make tools`"
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel", "notice"]
    proc = await asyncio.create_subprocess_exec(binary, *args, stdout=asyncio.subprocess.PIPE)
    server = RedisServer(proc, port)
    try:
        assert proc.stdout is not None

        async def ready() -> None:
            assert proc.stdout is not None
            while b"Ready to accept connections" not in (line := await proc.stdout.readline()):
                assert line, "redis-server exited before it was ready"

        await asyncio.wait_for(ready(), 30)
        yield server
    finally:
        await server.stop()
