"""`lmwatch demo` (what `make demo` runs) as a subprocess on free ports, for the tests that follow the
README, drive the console in Chromium, run `lmwatch top` or fuzz the API against it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.ports import free_port_run

REPO = Path(__file__).resolve().parent.parent
DEMO_BACKENDS = ("studio-a", "studio-b", "engine-c")
READY_WITHIN_SECONDS = 10.0


@dataclass
class Demo:
    url: str
    sim_port: int
    proc: asyncio.subprocess.Process
    output: list[str] = field(default_factory=list)
    _line: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        """Keep reading the demo's output (so its pipe never fills), line by line."""
        assert self.proc.stdout is not None
        while line := (await self.proc.stdout.readline()).decode():
            async with self._line:
                self.output.append(line)
                self._line.notify_all()
        async with self._line:
            self._line.notify_all()

    def sim_url(self, backend: str) -> str:
        return f"http://127.0.0.1:{self.sim_port + DEMO_BACKENDS.index(backend)}"

    async def read_until(self, text: str, timeout: float = 30) -> None:
        """Until a line of the demo's output holds `text` (its banner, say)."""

        def seen() -> bool:
            assert self._reader is not None
            return any(text in line for line in self.output) or self._reader.done()

        async with self._line:
            await asyncio.wait_for(self._line.wait_for(seen), timeout)
        if not any(text in line for line in self.output):
            raise AssertionError(f"the demo exited before printing {text!r}:\n" + "".join(self.output))

    async def stop(self, timeout: float = 30) -> int:
        """Ctrl-C, as a user stops it; its whole output is kept."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
        assert self._reader is not None
        await asyncio.wait_for(self._reader, timeout)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    @property
    def text(self) -> str:
        return "".join(self.output)


async def wait_all_up(url: str, timeout: float = READY_WITHIN_SECONDS) -> dict[str, object]:
    """Poll /status until the daemon is ready and every demo backend is up; the last /status."""
    status: dict[str, object] = {}
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            try:
                async with http.get(url + "/status") as resp:
                    status = json.loads(await resp.read())
            except aiohttp.ClientError:
                await asyncio.sleep(0.1)
                continue
            backends = status.get("backends", [])
            assert isinstance(backends, list)
            if status.get("ready") and {b["name"]: b["health"] for b in backends} == dict.fromkeys(DEMO_BACKENDS, "up"):
                return status
            await asyncio.sleep(0.1)
    raise AssertionError(f"the demo's backends were not all up within {timeout:.0f} s: {status}")


async def wait_kept(url: str, backend: str, model: str, timeout: float = READY_WITHIN_SECONDS) -> dict[str, Any]:
    """Poll /status (the demo runs in another process) until `model` is loaded on `backend`; its state."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    state: dict[str, Any] = {}
    async with aiohttp.ClientSession() as http:
        while loop.time() < deadline:
            async with http.get(url + "/status") as resp:
                section = (await resp.json())["lifecycle"]["backends"][backend]["keep_loaded"]
            state = next((s for s in section if s["model"] == model), {})
            if state.get("state") == "loaded":
                return state
            await asyncio.sleep(0.1)
    raise AssertionError(f"{model} was not kept loaded on {backend} within {timeout:.0f} s: {state}")


PORT_ATTEMPTS = 3
"""Free ports are picked before the demo binds them: another program may take one in between."""


async def _start_demo(extra: tuple[str, ...]) -> Demo:
    """The demo started on free ports and printing its banner (retried when a port was taken meanwhile)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LMWATCH_")}
    for attempt in range(PORT_ATTEMPTS):
        sim_port = free_port_run(4)
        port = sim_port + 3
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "lmwatch", "demo", "--port", str(port), "--sim-port", str(sim_port), *extra),
            env=env,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill takes its simulators with it
        )
        demo = Demo(f"http://127.0.0.1:{port}", sim_port, proc)
        try:
            await demo.read_until("lmwatch demo is running")
            return demo
        except AssertionError:
            with contextlib.suppress(ProcessLookupError):
                await demo.stop()
            if "cannot listen on" not in demo.text or attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


@asynccontextmanager
async def running_demo(*extra: str) -> AsyncIterator[Demo]:
    """The demo on free ports, every backend up; stopped with Ctrl-C (killed if that fails)."""
    demo = await _start_demo(extra)
    proc = demo.proc
    try:
        await wait_all_up(demo.url)
        yield demo
    finally:
        if proc.returncode is None:
            try:
                await demo.stop()
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)  # the demo hung: it and its simulators
                await proc.wait()
