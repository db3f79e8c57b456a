"""`lmwatch demo` (what `make demo` runs): the simulated backends are up, with their models, in
`/status` and `/metrics` within 10 s of start; it shows a cache miss, an exact and a semantic hit,
and the `lmwatch usage` table; it prints the next steps; Ctrl-C stops the simulators with it and
removes its temporary directory."""

from __future__ import annotations

import asyncio
import re
import socket
import sys
from pathlib import Path

import aiohttp

from lmwatch.demo import KEPT
from tests.demos import DEMO_BACKENDS, running_demo, wait_kept


async def test_demo_is_up_within_ten_seconds_and_stops_cleanly(http: aiohttp.ClientSession) -> None:
    async with running_demo() as demo:
        async with http.get(demo.url + "/status") as resp:
            backends = {b["name"]: b for b in (await resp.json())["backends"]}
        assert any(m["id"] == "deepseek-coder-v2-lite-instruct" for m in backends["studio-b"]["models"])
        async with http.get(demo.url + "/metrics") as resp:
            metrics = await resp.text()
        for name in DEMO_BACKENDS:
            assert f'lmwatch_backend_up{{backend="{name}"}} 1.0' in metrics
        mistral = 'lmwatch_model_loaded{backend="engine-c",model="mistral-7b-instruct-v0.3",model_type="llm"} 1.0'
        assert mistral in metrics
        kept = await wait_kept(demo.url, "studio-a", KEPT)  # keep_loaded: loaded by lmwatch at start
        assert (kept["state"], kept["reason"], kept["attempts"]) == ("loaded", "", 0)
        match = re.search(r"\(config: (\S+)\)", demo.text)
        assert match, demo.text
        config = Path(match.group(1))
        assert await asyncio.to_thread(config.is_file)
        code = await demo.stop()
    assert code == 0, demo.text
    assert f"{demo.url}/status" in demo.text
    steps = demo.text[demo.text.index("Next steps") :]
    assert f". {Path(sys.executable).parent / 'activate'}" in steps
    assert f"export LMWATCH_URL={demo.url}" in steps  # not on the default port, so the shell needs it
    assert "lmwatch status" in steps
    assert f"lmwatch fit {KEPT}" in steps
    # it shows the cache at work (a miss, then an exact and a semantic hit) and the usage table
    assert re.search(r"twice, X-LMWatch-Cache: miss \(\w+\) then hit \(cache\)", demo.text), demo.text
    assert re.search(r"in other words \(the semantic cache\): hit \(cache, similarity 0?\.?\d", demo.text), demo.text
    usage = demo.text[demo.text.index("lmwatch usage --by model:") :]
    assert re.search(r"MODEL +REQUESTS +TOKENS IN +TOKENS OUT +LOCAL +CACHE HITS +SAVED \$", usage), usage
    assert re.search(r"\ntotal +3 +\d+ +\d+ +\d+% +2 ", usage), usage
    assert not await asyncio.to_thread(config.parent.exists), "the demo left its temporary directory behind"
    for offset in range(3):  # the simulators are gone: their ports are free again
        with socket.create_server(("127.0.0.1", demo.sim_port + offset)):
            pass
