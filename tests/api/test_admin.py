"""The admin API: every endpoint with no token, a wrong token and the right one; what each does.

A daemon runs in-process on port 0 against simulated LM Studio servers over real HTTP; waits are
on registry events (`Registry.wait_for`), never sleeps.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import make_mocked_request

from lmwatch.api.auth import check_admin
from lmwatch.api.errors import ApiError
from lmwatch.credentials import AdminAuth, AdminToken, _digest
from lmwatch.registry import Health, Snapshot
from lmwatch.simulator import RunningSimulator, SimSettings, start_simulator
from tests.daemons import (
    ADMIN_TOKEN,
    WRONG_TOKEN,
    admin,
    audit_lines,
    backend_yaml,
    bearer,
    config_file,
    daemon_for,
    metric_value,
)

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Write a Python function that parses JSON"}]}


def up(name: str) -> Any:
    return lambda snap: name in snap.backends and snap.backends[name].health is Health.UP


# Each endpoint with a request that succeeds on a fresh daemon watching one simulator as `a`,
# and a check that the unauthenticated attempts changed nothing.
ENDPOINTS: list[tuple[str, str, Any, int]] = [
    ("GET", "/admin/backends", None, 200),
    ("POST", "/admin/backends", {"name": "extra", "url": "http://127.0.0.1:9"}, 201),
    ("DELETE", "/admin/backends/a", None, 200),
    ("POST", "/admin/backends/a/drain", None, 200),
    ("POST", "/admin/backends/a/undrain", None, 200),
    ("POST", "/admin/backends/a/models/load", {"model": "mistral-7b-instruct-v0.3"}, 200),
    ("POST", "/admin/backends/a/models/unload", {"model": "qwen2.5-coder-7b-instruct"}, 200),
    ("POST", "/admin/poll", {"backend": "a"}, 200),
    ("POST", "/admin/reload", None, 200),
    ("POST", "/admin/route/explain", CHAT, 200),
    ("GET", "/admin/routing/preferences", None, 200),
    ("PUT", "/admin/routing/preferences", {"coding": ["qwen2.5-coder"]}, 200),
]


def fleet(snap: Snapshot) -> Any:
    """What an unauthorised call must not change."""
    return {name: (b.draining, tuple(sorted(m.id for m in b.models if m.loaded))) for name, b in snap.backends.items()}


@pytest.mark.parametrize(("method", "path", "body", "ok"), ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
async def test_every_endpoint_needs_the_token(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession, method: str, path: str, body: Any, ok: int
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        before = fleet(daemon.registry.snapshot())
        preferences = daemon.holder.config.routing.preferences

        status, answer = await admin(http, daemon, method, path, body, token=None)
        assert status == 401, answer
        assert answer["error"]["code"] == "missing_admin_token"
        assert set(answer["error"]) == {"message", "type", "param", "code"}

        status, answer = await admin(http, daemon, method, path, body, token=WRONG_TOKEN)
        assert status == 401, answer
        assert answer["error"]["code"] == "invalid_admin_token"
        assert WRONG_TOKEN not in str(answer) and ADMIN_TOKEN not in str(answer)

        assert fleet(daemon.registry.snapshot()) == before
        assert daemon.holder.config.routing.preferences == preferences
        assert sim.state.stats.loads_total == 0 and sim.state.stats.unloads_total == 0

        status, answer = await admin(http, daemon, method, path, body)
        assert status == ok, answer
        async with http.get(daemon.url + "/metrics") as resp:
            text = await resp.text()
        assert (
            metric_value(text, "lmwatch_admin_actions_total", [("action", "authenticate"), ("result", "denied")]) == 2
        )


async def test_a_bearer_scheme_is_required(tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    basic = {"Authorization": f"Basic {ADMIN_TOKEN}"}
    async with daemon_for(config) as daemon, http.get(daemon.url + "/admin/backends", headers=basic) as r:
        assert r.status == 401
        assert "Bearer" in r.headers["WWW-Authenticate"]


async def test_without_a_token_only_loopback_clients_are_answered(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n", token=False)
    async with daemon_for(config) as daemon:
        status, answer = await admin(http, daemon, "GET", "/admin/backends", token=None)
        assert status == 200
        assert answer["admin"] == {"token": False, "mode": "loopback-only"}
        await admin(http, daemon, "POST", "/admin/backends/a/drain", token=None)
    lines = audit_lines(tmp_path / "state" / "audit.jsonl")
    assert [(line["actor"], line["action"], line["result"]) for line in lines] == [("loopback", "drain", "ok")]

    guard = AdminAuth()
    remote = make_mocked_request("GET", "/admin/backends", transport=_Transport("192.0.2.7"))
    with pytest.raises(ApiError) as refused:
        check_admin(guard, remote)
    assert refused.value.status == 403 and refused.value.code == "admin_loopback_only"
    assert (
        check_admin(guard, make_mocked_request("GET", "/admin/backends", transport=_Transport("127.0.0.1")))
        == "loopback"
    )
    guard.token = AdminToken(_digest(ADMIN_TOKEN), "test")
    with pytest.raises(ApiError) as missing:  # with a token set, loopback needs it too
        check_admin(guard, make_mocked_request("GET", "/admin/backends", transport=_Transport("127.0.0.1")))
    assert missing.value.status == 401


class _Transport:
    """Enough of a transport for `request.remote`."""

    def __init__(self, host: str) -> None:
        self.host = host

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return (self.host, 40000) if name == "peername" else default

    def is_closing(self) -> bool:
        return False


async def test_list_backends_shows_health_models_breakers_inflight_and_origin(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        status, answer = await admin(http, daemon, "GET", "/admin/backends")
        assert status == 200
        (a,) = answer["backends"]
        assert a["name"] == "a" and a["health"] == "up" and a["origin"] == "config"
        assert a["inflight"] == 0 and a["breakers"] == [] and a["draining"] is False
        assert any(m["id"] == "qwen2.5-coder-7b-instruct" and m["loaded"] for m in a["models"])
        assert answer["admin"]["mode"] == "token"
        assert ADMIN_TOKEN not in str(answer)


async def test_add_and_remove_backends_at_runtime(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    other = await start_simulator(SimSettings(), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
        async with daemon_for(config) as daemon:
            status, answer = await admin(
                http,
                daemon,
                "POST",
                "/admin/backends",
                {"name": "b", "url": other.url, "poll_interval": 1, "labels": {"room": "x"}},
            )
            assert status == 201, answer
            assert answer["origin"] == "runtime"
            await daemon.registry.wait_for(up("b"), timeout=5)

            status, answer = await admin(http, daemon, "POST", "/admin/backends", {"name": "b", "url": other.url})
            assert status == 409 and answer["error"]["code"] == "backend_exists"

            status, answer = await admin(
                http,
                daemon,
                "POST",
                "/admin/backends",
                {"name": "c", "url": "not a url", "timeout": -1, "colour": "red"},
            )
            assert status == 400
            assert answer["problems"] == [
                "url: Input should be a valid URL, relative URL without a base (got 'not a url')",
                "timeout: Input should be greater than 0 (got -1)",
                "colour: unknown key (check the spelling; see config.yaml for every key)",
            ]
            assert answer["error"]["code"] == "invalid_backend"
            assert "c" not in daemon.registry.snapshot().backends

            status, answer = await admin(http, daemon, "GET", "/admin/backends")
            assert {b["name"]: b["origin"] for b in answer["backends"]} == {"a": "config", "b": "runtime"}

            status, answer = await admin(http, daemon, "DELETE", "/admin/backends/b")
            assert status == 200 and answer == {"removed": "b", "origin": "runtime"}
            assert "b" not in daemon.registry.snapshot().backends
            status, answer = await admin(http, daemon, "DELETE", "/admin/backends/a")
            assert status == 200 and answer["origin"] == "config"
            assert daemon.registry.snapshot().backends == {}
            status, answer = await admin(http, daemon, "DELETE", "/admin/backends/nope")
            assert status == 404 and answer["error"]["code"] == "backend_not_found"

            # a removed static name can be reused at runtime; a reload brings back the file's state
            status, answer = await admin(http, daemon, "POST", "/admin/backends", {"name": "a", "url": other.url})
            assert status == 201
            _, answer = await admin(http, daemon, "GET", "/admin/backends")
            assert [(b["name"], b["url"], b["origin"]) for b in answer["backends"]] == [("a", other.url, "runtime")]
            status, _ = await admin(http, daemon, "POST", "/admin/reload")
            assert status == 200
            _, answer = await admin(http, daemon, "GET", "/admin/backends")
            assert [(b["name"], b["url"], b["origin"]) for b in answer["backends"]] == [("a", sim.url, "config")]
    finally:
        await other.stop()


async def test_drain_stops_new_requests_and_lets_streams_in_flight_finish(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    slow = await start_simulator(SimSettings(ttft=0.05, tokens_per_second=40), port=0)
    fast = await start_simulator(SimSettings(), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', slow.url)}, {backend_yaml('b', fast.url)}]\n")
        async with daemon_for(config) as daemon:
            await admin(http, daemon, "POST", "/admin/backends/b/drain")
            body = {
                "model": "qwen2.5-coder-7b-instruct",
                "stream": True,
                "max_tokens": 60,
                "messages": [{"role": "user", "content": "count"}],
            }
            async with http.post(daemon.url + "/v1/chat/completions", json=body) as stream:
                assert stream.status == 200 and stream.headers["X-LMWatch-Backend"] == "a"
                first = await stream.content.readline()
                assert first.startswith(b"data: ")
                # a is draining now, with this stream in flight; b takes requests again
                status, answer = await admin(http, daemon, "POST", "/admin/backends/a/drain")
                assert answer == {"backend": "a", "draining": True, "inflight": 1}
                await admin(http, daemon, "POST", "/admin/backends/b/undrain")
                async with http.post(daemon.url + "/v1/chat/completions", json={**body, "stream": False}) as other:
                    assert other.status == 200
                    assert other.headers["X-LMWatch-Backend"] == "b"
                rest = await stream.read()
            assert rest.rstrip().endswith(b"data: [DONE]")
            assert b'"error"' not in rest

            async with http.get(daemon.url + "/status") as resp:
                doc = await resp.json()
            assert {b["name"]: b["draining"] for b in doc["backends"]} == {"a": True, "b": False}
            async with http.get(daemon.url + "/metrics") as resp:
                text = await resp.text()
            assert metric_value(text, "lmwatch_backend_draining", [("backend", "a")]) == 1.0

            await admin(http, daemon, "POST", "/admin/backends/b/drain")  # both drained: nothing to route to
            async with http.post(daemon.url + "/v1/chat/completions", json={**body, "stream": False}) as none:
                assert none.status == 503
                assert "draining" in (await none.json())["error"]["message"]
            await admin(http, daemon, "POST", "/admin/backends/a/undrain")
            async with http.post(daemon.url + "/v1/chat/completions", json={**body, "stream": False}) as back:
                assert back.status == 200 and back.headers["X-LMWatch-Backend"] == "a"

            status, answer = await admin(http, daemon, "POST", "/admin/backends/nope/drain")
            assert status == 404
    finally:
        await slow.stop()
        await fast.stop()


async def test_load_and_unload_models(tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    plain = await start_simulator(SimSettings(flavour="openai"), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}, {backend_yaml('o', plain.url)}]\n")
        async with daemon_for(config) as daemon:
            status, answer = await admin(
                http,
                daemon,
                "POST",
                "/admin/backends/a/models/load",
                {"model": "mistral-7b-instruct-v0.3", "context_length": 4096},
            )
            assert status == 200, answer
            assert answer["loaded"] is True
            mistral = daemon.registry.snapshot().backends["a"].model("mistral-7b-instruct-v0.3")
            assert mistral is not None and mistral.loaded  # re-polled before answering

            status, answer = await admin(
                http, daemon, "POST", "/admin/backends/a/models/unload", {"model": "mistral-7b-instruct-v0.3"}
            )
            assert status == 200 and answer["unloaded"] == ["mistral-7b-instruct-v0.3"]
            mistral = daemon.registry.snapshot().backends["a"].model("mistral-7b-instruct-v0.3")
            assert mistral is not None and not mistral.loaded

            status, answer = await admin(
                http, daemon, "POST", "/admin/backends/o/models/load", {"model": "qwen2.5-coder-7b-instruct"}
            )
            assert status == 409 and answer["error"]["code"] == "not_supported"
            assert "openai" in answer["error"]["message"] and "cannot load" in answer["error"]["message"]

            status, answer = await admin(http, daemon, "POST", "/admin/backends/a/models/load", {"model": "nope"})
            assert status == 404 and "nope" in answer["error"]["message"]
            assert answer["error"]["code"] == "model_not_found"
            status, answer = await admin(
                http,
                daemon,
                "POST",
                "/admin/backends/a/models/load",
                {"model": "mistral-7b-instruct-v0.3", "context_length": 299887},
            )
            assert status == 400 and answer["error"]["code"] == "context_length_exceeded", answer
            assert "32768" in answer["error"]["message"] and answer["error"]["param"] == "context_length"
            status, answer = await admin(http, daemon, "POST", "/admin/backends/a/models/load", {})
            assert status == 400 and answer["error"]["param"] == "model"
            status, answer = await admin(http, daemon, "POST", "/admin/backends/a/models/load", [1])
            assert status == 400
    finally:
        await plain.stop()


async def test_poll_probes_now(tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url, poll_interval=3600)}]\n")
    async with daemon_for(config) as daemon:
        before = daemon.registry.snapshot().backends["a"].last_probe
        status, answer = await admin(http, daemon, "POST", "/admin/poll", {"backend": "a"})
        assert status == 200 and answer["polled"] == ["a"]
        after = daemon.registry.snapshot().backends["a"].last_probe
        assert before is not None and after is not None and after > before
        status, answer = await admin(http, daemon, "POST", "/admin/poll")
        assert status == 200 and answer["polled"] == ["a"]
        status, answer = await admin(http, daemon, "POST", "/admin/poll", {"backend": "zz"})
        assert status == 404


async def test_routing_preferences_change_until_reload(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        status, answer = await admin(http, daemon, "PUT", "/admin/routing/preferences", {"coding": "llama"})
        assert status == 400
        assert answer["problems"] == ["routing.preferences.coding: Input should be a valid list"]
        status, answer = await admin(
            http, daemon, "PUT", "/admin/routing/preferences", {"coding": ["meta-llama-3.1-8b"]}
        )
        assert status == 200 and answer == {"preferences": {"coding": ["meta-llama-3.1-8b"]}}
        status, answer = await admin(http, daemon, "GET", "/admin/routing/preferences")
        assert answer == {"preferences": {"coding": ["meta-llama-3.1-8b"]}}
        status, answer = await admin(http, daemon, "POST", "/admin/route/explain", CHAT)
        assert answer["chosen"]["model"] == "meta-llama-3.1-8b-instruct"
        assert answer["chosen"]["route"] == "preference"
        status, _ = await admin(http, daemon, "POST", "/admin/reload")
        assert status == 200
        assert "coding" in daemon.holder.config.routing.preferences
        assert daemon.holder.config.routing.preferences["coding"] != ["meta-llama-3.1-8b"]


async def test_route_explain_is_a_dry_run(tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession) -> None:
    other = await start_simulator(SimSettings(), port=0)
    try:
        config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}, {backend_yaml('b', other.url)}]\n")
        async with daemon_for(config) as daemon:
            await admin(http, daemon, "POST", "/admin/backends/b/drain")
            requests_before = dict(sim.state.stats.requests_total)
            status, answer = await admin(http, daemon, "POST", "/admin/route/explain", CHAT)
            assert status == 200, answer
            assert answer["task"] == "coding" and answer["task_source"] == "classifier"
            assert answer["scores"]["coding"] > 0
            assert answer["task_reasons"] and all("(coding+" in r for r in answer["task_reasons"])
            candidates = answer["candidates"]
            assert candidates and all(c["backend"] == "a" for c in candidates)
            assert candidates[0]["model"] == "qwen2.5-coder-7b-instruct"
            assert all(c["reason"] for c in candidates)
            assert answer["chosen"] == candidates[0]
            assert answer["excluded"] == [{"backend": "b", "reason": "draining"}]
            assert sim.state.stats.requests_total.get("/v1/chat/completions") == requests_before.get(
                "/v1/chat/completions"
            )

            status, answer = await admin(
                http, daemon, "POST", "/admin/route/explain", {**CHAT, "model": "task:creative"}
            )
            assert answer["task"] == "creative" and answer["task_source"] == "model"
            status, answer = await admin(
                http, daemon, "POST", "/admin/route/explain", {"model": "nope", "messages": CHAT["messages"]}
            )
            assert status == 404 and answer["error"]["code"] == "model_not_found"
            status, answer = await admin(
                http, daemon, "POST", "/admin/route/explain?endpoint=embeddings", {"input": "hello"}
            )
            assert status == 200 and answer["chosen"]["model"] == "text-embedding-nomic-embed-text-v1.5"
            status, answer = await admin(http, daemon, "POST", "/admin/route/explain", {"messages": "x"})
            assert status == 400
    finally:
        await other.stop()


async def test_admin_paths_are_guarded_even_when_unknown(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        status, _ = await admin(http, daemon, "GET", "/admin/nothing-here", token=None)
        assert status == 401
        for method, path, code in (("GET", "/admin/nothing-here", 404), ("PATCH", "/admin/backends", 405)):
            async with http.request(method, daemon.url + path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as r:
                assert (r.status, r.content_type) == (code, "application/json")
                assert path in (await r.json())["error"]["message"]


DEEP = b"[" * 1000 + b"]" * 1000
"""2 KB that `json.loads` cannot decode without a RecursionError."""


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/admin/backends"), ("PUT", "/admin/routing/preferences"), ("POST", "/admin/route/explain")],
)
async def test_deep_json_and_lone_surrogates_are_400_on_admin_endpoints(
    method: str, path: str, tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        for raw in (b'{"x": ' + DEEP + b"}", b'{"coding": ["\\udc00"], "name": "\\udc00"}'):
            async with http.request(method, daemon.url + path, data=raw, headers=bearer(ADMIN_TOKEN)) as r:
                body = await r.json()
            assert r.status == 400, body
            assert body["error"]["code"] == "invalid_json"


async def test_concurrent_drains_are_consistent(
    tmp_path: Path, sim: RunningSimulator, http: aiohttp.ClientSession
) -> None:
    config = config_file(tmp_path, f"backends: [{backend_yaml('a', sim.url)}]\n")
    async with daemon_for(config) as daemon:
        results = await asyncio.gather(
            *(admin(http, daemon, "POST", f"/admin/backends/a/{verb}") for verb in ["drain", "undrain"] * 5 + ["drain"])
        )
        assert all(status == 200 for status, _ in results)
        assert len(audit_lines(tmp_path / "state" / "audit.jsonl")) == 11
