"""Every series the daemon exposes against a simulated fleet, held in a committed golden file.

A renamed or dropped family, a changed type or label set fails here (dashboards, alert rules and
runbooks depend on the names). After an intended change, rewrite the file with
`LMWATCH_WRITE_GOLDEN=1 .venv/bin/pytest tests/metrics/test_golden.py` and review its diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.simulator import SimSettings, start_simulator

GOLDEN = Path(__file__).with_name("golden_series.txt")


def series_of(text: str) -> list[str]:
    """`family type` for every family, then `sample{label,...}` for every distinct label set."""
    lines: set[str] = set()
    for family in text_string_to_metric_families(text):
        lines.add(f"{family.name} {family.type}")
        for sample in family.samples:
            lines.add(f"{family.name} {sample.name}{{{','.join(sorted(sample.labels))}}}")
    return sorted(lines)


async def scrape_fleet() -> str:
    """Two simulated LM Studios (one answering a chat, a stream and an embedding), one that is down,
    and the simulated GPU."""
    sims = [await start_simulator(SimSettings(), port=0) for _ in range(2)]
    try:
        backends = ", ".join(f'{{name: sim{i}, url: "{s.url}"}}' for i, s in enumerate(sims))
        text = f"server: {{port: 0}}\nsampling: {{gpu: simulated}}\nbackends: [{backends}, "
        text += '{name: gone, url: "http://127.0.0.1:9"}]'
        async with running_daemon(parse_config(text, env={})) as daemon, aiohttp.ClientSession() as http:
            chat = {"model": "qwen2.5-coder-7b-instruct", "messages": [{"role": "user", "content": "hi"}]}
            for body in (chat, {**chat, "stream": True}):
                async with http.post(f"{daemon.url}/v1/chat/completions", json=body) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
            embed = {"model": "text-embedding-nomic-embed-text-v1.5", "input": "hi"}
            async with http.post(f"{daemon.url}/v1/embeddings", json=embed) as resp:
                assert resp.status == 200, await resp.text()
            async with http.get(f"{daemon.url}/metrics") as resp:
                assert resp.status == 200
                return await resp.text()
    finally:
        for sim in sims:
            await sim.stop()


async def test_the_series_match_the_golden_file() -> None:
    found = series_of(await scrape_fleet())
    if os.environ.get("LMWATCH_WRITE_GOLDEN"):
        GOLDEN.write_text("".join(f"{line}\n" for line in found))
    golden = GOLDEN.read_text().splitlines()
    assert [f"- {line}" for line in golden if line not in found] + [
        f"+ {line}" for line in found if line not in golden
    ] == []
