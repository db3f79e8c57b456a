"""`lmwatch top` against `lmwatch demo` (with its fake GPUs): a snapshot with `--once`, refreshing frames
with `--count`, one clear line when no daemon answers."""

from __future__ import annotations

import aiohttp

from tests.daemons import run_cli
from tests.demos import DEMO_BACKENDS, running_demo
from tests.ports import free_port_run


async def test_top_shows_backends_models_inflight_and_gpus_of_the_demo(http: aiohttp.ClientSession) -> None:
    async with running_demo("--fake-gpus") as demo:
        body = {"model": "auto", "messages": [{"role": "user", "content": "Write a Python function to sort a list"}]}
        async with http.post(demo.url + "/v1/chat/completions", json={**body, "stream": True}) as resp:
            assert resp.status == 200
            served = resp.headers["X-LMWatch-Backend"], resp.headers["X-LMWatch-Model"]
            await resp.read()
        code, out, err = await run_cli("top", "--once", env={"LMWATCH_URL": demo.url})
        assert code == 0, err
        assert out.startswith(f"lmwatch 0.1.0 at {demo.url}")
        assert "backends 3/3 up" in out and "in flight 0" in out
        lines = out.splitlines()
        header = next(i for i, line in enumerate(lines) if line.startswith("BACKEND"))
        assert lines[header].split() == [
            "BACKEND",
            "STATE",
            "FLAVOUR",
            "LOADED",
            "IN-FLIGHT",
            "QUEUED",
            "BREAKER",
            "PROBE",
        ]
        rows = {line.split()[0]: line.split() for line in lines[header + 1 : header + 4]}
        assert set(rows) == set(DEMO_BACKENDS) and all(r[1] == "up" for r in rows.values())
        assert rows["studio-a"][2:4] == ["lmstudio-v1", "0.4.12"]
        model_row = next(line.split() for line in lines if line.startswith(served[1] + " ") and served[0] in line)
        assert model_row[1] == served[0] and model_row[-2] != "-", model_row  # its tokens/s is measured now
        gpus = [line for line in lines if line.startswith(("0 ", "1 "))]
        assert len(gpus) == 2 and all("GiB" in g and "%" in g for g in gpus)

        code, out, _ = await run_cli("top", "--count", "2", "--interval", "0.05", env={"LMWATCH_URL": demo.url})
        assert code == 0
        assert out.count("lmwatch 0.1.0 at") == 2 and "\x1b[" not in out  # no terminal: no escape codes


async def test_top_without_a_daemon_says_so_in_one_line() -> None:
    url = f"http://127.0.0.1:{free_port_run(1)}"
    code, out, err = await run_cli("top", "--once", env={"LMWATCH_URL": url})
    assert code == 1 and out == ""
    assert err.startswith(f"lmwatch: no lmwatch daemon answers at {url}") and len(err.splitlines()) == 1
