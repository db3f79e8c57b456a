"""Usage analytics over real HTTP: rows written off the request path, `/admin/usage` and `lmwatch usage`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter

from lmwatch.simulator import SimSettings
from lmwatch.usage import log
from lmwatch.usage.log import Group, Row, UsageLog
from tests.api.fleets import Fleet, chat, fleet, models
from tests.daemons import run_cli

MODEL = "meta-llama-3.1-8b-instruct"
SIM = SimSettings(models=models(MODEL))
GROUP: Group = ("anonymous", "studio", MODEL, "chat", "explicit", "chat", "200", "bypass", True)


def record(usage: UsageLog, group: Group = GROUP, ttft: float | None = None, cost: float = 0.0) -> None:
    """One request of 10 tokens in, 20 out, in 0.1 s."""
    usage.record(group, 10, 20, 0.1, ttft, cost)


def keyed(name: str) -> Group:
    """GROUP with another key name: a group of its own."""
    return (name, *GROUP[1:])


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
        for n in range(200):  # more rows (one per group) than the pages left
            record(usage, keyed(f"key {n}"))
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
    clock = [now]
    usage = UsageLog(Counter("t_usage_failures", "", registry=CollectorRegistry()), clock=lambda: clock[0])
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        for age_days in (2, 0.5):
            clock[0] = now - age_days * 86400
            record(usage)
        clock[0] = now
        record(usage)
        await usage.flush()
        report = await usage.report(0.0, "model")
        assert report["totals"]["requests"] == 2  # the row two days old is gone
    finally:
        await usage.close()


async def test_requests_add_up_per_second_and_group(tmp_path: Path) -> None:
    """One row per second and group, with the sums of its requests; every column keeps its type,
    an infinite cost included, batch after batch."""
    clock = [1_000_000_000.25]
    usage = UsageLog(Counter("t_usage_failures", "", registry=CollectorRegistry()), clock=lambda: clock[0])
    other = keyed("clé ✓")
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1e6)
        record(usage)
        record(usage, ttft=0.012345678901, cost=0.25)
        record(usage, other)
        clock[0] += 0.5  # the same second
        record(usage, ttft=0.5)
        clock[0] += 0.5  # the next one
        record(usage)
        await usage.flush()
        record(usage, cost=float("inf"))  # the same second, written in a batch of its own
        await usage.flush()
    finally:
        await usage.close()
    second = 1_000_000_000
    with sqlite3.connect(tmp_path / "usage.sqlite") as db:
        stored: list[Row] = db.execute("SELECT * FROM usage ORDER BY rowid").fetchall()
        types = db.execute("SELECT DISTINCT typeof(time), typeof(local), typeof(ttft_seconds) FROM usage").fetchall()
    assert stored == [
        (second, *GROUP, 3, 30, 60, pytest.approx(0.3), pytest.approx(0.512345678901), 2, 0.25),
        (second, *other, 1, 10, 20, 0.1, 0.0, 0, 0.0),
        (second + 1, *GROUP, 1, 10, 20, 0.1, 0.0, 0, 0.0),
        (second + 1, *GROUP, 1, 10, 20, 0.1, 0.0, 0, float("inf")),
    ]
    assert types == [("integer", "integer", "real")]


async def test_reports_weigh_each_row_by_its_requests(tmp_path: Path) -> None:
    clock = [1_000_000_000.0]
    usage = UsageLog(Counter("t_usage_failures", "", registry=CollectorRegistry()), clock=lambda: clock[0])
    cached: Group = ("anonymous", "studio", MODEL, "chat", "cache", "chat", "200", "hit", True)
    cloud: Group = ("cloud", "studio", MODEL, "chat", "explicit", "chat", "200", "bypass", False)
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1e6)
        for _ in range(3):
            record(usage, ttft=0.2, cost=0.5)
        usage.record(cached, 10, 20, 0.5, None, 1.0)
        usage.record(cloud, 1, 2, 0.9, None, 0.0)
        report = await usage.report(0.0, "model")
        served = await usage.task_usage(0.0, "chat")
    finally:
        await usage.close()
    assert report["totals"] == {
        "model": "total",
        "requests": 5,
        "prompt_tokens": 41,
        "completion_tokens": 82,
        "local_requests": 4,
        "cloud_requests": 1,
        "local_share": 0.8,
        "cache_hits": 1,
        "cost_avoided_dollars": 2.5,
        "mean_latency_seconds": pytest.approx((0.3 + 0.5 + 0.9) / 5),
        "mean_ttft_seconds": pytest.approx(0.2),
    }
    # the answer from the cache is not the backend's: 4 requests served
    assert served[("studio", MODEL)].requests == 4 and served[("studio", MODEL)].ttft_samples == 3


async def test_a_file_of_rows_per_request_is_moved_to_sums(tmp_path: Path) -> None:
    """A usage file written before rows were sums keeps its history."""
    path = tmp_path / "usage.sqlite"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE requests (time, key_name, backend, model, task, route, api, code, prompt_tokens, "
            "completion_tokens, latency_seconds, ttft_seconds, cache, local, cost_avoided_dollars)"
        )
        db.executemany(
            "INSERT INTO requests VALUES (?, 'anonymous', 'studio', ?, 'chat', 'explicit', 'chat', '200', "
            "10, 20, 0.1, ?, 'bypass', 1, 0.25)",
            [(1_000_000_000.5, MODEL, 0.05), (1_000_000_001.5, MODEL, None)],
        )
    db.close()
    usage = UsageLog(Counter("t_usage_failures", "", registry=CollectorRegistry()))
    try:
        usage.configure(path, retention_days=1e6)
        report = await usage.report(0.0, "model")
    finally:
        await usage.close()
    assert [(r["model"], r["requests"], r["mean_ttft_seconds"]) for r in report["rows"]] == [(MODEL, 2, 0.05)]
    assert report["totals"]["cost_avoided_dollars"] == 0.5
    with sqlite3.connect(path) as db:
        tables = db.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    db.close()
    assert tables == [("usage",)]


async def test_rows_past_the_bound_are_dropped_and_counted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log, "QUEUE_ROWS", 5)
    registry = CollectorRegistry()
    usage = UsageLog(Counter("t_usage_failures", "", registry=registry))
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        record(usage)
        for n in range(7):
            record(usage, keyed(f"key {n}"))
        record(usage)  # a group already waiting still adds up
        assert registry.get_sample_value("t_usage_failures_total") == 3
        await usage.flush()
        assert (await usage.report(0.0, "model"))["totals"]["requests"] == 6
    finally:
        await usage.close()


async def test_a_batch_that_fails_in_any_way_leaves_the_writer_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = CollectorRegistry()
    usage = UsageLog(Counter("t_usage_failures", "", registry=registry))
    original = log._insert

    def broken_once(db: sqlite3.Connection, rows: list[Row]) -> None:
        monkeypatch.setattr(log, "_insert", original)
        raise ValueError("a value SQLite cannot take")

    monkeypatch.setattr(log, "_insert", broken_once)
    try:
        usage.configure(tmp_path / "usage.sqlite", retention_days=1)
        record(usage)
        await usage.flush()
        assert registry.get_sample_value("t_usage_failures_total") == 1
        record(usage)
        await usage.flush()
        assert (await usage.report(0.0, "model"))["totals"]["requests"] == 1
    finally:
        await usage.close()
