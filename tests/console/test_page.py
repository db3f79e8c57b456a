"""The console at `/` in a real headless Chromium (Debian's), against a daemon watching two simulated
LM Studio servers: it renders the live fleet, updates when a backend goes down, acts through the admin
API only with the admin token, explains a route, and logs no console errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from lmwatch.daemon import Daemon
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.browser import Page, chromium
from tests.daemons import ADMIN_TOKEN, backend_yaml, config_file, daemon_for

pytestmark = pytest.mark.tools


@pytest.fixture
async def fleet(tmp_path: Path) -> AsyncIterator[tuple[Daemon, RunningSimulator, RunningSimulator]]:
    one = await start_simulator(SimSettings(), port=0)
    two = await start_simulator(SimSettings(), port=0)
    body = (
        f"backends: [{backend_yaml('studio-a', one.url)}, {backend_yaml('studio-b', two.url, retry_attempts=1)}]\n"
        "sampling: {gpu: simulated}\n"
    )
    try:
        async with daemon_for(config_file(tmp_path, body)) as daemon:
            yield daemon, one, two
    finally:
        await one.stop()
        await two.stop()


@pytest.fixture
async def page() -> AsyncIterator[Page]:
    async with chromium() as tab:
        yield tab


def row(table: str, **data: str) -> str:
    """A JS expression: the row of `table` whose data-* attributes match."""
    selector = "".join(f"[data-{k}={json.dumps(v)}]" for k, v in data.items())
    return f"document.querySelector({json.dumps(f'#{table} tbody tr{selector}')})"


async def test_the_console_shows_the_live_fleet_and_acts_with_the_admin_token(
    fleet: tuple[Daemon, RunningSimulator, RunningSimulator], page: Page, http: aiohttp.ClientSession
) -> None:
    daemon, _, two = fleet
    await page.goto(daemon.url + "/?interval=250")
    assert await page.evaluate("document.title") == "lmwatch console"

    # the live backends, their models, the (simulated) GPUs
    await page.wait_for(row("backends", backend="studio-a", health="up"))
    await page.wait_for(row("backends", backend="studio-b", health="up"))
    assert await page.wait_for(f"{row('models', backend='studio-a', model='qwen2.5-coder-7b-instruct')}?.innerText")
    assert await page.evaluate(f"{row('models', backend='studio-a', model='mistral-7b-instruct-v0.3')}.dataset.state")
    gpus = await page.wait_for("document.querySelectorAll('#gpus tbody tr[data-gpu]').length")
    assert gpus == 2
    assert await page.evaluate("document.getElementById('connection').textContent") == "live"

    # an action without the token is refused by the admin API, and the page says why
    await page.click("#backends tr[data-backend='studio-a'] button.action")
    message = await page.wait_for("document.querySelector('#message.error')?.textContent")
    assert "admin token" in message
    assert not daemon.registry.snapshot().backends["studio-a"].draining
    assert [e for e in page.errors if "401" in e], page.errors  # the browser logs the refused request
    page.errors.clear()

    # with the token: drain, undrain, load
    await page.type_into("#token", ADMIN_TOKEN)
    await page.click("#token-form button")
    await page.click("#backends tr[data-backend='studio-a'] button.action")
    await page.wait_for(f"{row('backends', backend='studio-a')}?.querySelector('.badge.draining')")
    assert daemon.registry.snapshot().backends["studio-a"].draining
    await page.click("#backends tr[data-backend='studio-a'] button.action")
    await page.wait_for(f"!{row('backends', backend='studio-a')}?.querySelector('.badge.draining')")
    assert not daemon.registry.snapshot().backends["studio-a"].draining
    await page.click("#models tr[data-backend='studio-a'][data-model='mistral-7b-instruct-v0.3'] button.action")
    await page.wait_for(row("models", backend="studio-a", model="mistral-7b-instruct-v0.3", state="loaded"))

    # where would this prompt go
    await page.type_into("#prompt", "Fix this Python traceback: KeyError in parse()")
    await page.click("#explain-form button")
    chosen = await page.wait_for("document.getElementById('explain-chosen')?.textContent")
    assert chosen.startswith("chosen: studio-")
    assert "coding" in await page.evaluate("document.getElementById('explain-task').textContent")

    # a routed request shows up under recent requests, without its prompt
    prompt = "A haiku about a very particular GPU"
    body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
    async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
        assert resp.status == 200
    await page.wait_for("document.querySelector('#requests tbody tr[data-backend]')")
    assert prompt not in await page.evaluate("document.body.innerText")

    # a backend goes down: the page follows, and its models are marked stale
    await two.stop()
    await page.wait_for(row("backends", backend="studio-b", health="down"), timeout=30)
    await page.wait_for(row("models", backend="studio-b", model="qwen2.5-coder-7b-instruct", state="stale"))
    assert await page.evaluate(f"{row('backends', backend='studio-a')}.dataset.health") == "up"

    assert page.errors == []


async def test_the_page_loads_nothing_from_elsewhere(
    fleet: tuple[Daemon, RunningSimulator, RunningSimulator], http: aiohttp.ClientSession
) -> None:
    daemon = fleet[0]
    async with http.get(daemon.url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        policy = resp.headers["Content-Security-Policy"]
        html = await resp.text()
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "connect-src 'self'" in policy
    assert "http://" not in html and "https://" not in html
    for asset in ("/console/console.js", "/console/console.css"):
        async with http.get(daemon.url + asset) as resp:
            assert resp.status == 200
            assert "http://" not in await resp.text()
    for missing in ("/console/nope.js", "/console/..%2Fconsole%2F__init__.py", "/console/__init__.py"):
        async with http.get(daemon.url + missing) as resp:
            assert resp.status == 404, missing
