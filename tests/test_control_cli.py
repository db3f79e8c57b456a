"""The operator CLI (`lmwatch status|models|drain|undrain|load|unload|reload|route`) as a subprocess
against a daemon running in-process on port 0."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from lmwatch.control_cli import COMMANDS
from lmwatch.daemon import Daemon
from lmwatch.registry import ModelProfile, ModelType
from lmwatch.simulator import RunningSimulator
from tests.daemons import ADMIN_TOKEN, WRONG_TOKEN, backend_yaml, config_file, daemon_for, run_cli, write
from tests.ports import free_port


@pytest.fixture
async def daemon(tmp_path: Path, sim: RunningSimulator) -> AsyncIterator[Daemon]:
    config = config_file(tmp_path, f"backends: [{backend_yaml('studio', sim.url)}]\n")
    async with daemon_for(config) as running:
        yield running


def cli_env(daemon: Daemon, token: str | None = ADMIN_TOKEN) -> dict[str, str]:
    env = {"LMWATCH_URL": daemon.url}
    if token:
        env["LMWATCH_ADMIN_TOKEN"] = token
    return env


@pytest.mark.parametrize("command", COMMANDS)
async def test_every_command_has_help(command: str) -> None:
    code, out, _ = await run_cli(command, "--help")
    assert code == 0
    assert out.startswith(f"usage: lmwatch {command}")
    assert "--url" in out and "--token" in out


async def test_status_is_a_table(daemon: Daemon) -> None:
    code, out, err = await run_cli("status", env=cli_env(daemon))
    assert code == 0, err
    header, row = out.splitlines()
    assert header.split() == ["BACKEND", "STATE", "MODELS", "LOADED", "IN-FLIGHT", "BREAKER", "ORIGIN"]
    assert row.startswith("studio") and " up " in row and row.split()[-3:] == ["0", "closed", "config"]
    assert "qwen2.5-coder-7b-instruct" in row and "(stale)" not in row

    code, out, _ = await run_cli("status", "--json", "--url", daemon.url, "--token", ADMIN_TOKEN)
    assert code == 0
    assert json.loads(out)["backends"][0]["name"] == "studio"


async def test_status_marks_the_models_of_a_down_backend_stale(daemon: Daemon, sim: RunningSimulator) -> None:
    await sim.stop()
    await daemon.registry.wait_for(lambda s: s.backends["studio"].health.value == "down", timeout=30)
    code, out, err = await run_cli("status", env=cli_env(daemon))
    assert code == 0, err
    row = out.splitlines()[1]
    assert " down " in row and "qwen2.5-coder-7b-instruct" in row and "(stale)" in row
    code, out, _ = await run_cli("status", "--json", env=cli_env(daemon))
    [backend] = json.loads(out)["backends"]
    assert backend["models"] and all(m["stale"] for m in backend["models"])


async def test_models_lists_every_model(daemon: Daemon) -> None:
    code, out, err = await run_cli("models", env=cli_env(daemon))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["MODEL", "BACKEND", "TYPE", "LOADED", "CONTEXT"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert rows["mistral-7b-instruct-v0.3"][:3] == ["studio", "llm", "no"]
    assert rows["qwen2.5-coder-7b-instruct"][:3] == ["studio", "llm", "yes"]
    assert rows["text-embedding-nomic-embed-text-v1.5"][1] == "embeddings"


async def test_drain_and_undrain(daemon: Daemon) -> None:
    code, out, err = await run_cli("drain", "studio", env=cli_env(daemon))
    assert code == 0, err
    assert out.strip() == "studio is draining: no new requests; 0 in flight finish normally"
    assert daemon.registry.snapshot().backends["studio"].draining
    _, out, _ = await run_cli("status", env=cli_env(daemon))
    assert "up,draining" in out
    code, out, _ = await run_cli("undrain", "studio", env=cli_env(daemon))
    assert code == 0 and out.strip() == "studio takes requests again"
    assert not daemon.registry.snapshot().backends["studio"].draining
    code, _, err = await run_cli("drain", "nope", env=cli_env(daemon))
    assert code == 1 and err.strip() == "lmwatch: no backend named 'nope'"


async def test_load_and_unload(daemon: Daemon, sim: RunningSimulator) -> None:
    code, out, err = await run_cli(
        "load", "studio", "mistral-7b-instruct-v0.3", "--context-length", "2048", env=cli_env(daemon)
    )
    assert code == 0, err
    assert out.strip() == "loaded mistral-7b-instruct-v0.3 on studio"
    assert sim.state.stats.loads_total == 1
    code, out, err = await run_cli("unload", "studio", "mistral-7b-instruct-v0.3", env=cli_env(daemon))
    assert code == 0, err
    assert out.strip() == "unloaded mistral-7b-instruct-v0.3 from studio"
    model = daemon.registry.snapshot().backends["studio"].model("mistral-7b-instruct-v0.3")
    assert model is not None and not model.loaded


async def test_reload_good_and_bad(daemon: Daemon) -> None:
    code, out, err = await run_cli("reload", env=cli_env(daemon))
    assert code == 0, err
    assert out.strip() == "config reloaded: 1 backends (studio)"
    path = daemon.holder.loaded.path
    assert path is not None
    good = path.read_text()
    write(path, good + "routing: {default_model: 7, colour: red}\n")
    code, out, err = await run_cli("reload", env=cli_env(daemon))
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "lmwatch: the config was not reloaded (the running config stays)",
        "  routing.default_model: Input should be a valid string (got 7)",
        "  routing.colour: unknown key (check the spelling; see config.yaml for every key)",
    ]


async def test_route_explain(daemon: Daemon, sim: RunningSimulator) -> None:
    before = sim.state.stats.requests_total.get("/v1/chat/completions", 0)
    code, out, err = await run_cli(
        "route", "--explain", "Fix this Python traceback in my function", env=cli_env(daemon)
    )
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("task: coding (from the classifier); scores: coding ")
    assert lines[1].startswith("  because: ")
    assert "candidates, in order:" in lines
    assert lines[-1] == "chosen: studio / qwen2.5-coder-7b-instruct"
    first = lines.index("candidates, in order:") + 1
    assert lines[first].startswith("  1. studio / qwen2.5-coder-7b-instruct: chosen for coding (classifier score 0.")
    assert lines[first + 1] == "     fits: ~26 of 8192 tokens; speed not measured yet"  # 40 characters / 4 + 16
    assert lines[first + 2] == "     profile: not measured (run `lmwatch profile`)"
    assert "  passed over: studio / text-embedding-nomic-embed-text-v1.5 (the model " in "\n".join(lines)
    assert sim.state.stats.requests_total.get("/v1/chat/completions", 0) == before  # a dry run

    code, out, _ = await run_cli(
        "route", "--explain", "hello", "--model", "task:creative", "--json", env=cli_env(daemon)
    )
    assert code == 0 and json.loads(out)["task"] == "creative"


async def test_route_explain_says_per_candidate_its_profile_its_fit_and_why_it_was_kept_or_skipped(
    daemon: Daemon,
) -> None:
    daemon.registry.record_profiles(
        [
            ModelProfile(
                backend="studio",
                model="qwen2.5-coder-7b-instruct",
                model_type=ModelType.LLM,
                measured_at=1.0,
                ttft_short_seconds=0.25,
                ttft_long_seconds=0.9,
                prompt_tokens_per_second=800.0,
                generation_tokens_per_second=50.0,
            )
        ]
    )
    long = "Fix the bug in this Python function:\n```python\n" + "total = total + 1\n" * 2400 + "```"
    code, out, err = await run_cli("route", "--explain", long, env=cli_env(daemon))
    assert code == 0, err
    lines = out.splitlines()
    first = lines.index("candidates, in order:") + 1
    qwen, llama, gemma = lines[first], lines[first + 3], lines[first + 6]
    assert qwen.startswith("  1. studio / qwen2.5-coder-7b-instruct: skipped for coding (classifier score ")
    assert qwen.endswith("; skipped: needs about 10829 tokens, its loaded context is 8192")
    assert lines[first + 1].startswith("     does not fit: ~10829 of 8192 tokens; expected 4.2 s (profile: TTFT 0.250")
    profile = "     profile: TTFT 0.250 s short / 0.900 s long, prompt 800.0 tok/s, generation 50.0 tok/s"
    assert lines[first + 2] == profile
    assert llama.startswith("  2. studio / meta-llama-3.1-8b-instruct: skipped for coding")
    assert gemma.startswith("  3. studio / google/gemma-3-4b: chosen for coding")
    assert lines[first + 7] == "     fits: ~10829 of 12918 tokens; speed not measured yet"
    assert lines[-1] == "chosen: studio / google/gemma-3-4b"


async def test_a_clear_line_when_no_daemon_runs() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for command in (["status"], ["drain", "x"], ["reload"]):
        code, out, err = await run_cli(*command, "--url", url)
        assert code == 1 and out == ""
        assert err.splitlines() == [
            f"lmwatch: no lmwatch daemon answers at {url} (connection refused); start one with "
            "`lmwatch run --config FILE` or point --url / LMWATCH_URL at it"
        ]


async def test_a_clear_line_when_the_token_is_missing_or_wrong(daemon: Daemon) -> None:
    code, _, err = await run_cli("status", env=cli_env(daemon, token=None))
    assert code == 1
    assert err.splitlines() == [
        f"lmwatch: the daemon at {daemon.url} needs its admin token: pass --token or set LMWATCH_ADMIN_TOKEN"
    ]
    code, _, err = await run_cli("reload", env=cli_env(daemon, token=WRONG_TOKEN))
    assert code == 1
    assert err.splitlines() == [
        f"lmwatch: the daemon at {daemon.url} refused the admin token (wrong token); check --token / "
        "LMWATCH_ADMIN_TOKEN"
    ]
    assert WRONG_TOKEN not in err
    code, _, _ = await run_cli("status", "--token", ADMIN_TOKEN, env=cli_env(daemon, token=WRONG_TOKEN))
    assert code == 0  # --token wins over the variable


DOC = Path(__file__).resolve().parent.parent / "docs" / "control.md"


def documented_commands() -> list[str]:
    """The lines of every ```sh block that follows a `<!-- run by the tests -->` marker."""
    blocks = re.findall(r"<!-- run by the tests -->\n```sh\n(.*?)```", DOC.read_text(), flags=re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


async def test_the_documented_examples_run(daemon: Daemon) -> None:
    commands = documented_commands()
    assert any(c.startswith("lmwatch ") for c in commands) and any(c.startswith("curl ") for c in commands)
    env = {**cli_env(daemon), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for command in commands:
        command = command.replace("http://127.0.0.1:9234", daemon.url)
        if command.startswith("curl "):
            command = command.replace("curl -s", "curl -s --fail-with-body")
        proc = await asyncio.create_subprocess_shell(
            command, env={**os.environ, **env}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        out, err = await proc.communicate()
        assert proc.returncode == 0, f"{command}\n{out.decode()}\n{err.decode()}"
        if command.startswith("curl "):
            assert "error" not in json.loads(out)
