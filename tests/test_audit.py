"""The audit log: a JSON line per control action and (when enabled) per /v1 request, without secrets,
reopened on SIGHUP so logrotate can move it."""

from __future__ import annotations

import asyncio
import signal
import stat
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from lmwatch.api.auth import note_request
from lmwatch.audit import AuditLog
from lmwatch.config import load_config
from lmwatch.daemon import running_daemon
from lmwatch.redaction import Redactor
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import (
    ADMIN_TOKEN,
    CLIENT_KEY,
    WRONG_TOKEN,
    admin,
    audit_lines,
    backend_yaml,
    config_file,
    daemon_process,
    write,
)

BACKEND_TOKEN = "lm-backend-token-abcdef0123456789"
KEY_ENV = "LMWATCH_TEST_AUDIT_KEY"
PROMPT = "the secret plan is to refactor everything"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMWATCH_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv(KEY_ENV, CLIENT_KEY)
    monkeypatch.setenv("LMWATCH_TEST_BACKEND_TOKEN", BACKEND_TOKEN)


@pytest.fixture
async def sim() -> AsyncIterator[RunningSimulator]:
    server = await start_simulator(SimSettings(api_token=BACKEND_TOKEN), port=0)
    yield server
    await server.stop()


def audited_config(tmp_path: Path, sim: RunningSimulator, audit: str) -> Path:
    backend = backend_yaml("a", sim.url, api_token_env="LMWATCH_TEST_BACKEND_TOKEN")
    return config_file(
        tmp_path,
        f"backends: [{backend}]\nclients: {{keys: [{{name: alice, key_env: {KEY_ENV}}}]}}\naudit: {audit}\n",
    )


def note_echo(app: web.Application) -> None:
    """A stand-in /v1 handler that reports what a router would (the note_request contract)."""

    async def echo(request: web.Request) -> web.Response:
        await request.read()
        note_request(request, model="m-1", backend="a", task="coding", prompt_tokens=3, completion_tokens=5)
        return web.json_response({"ok": True})

    app.router.add_post("/v1/echo", echo)


