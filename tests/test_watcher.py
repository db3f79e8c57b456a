"""The watcher against simulated LM Studio servers over real HTTP on loopback.

Waits are on registry events (`Registry.wait_for`) with a deadline equal to the promise being
tested ("down within two poll intervals", "a load shows within one poll interval").
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from lmwatch.config import parse_config
from lmwatch.daemon import Daemon, running_daemon
from lmwatch.registry import BackendInfo, Health, ModelType, Registry, Snapshot
from lmwatch.simulator import SimModel, SimSettings, start_simulator

INTERVAL = 1.0


async def within_polls(registry: Registry, backend: str, holds: Callable[[BackendInfo], bool], polls: int) -> None:
    """Wait until `holds` is true of `backend`, and assert it took at most `polls` polls (one more when
    a poll was in flight). Counted in probes, not seconds: a busy machine slows polls down, and the
    promise is about polls."""
    probes: set[float | None] = set()

    def check(snap: Snapshot) -> bool:
        info = snap.backends[backend]
        probes.add(info.last_probe)
        return holds(info)

    await registry.wait_for(check, timeout=30 * INTERVAL * polls)
    assert len(probes) - 1 <= polls + 1, f"it took {len(probes) - 1} polls"


def config_for(**urls: str) -> str:
    backends = ", ".join(f'{{name: {name}, url: "{url}", poll_interval: {INTERVAL}}}' for name, url in urls.items())
    return f"server: {{port: 0}}\nbackends: [{backends}]\n"


async def scrape(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    async with http.get(f"{daemon.url}/metrics") as resp:
        assert resp.status == 200
        return await resp.text()


def health(name: str, wanted: Health) -> Callable[[Snapshot], bool]:
    return lambda snap: snap.backends[name].health is wanted


async def test_flavours_are_detected_and_models_read(http: aiohttp.ClientSession) -> None:
    sims = {
        "v1": await start_simulator(SimSettings(flavour="0.4"), port=0),
        "v0": await start_simulator(SimSettings(flavour="0.3"), port=0),
        "oai": await start_simulator(SimSettings(flavour="openai"), port=0),
    }
    try:
        loaded = parse_config(config_for(**{k: s.url for k, s in sims.items()}), env={})
        async with running_daemon(loaded) as daemon:
            snap = daemon.registry.snapshot()
            assert snap.first_round_done
            assert {n: b.flavour for n, b in snap.backends.items()} == {
                "v1": "lmstudio-v1",
                "v0": "lmstudio-v0",
                "oai": "openai",
            }
            assert all(b.health is Health.UP for b in snap.backends.values())
            v1 = snap.backends["v1"]
            coder = v1.model("qwen2.5-coder-7b-instruct")
            assert coder is not None and coder.loaded and coder.tool_use and coder.parallel
            assert coder.loaded_context_length and coder.max_context_length
            gemma = v1.model("google/gemma-3-4b")
            assert gemma is not None and gemma.model_type is ModelType.VLM and gemma.vision
            mistral = v1.model("mistral-7b-instruct-v0.3")
            assert mistral is not None and not mistral.loaded
            embed = snap.backends["v0"].model("text-embedding-nomic-embed-text-v1.5")
            assert embed is not None and embed.model_type is ModelType.EMBEDDINGS
            assert v1.version  # read from /lms-status at detection

            text = await scrape(http, daemon)
            assert 'lmwatch_backend_up{backend="v0"} 1.0' in text
            assert 'lmwatch_backend_state{backend="v1",state="up"} 1.0' in text
            assert 'lmwatch_model_loaded{backend="v1",model="mistral-7b-instruct-v0.3",model_type="llm"} 0.0' in text
            assert 'lmwatch_models{backend="v1",model_type="embeddings",state="loaded"} 1.0' in text
            assert 'lmwatch_model_context_length_tokens{backend="v1",kind="max",model="google/gemma-3-4b"}' in text
            assert "lmwatch_build_info{" in text

            async with http.get(f"{daemon.url}/status") as resp:
                status = await resp.json()
            assert status["ready"] is True
            assert {b["name"]: b["health"] for b in status["backends"]} == {"v1": "up", "v0": "up", "oai": "up"}
    finally:
        for sim in sims.values():
            await sim.stop()


async def test_stopped_backend_goes_down_within_two_intervals_and_comes_back(http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(SimSettings(), port=0)
    port = sim.port
    other = await start_simulator(SimSettings(), port=0)
    loaded = parse_config(config_for(box=sim.url, other=other.url), env={})
    try:
        async with running_daemon(loaded) as daemon:
            assert daemon.registry.snapshot().backends["box"].health is Health.UP
            await sim.stop()
            await within_polls(daemon.registry, "box", lambda b: b.health is Health.DOWN, polls=2)
            assert 'lmwatch_backend_up{backend="box"} 0.0' in await scrape(http, daemon)
            assert daemon.registry.snapshot().backends["other"].health is Health.UP  # only the stopped one

            sim = await start_simulator(SimSettings(), port=port)
            await within_polls(daemon.registry, "box", lambda b: b.health is Health.UP, polls=4)
            assert 'lmwatch_backend_up{backend="box"} 1.0' in await scrape(http, daemon)
    finally:
        await sim.stop()
        await other.stop()


async def test_load_and_unload_show_within_one_interval(http: aiohttp.ClientSession) -> None:
    sim = await start_simulator(SimSettings(flavour="0.4"), port=0)
    model = "mistral-7b-instruct-v0.3"
    try:
        async with running_daemon(parse_config(config_for(box=sim.url), env={})) as daemon:

            def loaded(want: bool) -> Callable[[BackendInfo], bool]:
                def check(box: BackendInfo) -> bool:
                    info = box.model(model)
                    return info is not None and info.loaded is want

                return check

            async with http.post(f"{sim.url}/api/v1/models/load", json={"model": model}) as resp:
                instance = (await resp.json())["instance_id"]
            await within_polls(daemon.registry, "box", loaded(True), polls=1)
            text = await scrape(http, daemon)
            assert f'lmwatch_model_loaded{{backend="box",model="{model}",model_type="llm"}} 1.0' in text

            async with http.post(f"{sim.url}/api/v1/models/unload", json={"instance_id": instance}) as resp:
                assert resp.status == 200
            await within_polls(daemon.registry, "box", loaded(False), polls=1)
            text = await scrape(http, daemon)
            assert f'lmwatch_model_loaded{{backend="box",model="{model}",model_type="llm"}} 0.0' in text
    finally:
        await sim.stop()


async def test_no_model_loaded_is_degraded_and_events_are_emitted() -> None:
    only = SimModel(id="solo-7b", type="llm", loaded=False)
    sim = await start_simulator(SimSettings(models=[only]), port=0)
    try:
        async with running_daemon(parse_config(config_for(box=sim.url), env={})) as daemon:
            backend = daemon.registry.snapshot().backends["box"]
            assert backend.health is Health.DEGRADED and backend.health_reason == "no model loaded"
            events: list[str] = []
            daemon.registry.subscribe(lambda e: events.append(f"{e.kind}:{e.detail.get('model', '')}"))
            async with aiohttp.ClientSession() as http:
                await http.post(f"{sim.url}/api/v1/models/load", json={"model": "solo-7b"})
            await within_polls(daemon.registry, "box", lambda b: b.health is Health.UP, polls=1)
            assert "model_loaded:solo-7b" in events and "backend_health:" in events
    finally:
        await sim.stop()


async def test_token_is_sent_and_a_wrong_one_is_an_auth_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-lm-abcd1234:s3cretpassw0rdvalue"
    sim = await start_simulator(SimSettings(api_token=secret), port=0)
    text = f"""
