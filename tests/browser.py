"""Debian's headless Chromium, driven over the DevTools protocol with aiohttp's websocket client.

`make tools` installs `chromium`; nothing is downloaded at test time. Each browser gets a fresh
profile directory and the flags that keep it off the network (no updates, no sync, no QUIC), and
every console message, uncaught exception and log entry at level error is recorded in `errors`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-port=0",
)

WAIT_FOR = """new Promise((resolve) => {
  const check = () => { const value = (%s); if (value) { resolve(value); return true; } return false; };
  if (!check()) new MutationObserver((_, observer) => { if (check()) observer.disconnect(); })
    .observe(document, {subtree: true, childList: true, attributes: true, characterData: true});
})"""
"""Resolves with the expression's value once it is truthy, re-checked on every change of the page."""


class Page:
    """One tab: commands by id over the websocket, events recorded as they come."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.errors: list[str] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = json.loads(message.data)
            if "id" in data:
                future = self._pending.pop(data["id"])
                if "error" in data:
                    future.set_exception(RuntimeError(f"DevTools: {data['error']}"))
                else:
                    future.set_result(data.get("result", {}))
                continue
            method, params = data.get("method", ""), data.get("params", {})
            self._record_error(method, params)
            for waiter in self._events.pop(method, []):
                if not waiter.done():
                    waiter.set_result(params)

    def _record_error(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            self.errors.append(
                "console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            )
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            self.errors.append("exception: " + details.get("exception", {}).get("description", details.get("text", "")))
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        await self.ws.send_json({"id": command_id, "method": method, "params": params})
        return await asyncio.wait_for(future, 30)

    def event(self, method: str) -> asyncio.Future[dict[str, Any]]:
        """A future for the next `method` event; take it before the command that causes it."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._events.setdefault(method, []).append(future)
        return future

    async def goto(self, url: str) -> None:
        loaded = self.event("Page.loadEventFired")
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(loaded, 30)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """The expression's value once it is truthy (awaited on DOM changes, not polled)."""
        try:
            return await asyncio.wait_for(self.evaluate(WAIT_FOR % expression), timeout)
        except TimeoutError:
            body = await self.evaluate("document.body.innerText")
            raise AssertionError(f"not true within {timeout:g} s: {expression}\n--- page\n{body}") from None

    async def click(self, selector: str) -> None:
        query = f"document.querySelector({json.dumps(selector)})"
        found = await self.evaluate(f"(() => {{ const e = {query}; if (e) e.click(); return !!e; }})()")
        assert found, f"nothing matches {selector}"

    async def type_into(self, selector: str, text: str) -> None:
        await self.evaluate(f"document.querySelector({json.dumps(selector)}).value = {json.dumps(text)}")

    async def screenshot(self, width: int, height: int) -> bytes:
        await self.send(
            "Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False
        )
        result = await self.send("Page.captureScreenshot", format="png")
        return base64.b64decode(result["data"])


@asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """A fresh headless Chromium with one blank tab, with the Page, Runtime and Log domains enabled."""
    assert shutil.which(CHROMIUM), f"{CHROMIUM} is missing: `make tools` installs Debian's chromium"
    # Chromium's helper processes can still be writing the profile when the browser is gone: they
    # are killed with it (their own process group), and a leftover file never fails the test.
    with tempfile.TemporaryDirectory(prefix="lmwatch-chromium-", ignore_cleanup_errors=True) as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            endpoint = await asyncio.wait_for(_devtools_endpoint(proc), 30)
            assert proc.stderr is not None
            drain = asyncio.create_task(_drain(proc.stderr))
            async with aiohttp.ClientSession() as http:
                async with http.get(f"http://{endpoint}/json/list") as resp:
                    targets = await resp.json()
                [target] = [t for t in targets if t["type"] == "page"]
                async with http.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    page = Page(ws)
                    for domain in ("Page", "Runtime", "Log"):
                        await page.send(f"{domain}.enable")
                    yield page
            drain.cancel()
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


async def _devtools_endpoint(proc: asyncio.subprocess.Process) -> str:
    """host:port from Chromium's `DevTools listening on ws://...` line; stderr is drained afterwards."""
    assert proc.stderr is not None
    seen: list[str] = []
    while line := (await proc.stderr.readline()).decode():
        seen.append(line)
        match = re.search(r"DevTools listening on ws://([^/]+)/", line)
        if match:
            return match.group(1)
    raise AssertionError("chromium exited before it listened:\n" + "".join(seen))


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass
