"""Client API keys on /v1 (401 / 403 / 429 with OpenAI-style bodies, per-key counts by name) and
the rules about where credentials may come from (never inline; no unprotected /admin on the network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
from aiohttp.test_utils import TestServer
from multidict import CIMultiDict

from lmwatch.api import openai as openai_api
from lmwatch.api.auth import admit, authenticate
from lmwatch.api.errors import ApiError, api_error
from lmwatch.config import ConfigError, RoutingConfig, load_config, parse_config
from lmwatch.control import secret_file_warnings
from lmwatch.credentials import AccessControl, ClientKey, _digest
from lmwatch.daemon import Daemon
from lmwatch.errors import DomainError
from lmwatch.registry import Registry
from lmwatch.routing.decide import Router
from lmwatch.routing.request import Endpoint, parse_request
from lmwatch.routing.select import Plan
from lmwatch.server import build_app
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import (
    ADMIN_TOKEN,
    CLIENT_KEY,
    OTHER_KEY,
    admin,
    backend_yaml,
    bearer,
    config_file,
    daemon_for,
    metric_value,
    run_cli,
    write,
)
from tests.routing.test_select import fleet, model

KEY_ENV = "LMWATCH_TEST_ALICE_KEY"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMWATCH_ADMIN_TOKEN", raising=False)
    monkeypatch.setenv(KEY_ENV, CLIENT_KEY)


def keys_config(tmp_path: Path, sim: RunningSimulator, rpm: int = 100) -> Path:
    write(tmp_path / "bob.key", OTHER_KEY + "\n")
    write(tmp_path / "keys.yaml", '- {name: ci, key: "sk-ci-key-from-the-keys-file-0001", local_only: true}\n')
    return config_file(
        tmp_path,
        f"backends: [{backend_yaml('a', sim.url)}]\n"
        "clients:\n"
        "  keys:\n"
        f"    - {{name: alice, key_env: {KEY_ENV}, requests_per_minute: {rpm}, models: ['qwen*']}}\n"
        f"    - {{name: bob, key_file: {tmp_path / 'bob.key'}, tasks: [coding]}}\n"
        f"  keys_file: {tmp_path / 'keys.yaml'}\n",
    )


async def get_models(http: aiohttp.ClientSession, daemon: Daemon, key: str | None) -> tuple[int, Any, Any]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with http.get(daemon.url + "/v1/models", headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def scrape(http: aiohttp.ClientSession, daemon: Daemon) -> str:
    async with http.get(daemon.url + "/metrics") as resp:
        return await resp.text()


async def test_without_keys_v1_is_open_and_counted_as_anonymous(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        status, _, _ = await get_models(http, daemon, None)
        assert status == 200
        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "anonymous"), ("code", "200")]) == 1


async def test_keys_are_required_checked_and_counted_by_name(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with daemon_for(keys_config(tmp_path, sim)) as daemon:
        status, body, _ = await get_models(http, daemon, None)
        assert status == 401
        assert body["error"]["code"] == "missing_api_key" and body["error"]["type"] == "authentication_error"
        assert set(body["error"]) == {"message", "type", "param", "code"}
        status, body, _ = await get_models(http, daemon, "sk-not-a-key-at-all-000000000")
        assert status == 401 and body["error"]["code"] == "invalid_api_key"
        assert "sk-not-a-key" not in str(body)
        status, _, _ = await get_models(http, daemon, ADMIN_TOKEN)  # the admin token is no client key
        assert status == 401
        status, _, _ = await get_models(http, daemon, CLIENT_KEY)
        assert status == 200
        status, _, _ = await get_models(http, daemon, OTHER_KEY)
        assert status == 200
        status, _, _ = await get_models(http, daemon, "sk-ci-key-from-the-keys-file-0001")
        assert status == 200

        async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
            answer = await client.chat.completions.create(
                model="qwen2.5-coder-7b-instruct", messages=[{"role": "user", "content": "hi"}], max_tokens=5
            )
        assert answer.choices[0].message.content
        async with openai.AsyncOpenAI(
            base_url=daemon.url + "/v1", api_key="sk-wrong-wrong-wrong-wrong", max_retries=0
        ) as wrong:
            with pytest.raises(openai.AuthenticationError) as refused:
                await wrong.models.list()
        assert refused.value.code == "invalid_api_key"

        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "alice"), ("code", "200")]) == 2
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "bob"), ("code", "200")]) == 1
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "anonymous"), ("code", "401")]) == 4
        for secret in (CLIENT_KEY, OTHER_KEY, "sk-ci-key-from-the-keys-file-0001", ADMIN_TOKEN):
            assert secret not in text
        status, doc = await admin(http, daemon, "GET", "/admin/backends")
        assert doc["clients"] == {"keys": ["alice", "bob", "ci"]}
        assert CLIENT_KEY not in str(doc) and OTHER_KEY not in str(doc)


async def test_an_app_with_v1_but_without_the_admin_api_still_checks_keys(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    """The key middleware comes with the `/v1` routes, not with `/admin`."""
    daemon = Daemon(load_config(keys_config(tmp_path, sim), env={}))
    daemon.control.apply(daemon.control.prepare(daemon.holder.loaded))
    server = TestServer(build_app(daemon.services, [openai_api.setup]))
    await server.start_server()
    try:
        async with http.get(server.make_url("/v1/models")) as resp:
            assert resp.status == 401 and (await resp.json())["error"]["code"] == "missing_api_key"
        async with http.get(server.make_url("/v1/models"), headers=bearer(CLIENT_KEY)) as resp:
            assert resp.status == 200
        async with http.get(server.make_url("/admin/backends"), headers=bearer(ADMIN_TOKEN)) as resp:
            assert resp.status == 404  # no admin API in this app
    finally:
        await server.close()
        await daemon.stop()


async def test_requests_per_minute_gives_429_with_retry_after(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with daemon_for(keys_config(tmp_path, sim, rpm=2)) as daemon:
        assert (await get_models(http, daemon, CLIENT_KEY))[0] == 200
        assert (await get_models(http, daemon, CLIENT_KEY))[0] == 200
        status, body, headers = await get_models(http, daemon, CLIENT_KEY)
        assert status == 429
        assert body["error"]["type"] == "rate_limit_error" and body["error"]["code"] == "rate_limit_exceeded"
        assert 1 <= int(headers["Retry-After"]) <= 30
        assert (await get_models(http, daemon, OTHER_KEY))[0] == 200  # other keys are not affected

        async with openai.AsyncOpenAI(base_url=daemon.url + "/v1", api_key=CLIENT_KEY, max_retries=0) as client:
            with pytest.raises(openai.RateLimitError):
                await client.models.list()

        status, _ = await admin(http, daemon, "POST", "/admin/reload")  # a reload keeps the buckets
        assert status == 200
        assert (await get_models(http, daemon, CLIENT_KEY))[0] == 429
        text = await scrape(http, daemon)
        assert metric_value(text, "lmwatch_client_requests_total", [("key_name", "alice"), ("code", "429")]) == 3


async def test_the_bucket_refills_over_the_minute() -> None:
    now = [1000.0]
    access = AccessControl(clock=lambda: now[0])
    access.replace([ClientKey("alice", _digest(CLIENT_KEY), requests_per_minute=2)])

    async def identify() -> ClientKey | None:
        """What the /v1 middleware does: authenticate the request, then admit its key."""
        key = authenticate(access, CIMultiDict({"Authorization": f"Bearer {CLIENT_KEY}"}))
        if key is not None:
            await admit(access, key)
        return key

    assert await identify() is not None
    assert await identify() is not None
    with pytest.raises(ApiError) as limited:
        await identify()
    assert limited.value.status == 429 and limited.value.headers["Retry-After"] == "30"
    now[0] += 29.0
    with pytest.raises(ApiError) as still:
        await identify()
    assert still.value.headers["Retry-After"] == "1"
    now[0] += 1.0
    assert await identify() is not None


async def chat(http: aiohttp.ClientSession, daemon: Daemon, key: str, model: str, content: str) -> tuple[int, Any, Any]:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": content}]}
    headers = {"Authorization": f"Bearer {key}"}
    async with http.post(daemon.url + "/v1/chat/completions", json=body, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def test_the_router_enforces_a_keys_models_and_tasks(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    async with daemon_for(keys_config(tmp_path, sim)) as daemon:
        # alice may use qwen* only: auto routes only there, another explicit model is refused
        status, _, headers = await chat(http, daemon, CLIENT_KEY, "auto", "Tell me a story about a fox")
        assert status == 200 and headers["X-LMWatch-Model"].startswith("qwen")
        status, body, _ = await chat(http, daemon, CLIENT_KEY, "meta-llama-3.1-8b-instruct", "hello")
        assert status == 403 and body["error"]["code"] == "model_not_allowed"
        _, models, _ = await get_models(http, daemon, CLIENT_KEY)
        real = [m["id"] for m in models["data"] if not m["lmwatch"]["virtual"]]
        assert real == ["qwen2.5-coder-7b-instruct"]
        # bob may use coding only
        status, _, headers = await chat(http, daemon, OTHER_KEY, "auto", "Fix this Python: def f(: pass")
        assert status == 200 and headers["X-LMWatch-Task"] == "coding"
        status, body, _ = await chat(http, daemon, OTHER_KEY, "task:creative", "Write a poem")
        assert status == 403 and body["error"]["code"] == "task_not_allowed"
        # an explicit id is classified too when the key is limited to tasks
        status, body, _ = await chat(http, daemon, OTHER_KEY, "qwen2.5-coder-7b-instruct", "Write a poem about the sea")
        assert status == 403 and body["error"]["code"] == "task_not_allowed"
        status, _, headers = await chat(
            http, daemon, OTHER_KEY, "qwen2.5-coder-7b-instruct", "Fix this Python: def f(:"
        )
        assert status == 200 and headers["X-LMWatch-Task"] == "coding"


async def test_a_local_only_key_never_goes_to_the_cloud(
    tmp_path: Path, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    cloud = await start_simulator(SimSettings(flavour="openai"), port=0)  # stands in for a cloud provider
    monkeypatch.setenv("LMWATCH_TEST_CLOUD_KEY", "sk-cloud-provider-key-000001")
    write(tmp_path / "keys.yaml", f'- {{name: ci, key: "{OTHER_KEY}", local_only: true}}\n')
    config = config_file(
        tmp_path,
        "backends: [{name: gone, url: 'http://127.0.0.1:9', poll_interval: 60, retry_attempts: 1}]\n"
        "routing:\n"
        "  cloud:\n"
        "    allowed: true\n"
        f"    providers: [{{name: cloud, base_url: '{cloud.url}/v1', api_key_env: LMWATCH_TEST_CLOUD_KEY,\n"
        "                 models: {default: meta-llama-3.1-8b-instruct}}]\n"
        "clients:\n"
        f"  keys: [{{name: alice, key_env: {KEY_ENV}}}]\n"
        f"  keys_file: {tmp_path / 'keys.yaml'}\n",
    )
    try:
        async with daemon_for(config) as daemon:
            status, _, headers = await chat(http, daemon, CLIENT_KEY, "auto", "hello")
            assert status == 200 and headers["X-LMWatch-Route"] == "cloud"
            status, _, headers = await chat(http, daemon, OTHER_KEY, "auto", "hello")
            assert status == 503 and "Retry-After" in headers
            assert headers["X-LMWatch-Route"] != "cloud"
    finally:
        await cloud.stop()


def test_model_and_task_rules_for_the_router() -> None:
    key = ClientKey("alice", b"", models=("qwen*", "google/gemma-*"), tasks=("coding",))
    assert key.allows_model("qwen2.5-coder-7b-instruct")
    assert key.allows_model("lmstudio-community/Qwen2.5-7B")  # publisher prefix and case ignored
    assert key.allows_model("google/gemma-3-4b")
    assert not key.allows_model("meta-llama-3.1-8b-instruct")
    assert key.allows_task("coding") and not key.allows_task("creative")
    assert ClientKey("any", b"").allows_model("anything") and ClientKey("any", b"").allows_task("x")

    snap = fleet({"box": [model("qwen2.5-coder-7b-instruct"), model("meta-llama-3.1-8b-instruct")]})
    outcomes, config, router = Registry().outcomes, RoutingConfig(), Router()

    def decide(model_id: str, task: str, key: ClientKey | None) -> Plan:
        req = parse_request(
            Endpoint.CHAT,
            json.dumps({"model": model_id, "messages": [{"role": "user", "content": "hi"}]}).encode(),
            "auto",
        )
        return router.decide(snap, config, outcomes, req, task, local_only=True, key=key).plan

    assert decide(
        "meta-llama-3.1-8b-instruct", "coding", None
    ).tiers  # no key on the request (keys off): everything allowed
    assert decide("qwen2.5-coder-7b-instruct", "coding", key).tiers
    with pytest.raises(DomainError) as caught:
        decide("meta-llama-3.1-8b-instruct", "coding", key)
    model_refused = api_error(caught.value)
    assert model_refused.status == 403 and model_refused.code == "model_not_allowed" and model_refused.param == "model"
    with pytest.raises(DomainError) as caught:
        decide("qwen2.5-coder-7b-instruct", "creative", key)
    task = api_error(caught.value)
    assert task.status == 403 and task.code == "task_not_allowed"


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "admin: {token: 'my-very-secret-admin-token'}",
            "admin.token: an inline secret is not accepted: a config file gets copied, committed and shown around; "
            "name the file or environment variable that holds it instead (admin.token_file or LMWATCH_ADMIN_TOKEN)",
        ),
        (
            "clients: {keys: [{name: a, key: 'sk-my-very-secret-client-key'}]}",
            "clients.keys[0].key: an inline secret is not accepted",
        ),
        ("clients: {keys: [{name: a}]}", "clients.keys[0]: set exactly one of key_env or key_file"),
        (
            "clients: {keys: [{name: a, key_env: X}, {name: a, key_env: Y}]}",
            "clients.keys: client key name(s) used twice: a",
        ),
        ("audit: {prompts: true}", "audit: prompts: true needs requests: true"),
        ("backend_files: '/etc/x/*.yaml'", "backend_files: Input should be a valid list"),
    ],
)
def test_config_rejects_inline_secrets_with_the_reason(text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as failed:
        parse_config(text, env={})
    assert failed.value.problems[0].startswith(problem), failed.value.problems
    assert "my-very-secret" not in str(failed.value)


async def test_no_token_on_a_network_address_refuses_to_start(tmp_path: Path, sim: RunningSimulator) -> None:
    body = f"backends: [{backend_yaml('a', sim.url)}]\n"
    config = config_file(tmp_path, body, token=False)
    text = config.read_text().replace("server: {port: 0,", "server: {host: 0.0.0.0, port: 0,")
    write(config, text)
    daemon = Daemon(load_config(config, env={}))
    with pytest.raises(ConfigError) as refused:
        await daemon.start()
    assert refused.value.problems[0].startswith(
        "server.host: lmwatch would listen on 0.0.0.0 (not loopback) without an admin token"
    )
    assert daemon.port is None  # nothing was bound

    code, _, err = await run_cli("run", "--config", str(config))
    assert code == 1
    assert "server.host: lmwatch would listen on 0.0.0.0" in err and "lmwatch did not start" in err
    assert "Traceback" not in err

    write(tmp_path / "admin.token", ADMIN_TOKEN + "\n")
    write(config, text + f"admin: {{token_file: {tmp_path / 'admin.token'}}}\n")
    started = Daemon(load_config(config, env={}))
    await started.start()
    try:
        assert started.port
    finally:
        await started.stop()


async def test_admin_token_from_the_environment_wins(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LMWATCH_ADMIN_TOKEN", "env-admin-token-abcdefghijklmnop")
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        status, _ = await admin(http, daemon, "GET", "/admin/backends", token=ADMIN_TOKEN)
        assert status == 401
        status, _ = await admin(http, daemon, "GET", "/admin/backends", token="env-admin-token-abcdefghijklmnop")
        assert status == 200
    monkeypatch.setenv("LMWATCH_ADMIN_TOKEN", "short")
    with pytest.raises(ConfigError) as failed:
        async with daemon_for(config):
            pass
    assert failed.value.problems == [
        "LMWATCH_ADMIN_TOKEN: the admin token is shorter than 16 characters (make one with `openssl rand -hex 24`)"
    ]


async def test_secret_files_readable_by_others_get_a_warning(
    tmp_path: Path, sim: RunningSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    (tmp_path / "admin.token").chmod(0o644)
    loaded = load_config(config, env={})
    warnings = secret_file_warnings(loaded.config, config)
    assert warnings == [
        f"{tmp_path / 'admin.token'} holds a secret (admin.token_file) and is readable by every user (mode 0644); "
        f"run: chmod o-rwx {tmp_path / 'admin.token'}"
    ]
    with caplog.at_level(logging.WARNING, logger="lmwatch.control"):
        async with daemon_for(config):
            pass
    assert any("readable by every user" in r.getMessage() for r in caplog.records)
    (tmp_path / "admin.token").chmod(0o640)
    assert secret_file_warnings(loaded.config, config) == []

    with_password = config_file(
        tmp_path, "backends: [{name: p, url: 'http://user:pw-secret@127.0.0.1:9'}]\n", name="pw.yaml"
    )
    with_password.chmod(0o644)
    assert any(
        "a password in a URL" in w
        for w in secret_file_warnings(load_config(with_password, env={}).config, with_password)
    )