server: {{port: 0}}
backends:
  - {{name: good, url: "{sim.url}", api_token_env: GOOD_TOKEN}}
  - {{name: bad, url: "{sim.url}", api_token_env: BAD_TOKEN, retry_attempts: 1}}
"""
    monkeypatch.setenv("GOOD_TOKEN", secret)
    monkeypatch.setenv("BAD_TOKEN", "sk-lm-wrong000:wrongwrongwrongwrong")
    try:
        async with running_daemon(parse_config(text)) as daemon:
            snap = daemon.registry.snapshot()
            assert snap.backends["good"].health is Health.UP
            assert snap.backends["bad"].health is Health.DOWN
            assert snap.backends["bad"].last_error_reason is not None
            assert snap.backends["bad"].last_error_reason.value == "auth"
            async with aiohttp.ClientSession() as http, http.get(f"{daemon.url}/status") as resp:
                body = await resp.text()
            assert secret not in body and "wrongwrong" not in body
    finally:
        await sim.stop()


async def test_poll_now_reprobes_without_waiting() -> None:
    sim = await start_simulator(SimSettings(), port=0)
    try:
        text = f'server: {{port: 0}}\nbackends: [{{name: box, url: "{sim.url}", poll_interval: 3600}}]\n'
        async with running_daemon(parse_config(text, env={})) as daemon:
            generation = daemon.registry.snapshot().backends["box"].last_probe
            daemon.watcher.poll_now("box")
            await daemon.registry.wait_for(lambda s: s.backends["box"].last_probe != generation, timeout=5)
    finally:
        await sim.stop()


async def test_reload_adds_and_removes_backends_keeping_state() -> None:
    sims = [await start_simulator(SimSettings(), port=0) for _ in range(2)]
    try:
        async with running_daemon(parse_config(config_for(a=sims[0].url), env={})) as daemon:
            before = daemon.registry.snapshot().backends["a"]
            daemon.apply(parse_config(config_for(a=sims[0].url, b=sims[1].url), env={}))
            await daemon.registry.wait_for(health("b", Health.UP), timeout=5)
            assert daemon.registry.snapshot().backends["a"].last_success == before.last_success
            daemon.apply(parse_config(config_for(b=sims[1].url), env={}))
            assert set(daemon.registry.snapshot().backends) == {"b"}
    finally:
        for sim in sims:
            await sim.stop()


async def test_a_password_in_a_backend_url_is_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    sim = await start_simulator(SimSettings(), port=0)
    url = sim.url.replace("http://", "http://ops:hunter2-long-secret@")
    try:
        async with running_daemon(parse_config(config_for(box=url), env={})) as daemon:
            assert daemon.registry.snapshot().backends["box"].health is Health.UP  # credentials still used
            async with aiohttp.ClientSession() as http, http.get(f"{daemon.url}/status") as resp:
                status = await resp.json()
            assert status["backends"][0]["url"] == url.replace("hunter2-long-secret", "***")
    finally:
        await sim.stop()
    assert "hunter2-long-secret" not in caplog.text


async def test_a_down_backend_is_probed_with_exponential_backoff_and_poll_now_skips_it() -> None:
    from lmwatch.registry import Registry
    from lmwatch.watcher import Watcher

    now = [1000.0]
    registry = Registry()
    watcher = Watcher(registry, clock=lambda: now[0])
    config = parse_config(
        'backends: [{name: x, url: "http://127.0.0.1:9", poll_interval: 1, retry_attempts: 1}]', env={}
    )
    await watcher.start(config.config.backends)  # the first failure

    def failures() -> int:
        return registry.snapshot().backends["x"].consecutive_failures

    async def tick(seconds: float) -> int:
        now[0] += seconds
        await watcher.poll("x", scheduled=True)
        return failures()

    try:
        assert failures() == 1
        assert await tick(1) == 2  # after 1 failure: the next interval polls
        assert await tick(1) == 2  # after 2: waits 2 intervals
        assert await tick(1) == 3
        assert await tick(1) == 3 and await tick(1) == 3 and await tick(1) == 3  # after 3: 4 intervals
        assert await tick(1) == 4
        watcher.poll_now("x")  # an operator's poll goes through at once
        assert await tick(0) == 5
    finally:
        await watcher.stop()


async def test_a_hung_backend_logs_its_overrun_once_and_stop_cancels_its_probe_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A probe that hangs past the poll interval: one line when it overruns and one when it ends (not
    APScheduler's "skipped: maximum number of running instances" every interval), and SIGTERM's stop
    during such a probe logs no CancelledError traceback."""
    hang = asyncio.Event()
    arrived = asyncio.Event()
    release = asyncio.Event()

    async def models(request: web.Request) -> web.StreamResponse:
        if hang.is_set():
            arrived.set()
            await release.wait()
        return web.json_response({"object": "list", "data": [{"id": "m", "object": "model"}]})

    app = web.Application()
    app.router.add_get("/v1/models", models)
    async with TestServer(app, host="127.0.0.1") as server:
        url = str(server.make_url("")).rstrip("/")
        text = (
            "server: {port: 0}\n"
            f'backends: [{{name: hung, url: "{url}", kind: openai, poll_interval: 0.1, probe_timeout: 1,'
            " retry_attempts: 1}]\n"
        )
        caplog.set_level(logging.INFO)
        async with running_daemon(parse_config(text, env={})) as daemon:
            hang.set()
            await daemon.registry.wait_for(lambda s: s.backends["hung"].consecutive_failures >= 1, timeout=10)
            assert caplog.text.count("still running after its interval") == 1  # ~10 intervals overrun
            assert caplog.text.count("polls run on schedule again") == 1
            arrived.clear()
            await asyncio.wait_for(arrived.wait(), 10)  # the next probe hangs: stop() comes during it
        release.set()
    assert "maximum number of running instances" not in caplog.text
    assert "Traceback" not in caplog.text and "CancelledError" not in caplog.text