async def test_control_actions_are_written_without_secrets(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = audited_config(tmp_path, sim, "{}")
    loaded = load_config(config, env={})
    async with running_daemon(loaded) as daemon:
        await admin(http, daemon, "POST", "/admin/backends/a/drain")
        await admin(http, daemon, "POST", "/admin/backends/a/undrain", token=WRONG_TOKEN)
        await admin(http, daemon, "POST", "/admin/backends/zz/drain")
        await admin(http, daemon, "POST", "/admin/backends", {"name": "b", "url": f"http://x:{BACKEND_TOKEN}@h:1"})
        await admin(http, daemon, "POST", "/admin/reload")
        await admin(http, daemon, "GET", "/admin/backends")  # reads are not control actions
    path = tmp_path / "state" / "audit.jsonl"
    lines = audit_lines(path)
    assert [(x["actor"], x["action"], x["target"], x["result"]) for x in lines] == [
        ("admin-token", "drain", "a", "ok"),
        ("unauthenticated", "authenticate", "POST /admin/backends/a/undrain", "denied"),
        ("admin-token", "drain", "zz", "refused"),
        ("admin-token", "add_backend", "b", "ok"),
        ("admin-token", "reload", None, "ok"),
    ]
    assert all(x["kind"] == "control" and x["remote"] == "127.0.0.1" and x["time"].endswith("+00:00") for x in lines)
    assert lines[2]["status"] == 404 and "zz" in lines[2]["error"]
    text = path.read_text()
    for secret in (ADMIN_TOKEN, WRONG_TOKEN, CLIENT_KEY, BACKEND_TOKEN):
        assert secret not in text
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_request_lines_only_when_enabled_and_prompts_only_when_asked(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    chat = {"model": "qwen2.5-coder-7b-instruct", "max_tokens": 4, "messages": [{"role": "user", "content": PROMPT}]}
    auth = {"Authorization": f"Bearer {CLIENT_KEY}"}
    path = tmp_path / "state" / "audit.jsonl"

    for audit, expect_requests, expect_prompts in [
        ("{}", False, False),
        ("{requests: true}", True, False),
        ("{requests: true, prompts: true}", True, True),
    ]:
        path.unlink(missing_ok=True)
        loaded = load_config(audited_config(tmp_path, sim, audit), env={})
        async with running_daemon(loaded, (note_echo,)) as daemon:
            traced = {**auth, "X-Request-ID": "trace-audit-1"}
            async with http.post(daemon.url + "/v1/chat/completions", json=chat, headers=traced) as resp:
                assert resp.status == 200
            async with http.post(daemon.url + "/v1/chat/completions", json=chat) as resp:
                assert resp.status == 401
                refused_id = resp.headers["X-Request-ID"]
            async with http.post(daemon.url + "/v1/echo", json={"input": PROMPT}, headers=auth) as resp:
                assert resp.status == 200
        requests = [x for x in audit_lines(path) if x["kind"] == "request"]
        if not expect_requests:
            assert requests == []
            continue
        served, refused, echoed = requests
        assert served["key"] == "alice" and served["status"] == 200 and served["path"] == "/v1/chat/completions"
        assert served["model"] == "qwen2.5-coder-7b-instruct" and served["backend"] == "a"
        assert served["duration_seconds"] >= 0 and served["request_id"] == "trace-audit-1"
        assert refused["key"] == "anonymous" and refused["status"] == 401 and refused["request_id"] == refused_id
        assert echoed["prompt_tokens"] == 3 and echoed["completion_tokens"] == 5 and echoed["model"] == "m-1"
        text = path.read_text()
        assert (PROMPT in text) is expect_prompts
        if expect_prompts:
            assert served["prompt"] == chat["messages"]
            assert echoed["prompt"] == PROMPT
        else:
            assert all("prompt" not in x for x in requests)
        for secret in (ADMIN_TOKEN, CLIENT_KEY, BACKEND_TOKEN):
            assert secret not in text


async def test_registered_secrets_are_redacted_everywhere_in_a_line(tmp_path: Path) -> None:
    log = AuditLog(Redactor(["audit-secret-value-123456"]))
    log.configure(tmp_path / "deep" / "dir" / "audit.jsonl")
    await log.control(
        actor="x",
        action="y",
        target="audit-secret-value-123456",
        result="ok",
        detail={"nested": ["a audit-secret-value-123456 b"]},
    )
    await log.close()
    (line,) = audit_lines(tmp_path / "deep" / "dir" / "audit.jsonl")
    assert line["target"] == "***" and line["detail"] == {"nested": ["a *** b"]}


async def test_disabled_audit_writes_nothing(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    loaded = load_config(audited_config(tmp_path, sim, "{enabled: false, requests: true}"), env={})
    async with running_daemon(loaded) as daemon:
        status, _ = await admin(http, daemon, "POST", "/admin/backends/a/drain")
        assert status == 200
    assert not (tmp_path / "state").exists()


async def test_sighup_reopens_the_audit_log_for_logrotate(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = audited_config(tmp_path, sim, f"{{path: {tmp_path / 'logs' / 'audit.jsonl'}}}")
    path = tmp_path / "logs" / "audit.jsonl"
    async with daemon_process(config, env={KEY_ENV: CLIENT_KEY, "LMWATCH_TEST_BACKEND_TOKEN": BACKEND_TOKEN}) as proc:
        url = await proc.wait_listening()
        await proc.wait_ready()
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with http.post(url + "/admin/backends/a/drain", headers=headers) as resp:
            assert resp.status == 200
        rotated = path.with_name("audit.jsonl.1")
        path.rename(rotated)  # what logrotate does (no copytruncate)
        proc.signal(signal.SIGHUP)
        await proc.read_log_until("config reloaded")
        async with http.post(url + "/admin/backends/a/undrain", headers=headers) as resp:
            assert resp.status == 200
        proc.signal(signal.SIGTERM)
        assert await proc.wait() == 0
    assert [x["action"] for x in audit_lines(rotated)] == ["drain"]
    assert [(x["actor"], x["action"], x["result"]) for x in audit_lines(path)] == [
        ("signal", "reload", "ok"),
        ("admin-token", "undrain", "ok"),
    ]


async def test_an_unwritable_audit_path_is_logged_not_fatal(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    write(tmp_path / "blocker", "a file where a directory should be\n")
    loaded = load_config(audited_config(tmp_path, sim, f"{{path: {tmp_path / 'blocker' / 'audit.jsonl'}}}"), env={})
    async with running_daemon(loaded) as daemon:
        status, _ = await admin(http, daemon, "POST", "/admin/backends/a/drain")
        assert status == 200
        async with http.get(daemon.url + "/metrics") as resp:
            assert "lmwatch_audit_write_failures_total 1.0" in await resp.text()


async def test_request_lines_past_the_queue_bound_are_dropped_and_counted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("lmwatch.audit.MAX_QUEUED", 3)
    log = AuditLog(Redactor())
    log.configure(tmp_path / "audit.jsonl", requests=True)
    assert log._executor is not None
    gate = threading.Event()
    log._executor.submit(gate.wait)  # a disk that does not keep up: the writer thread is stuck
    for i in range(5):
        log.request({"path": f"/v1/{i}"})
    assert log.failures == 2
    control = log.record({"kind": "control", "action": "drain"})  # control lines are never dropped
    assert control is not None and log.failures == 2
    gate.set()
    await asyncio.wrap_future(control)
    for i in range(5, 7):
        log.request({"path": f"/v1/{i}"})  # the queue drained: lines are written again
    await log.close()
    lines = audit_lines(tmp_path / "audit.jsonl")
    assert [x.get("path", x.get("action")) for x in lines] == ["/v1/0", "/v1/1", "/v1/2", "drain", "/v1/5", "/v1/6"]
    assert log.failures == 2


async def test_refused_calls_are_aggregated_per_source_and_lines_are_capped(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """Anyone can be refused, as fast as they like, with paths of their choosing: 300 refusals with
    6 KB paths make two short lines (the first, then one with the count), not 300 long ones."""
    loaded = load_config(audited_config(tmp_path, sim, "{}"), env={})
    async with running_daemon(loaded) as daemon:
        for i in range(300):
            status, _ = await admin(http, daemon, "GET", f"/admin/{i}-" + "x" * 6000, token=WRONG_TOKEN)
            assert status == 401
    path = tmp_path / "state" / "audit.jsonl"
    lines = audit_lines(path)
    assert [(x["action"], x["result"], x["remote"], x.get("count")) for x in lines] == [
        ("authenticate", "denied", "127.0.0.1", None),
        ("authenticate", "denied", "127.0.0.1", 299),
    ]
    assert lines[0]["target"].startswith("GET /admin/0-") and lines[1]["target"].startswith("GET /admin/299-")
    assert path.stat().st_size < 2 * 5000  # each target cut to 4,096 characters
