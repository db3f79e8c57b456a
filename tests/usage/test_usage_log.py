"""Usage analytics over real HTTP: rows written off the request path, `/admin/usage` and `lmwatch usage`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aiohttp

from lmwatch.simulator import SimSettings
from tests.api.fleets import Fleet, chat, fleet, models
from tests.daemons import run_cli

MODEL = "meta-llama-3.1-8b-instruct"
SIM = SimSettings(models=models(MODEL))


async def ask(f: Fleet, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http:
        method = http.post(f.url + path, json=body) if body is not None else http.get(f.url + path)
        async with method as resp:
            return resp.status, await resp.json()


async def test_requests_are_reported_by_model_with_cache_hits_and_savings(tmp_path: Path) -> None:
    extra = {"state_dir": str(tmp_path), "cache": {"enabled": True}}
    async with fleet({"studio": SIM}, extra=extra) as f:
        assert f.daemon.services.cache is not None
        for _ in range(2):
            status, _ = await ask(f, "/v1/chat/completions", chat("rivers", model=MODEL, temperature=0))
            assert status == 200
            await f.daemon.services.cache.settled()
        await ask(f, "/v1/chat/completions", chat("a poem", model=MODEL))
        status, report = await ask(f, "/admin/usage?since=1h&by=model")
        assert status == 200
        [row] = report["rows"]
        assert (row["model"], row["requests"], row["cache_hits"], row["local_share"]) == (MODEL, 3, 1, 1.0)
        assert row["completion_tokens"] > 0 and row["cost_avoided_dollars"] > 0
        assert report["totals"]["requests"] == 3
        status, by_key = await ask(f, "/admin/usage?by=key")
        assert by_key["rows"][0]["key"] == "anonymous"
        status, error = await ask(f, "/admin/usage?since=forever")
        assert status == 400 and error["error"]["param"] == "since"
        code, out, err = await run_cli("usage", "--url", f.url, "--by", "task", "--since", "1d")
        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:2] == ["TASK", "REQUESTS"] and lines[-2].split()[:2] == ["total", "3"]
        code, out, _ = await run_cli("usage", "--url", f.url, "--json")
        assert json.loads(out)["totals"]["cache_hits"] == 1
    rows = (tmp_path / "usage.sqlite").read_bytes()
    assert b"rivers" not in rows and b"a poem" not in rows  # never the prompt


async def test_an_unwritable_usage_file_fails_no_request(tmp_path: Path) -> None:
    (tmp_path / "usage.sqlite").mkdir()  # a directory where the file should be
    async with fleet({"studio": SIM}, extra={"state_dir": str(tmp_path)}) as f:
        for _ in range(3):
            status, _ = await ask(f, "/v1/chat/completions", chat("hello", model=MODEL))
            assert status == 200
        assert f.daemon.services.usage is not None
        await f.daemon.services.usage.flush()
        assert f.metric("lmwatch_usage_write_failures_total") == 3
        status, error = await ask(f, "/admin/usage")
        assert status == 503 and error["error"]["code"] == "usage_unavailable"