async def test_the_poll_schedule_keeps_intervals_moves_removes_and_never_catches_up() -> None:
    from lmwatch.watcher import PollSchedule

    loop = asyncio.get_running_loop()
    runs: list[tuple[str, float]] = []
    waits: dict[str, tuple[int, asyncio.Event]] = {}

    def due(name: str) -> None:
        runs.append((name, loop.time()))
        count, event = waits.get(name, (0, asyncio.Event()))
        if sum(1 for n, _ in runs if n == name) >= count:
            event.set()

    async def runs_of(name: str, more: int) -> list[float]:
        """The times of `name`'s next `more` runs."""
        start, event = len(runs), asyncio.Event()
        waits[name] = (sum(1 for n, _ in runs if n == name) + more, event)
        await asyncio.wait_for(event.wait(), 10)
        return [t for n, t in runs[start:] if n == name]

    schedule = PollSchedule(due)
    schedule.add("fast", 0.05, 0.0)
    schedule.add("slow", 60.0, 60.0)
    try:
        times = await runs_of("fast", 3)
        assert all(b - a >= 0.04 for a, b in itertools.pairwise(times)), times
        assert "slow" not in {n for n, _ in runs}

        schedule.move("slow", 0.0)  # poll now
        assert len(await runs_of("slow", 1)) == 1

        time.sleep(0.3)  # noqa: ASYNC251  # the loop blocked for six intervals: one poll follows, not six
        late = await runs_of("fast", 2)
        assert len(late) == 2 and late[1] - late[0] >= 0.04, late

        schedule.remove("fast")
        start = len(runs)
        schedule.move("slow", 0.15)
        await runs_of("slow", 1)  # three intervals of the removed backend went by
        assert [n for n, _ in runs[start:]] == ["slow"]
    finally:
        schedule.stop()


