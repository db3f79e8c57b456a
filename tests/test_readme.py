"""The README's examples run. Each example block is preceded by `<!-- example: KIND -->`:

- `setup`: what a new shell runs first (activate the venv `make demo` made);
- `run`: executed (bash, or Python through the venv's `python`) as a user would after `make demo`: against
  `lmwatch demo` (on free ports: `http://127.0.0.1:9234` and LMWATCH_URL point at it), each in a new
  shell that has run the `setup` block, with an environment that has no virtualenv on its PATH;
- `simulate`: each `lmwatch simulate` line is started (on a free port) and must come up;
- `config`: parsed as a config;
- `install`: every command must be in `docs/operations.md`'s install block, which
  `tests/test_systemd.py` executes in a scratch root;
- `promtool`: run from the repository root;
- `make`: every target named exists in the Makefile (CI itself runs `make test`).

An example block without a marker fails the test, so no example goes unchecked.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.simulator import SimSettings, start_simulator
from tests.demos import running_demo
from tests.ports import free_port

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
DOC_URL = "http://127.0.0.1:9234"
BLOCK = re.compile(r"(?:<!-- example: (\w+) -->\n)?( *)```(sh|python|yaml)\n(.*?)\n\2```", re.DOTALL)
EXAMPLES = [(m.group(1), m.group(3), m.group(4)) for m in BLOCK.finditer(README)]


def examples(kind: str) -> list[tuple[str, str]]:
    return [(lang, _dedent(code)) for k, lang, code in EXAMPLES if k == kind]


def _dedent(code: str) -> str:
    lines = code.splitlines()
    indent = min((len(line) - len(line.lstrip()) for line in lines if line.strip()), default=0)
    return "\n".join(line[indent:] for line in lines)


def commands(code: str) -> list[str]:
    """Shell commands of a block: comments dropped, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.split("  #")[0].strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def test_every_example_is_checked() -> None:
    unmarked = [code.splitlines()[0] for kind, _, code in EXAMPLES if kind is None]
    assert not unmarked, f"README examples without an <!-- example: KIND --> marker: {unmarked}"
    assert {kind for kind, _, _ in EXAMPLES} <= {"setup", "run", "simulate", "config", "install", "promtool", "make"}


def new_shell_env(url: str) -> dict[str, str]:
    """A login shell's environment: no virtualenv on PATH, no LMWATCH_* but the demo's URL (the demo prints
    that `export` when it is not on the default port, as here)."""
    venv_bins = {str(Path(sys.executable).parent), os.environ.get("VIRTUAL_ENV", "/nonexistent") + "/bin"}
    path = ":".join(p for p in os.environ["PATH"].split(":") if p not in venv_bins)
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "LC_ALL", "TMPDIR", "USER")}
    return {**keep, "PATH": path, "LMWATCH_URL": url}


async def test_run_examples_work_as_written_after_make_demo() -> None:
    assert (REPO / ".venv" / "bin" / "activate").exists(), "the README's setup needs .venv: run `make demo` once"
    [(_, setup)] = examples("setup")
    async with running_demo() as demo:
        env = new_shell_env(demo.url)
        ran = 0
        for lang, code in examples("run"):
            code = code.replace(DOC_URL, demo.url)
            # One shell per command: `set -e` ignores a failure before the last `&&` of a line.
            for body in commands(code) if lang == "sh" else [f"python -c {shlex.quote(code)}"]:
                proc = await asyncio.create_subprocess_exec(
                    *("bash", "-euo", "pipefail", "-c", f"{setup}\n{body}"),
                    env=env,
                    cwd=REPO,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
                assert proc.returncode == 0, f"{body}\n--- stdout\n{out.decode()}\n--- stderr\n{err.decode()}"
                assert out.strip(), f"no output from:\n{body}"
                ran += 1
    assert ran >= 8


async def test_simulate_examples_start() -> None:
    lines = [c for _, code in examples("simulate") for c in commands(code)]
    assert lines
    for line in lines:
        argv = shlex.split(re.sub(r"--port \d+", f"--port {free_port()}", line))
        assert argv[:2] == ["lmwatch", "simulate"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "lmwatch", *argv[1:], stdout=asyncio.subprocess.PIPE
        )
        try:
            assert proc.stdout is not None
            banner = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
            assert b"listening on http://127.0.0.1:" in banner, (line, banner)
        finally:
            proc.terminate()
            await proc.wait()


def test_config_examples_parse() -> None:
    blocks = examples("config")
    assert blocks
    for _, code in blocks:
        assert parse_config(code, env={}).config.backends


def test_install_example_is_the_tested_one() -> None:
    operations = (REPO / "docs" / "operations.md").read_text()
    installed = operations[operations.index("## Install") :]
    [(_, code)] = examples("install")
    for command in commands(code):
        assert command in installed, f"{command!r} is not in docs/operations.md's tested install steps"


def test_promtool_examples_run() -> None:
    import subprocess

    for _, code in examples("promtool"):
        for command in commands(code):
            result = subprocess.run(shlex.split(command), cwd=REPO, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stdout + result.stderr


def test_make_targets_exist() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, flags=re.MULTILINE))
    for _, code in examples("make"):
        for command in commands(code):
            words = command.split()
            if words[0] == "make":
                assert words[1] in targets, command


async def test_readme_lists_every_exported_metric() -> None:
    import aiohttp
    from prometheus_client.parser import text_string_to_metric_families

    sim = await start_simulator(SimSettings(), port=0)
    text = (
        "server: {port: 0}\n"
        f'backends: [{{name: gpu-box, url: "{sim.url}"}},\n'
        '           {name: gone, url: "http://127.0.0.1:9", retry_attempts: 1}]\n'
        "sampling: {gpu: simulated}\n"
    )
    try:
        async with running_daemon(parse_config(text, env={})) as running, aiohttp.ClientSession() as http:
            body = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": True}
            async with http.post(running.url + "/v1/chat/completions", json=body) as resp:
                await resp.read()
            async with http.get(running.url + "/metrics") as resp:
                exposition = await resp.text()
    finally:
        await sim.stop()
    names = set()
    for family in text_string_to_metric_families(exposition):
        suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
        names.add(family.name + suffix)
    listed = set(re.findall(r"`(lmwatch_\w+)`", README))
    for name in list(listed):  # rows like `lmwatch_host_memory_total_bytes`, `…_available_bytes`
        stem = name.rsplit("_", 2)[0]
        listed |= {f"{stem}_{m.group(1)}" for m in re.finditer(r"`…_(\w+)`", README)}
    missing = sorted(n for n in names if n not in listed)
    assert not missing, f"exported but not in the README: {missing}"
