"""Usage analytics over real HTTP: rows written off the request path, `/admin/usage` and `lmwatch usage`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from lmwatch.simulator import SimSettings
from lmwatch.usage import log
from lmwatch.usage.log import UsageLog, UsageRow
from tests.api.fleets import Fleet, chat, fleet, models
from tests.daemons import run_cli

MODEL = "meta-llama-3.1-8b-instruct"
SIM = SimSettings(models=models(MODEL))
ROW = UsageRow(
    0.0, "anonymous", "studio", MODEL, "chat", "explicit", "chat", "200", 10, 20, 0.1, None, "bypass", True, 0.0
)


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


async def test_a_full_disk_loses_rows_not_requests(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with fleet({"studio": SIM}, extra={"state_dir": str(tmp_path)}) as f:
        usage = f.daemon.services.usage
        assert usage is not None
        await ask(f, "/v1/chat/completions", chat("hello", model=MODEL))
        await usage.flush()
        # the disk is full: SQLite may not grow the file by one page more (a real SQLITE_FULL, set on
        # the writer's own connection in its thread)
        await asyncio.get_running_loop().run_in_executor(
            usage._executor, lambda: usage._connection().execute("PRAGMA max_page_count = 1")
        )
        for _ in range(200):  # more rows than the pages left
            usage.record(ROW._replace(time=time.time()))
        status, _ = await ask(f, "/v1/chat/completions", chat("while the disk is full", model=MODEL))
        assert status == 200
        await usage.flush()
        lost = f.metric("lmwatch_usage_write_failures_total")
        assert lost >= 200
        # the writer reopens its file after a failure: once the disk has room, rows are written again
        status, _ = await ask(f, "/v1/chat/completions", chat("after", model=MODEL))
        assert status == 200
        _, report = await ask(f, "/admin/usage")
        assert report["totals"]["requests"] == 203 - lost
        assert f.metric("lmwatch_usage_write_failures_total") == lost
    warnings = [r for r in caplog.records if "usage rows cannot be written" in r.getMessage()]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage()


async def test_rows_older_than_the_retention_are_deleted(tmp_path: Path) -> None:
    now = 1_000_000_000.0
    usage = UsageLog(CollectorRegistry(), clock=lambda: now)
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        for age_days in (2, 0.5, 0):
            usage.record(ROW._replace(time=now - age_days * 86400))
        await usage.flush()
        report = await usage.report(0.0, "model")
        assert report["totals"]["requests"] == 2  # the row two days old is gone
    finally:
        await usage.close()


async def test_a_batch_comes_back_as_it_was_recorded(tmp_path: Path) -> None:
    """Every column keeps its value and type, an infinite cost included, batch after batch."""
    usage = UsageLog(Counter("t_usage_failures", "", registry=CollectorRegistry()))
    rows = [
        ROW,
        ROW._replace(key_name="clé ✓", ttft_seconds=0.012345678901, local=False, cost_avoided_dollars=0.25),
    ]
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1e6)
        for row in rows:
            usage.record(row)
        await usage.flush()
        usage.record(ROW._replace(cost_avoided_dollars=float("inf")))
        await usage.flush()
    finally:
        await usage.close()
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        stored = db.execute("SELECT * FROM requests ORDER BY rowid").fetchall()
        types = db.execute("SELECT typeof(local), typeof(ttft_seconds), typeof(prompt_tokens) FROM requests").fetchall()
    assert stored == [tuple(r) for r in rows] + [tuple(ROW._replace(cost_avoided_dollars=float("inf")))]
    assert types[:2] == [("integer", "null", "integer"), ("integer", "real", "integer")]


async def test_rows_past_the_bound_are_dropped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "QUEUE_ROWS", 5)
    registry = CollectorRegistry()
    usage = UsageLog(Counter("t_usage_failures", "", registry=registry))
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        for _ in range(8):
            usage.record(ROW._replace(time=time.time()))
        assert registry.get_sample_value("t_usage_failures_total") == 3
        await usage.flush()
        assert (await usage.report(0.0, "model"))["totals"]["requests"] == 5
    finally:
        await usage.close()


async def test_a_batch_that_fails_in_any_way_leaves_the_writer_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    usage = UsageLog(Counter("t_usage_failures", "", registry=registry))
    original = log._insert

    def broken_once(db: sqlite3.Connection, rows: list[UsageRow]) -> None:
        monkeypatch.setattr(log, "_insert", original)
        raise ValueError("a value SQLite cannot take")

    monkeypatch.setattr(log, "_insert", broken_once)
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        usage.record(ROW._replace(time=time.time()))
        await usage.flush()
        assert registry.get_sample_value("t_usage_failures_total") == 1
        usage.record(ROW._replace(time=time.time()))
        await usage.flush()
        assert (await usage.report(0.0, "model"))["totals"]["requests"] == 1
    finally:
        await usage.close()