async def test_a_short_interval_keeps_its_rhythm_beside_the_batching_window() -> None:
    """Polls due within `BATCH_SECONDS` start together, but a backend polled more often than that
    window is not pushed to the window's end: its next poll is one interval after this one."""
    from lmwatch.watcher import BATCH_SECONDS, PollSchedule

    loop = asyncio.get_running_loop()
    fired: list[float] = []
    polled = asyncio.Event()

    def due(name: str) -> None:
        fired.append(loop.time())
        polled.set()

    schedule = PollSchedule(due)
    interval = BATCH_SECONDS / 2
    schedule.add("quick", interval, 0.0)
    try:
        await asyncio.wait_for(polled.wait(), 10)
        assert schedule._next["quick"] <= fired[0] + interval  # not past the window (a 2x slower poll)
    finally:
        schedule.stop()


async def test_an_interval_below_float_resolution_cannot_stall_the_loop() -> None:
    """1e-300 s added to the loop's clock is no time at all: the schedule must still move on (before,
    its timer callback looped forever and the daemon stopped answering)."""
    from lmwatch.watcher import PollSchedule

    polled = asyncio.Event()
    schedule = PollSchedule(lambda name: polled.set())
    schedule.add("tiny", 1e-300, 0.0)
    try:
        await asyncio.wait_for(polled.wait(), 10)
        polled.clear()
        await asyncio.wait_for(polled.wait(), 10)  # and again: the loop is still turning
    finally:
        schedule.stop()
