"""`lmwatch demo`: three simulated servers of different flavours and the daemon watching them.

The simulators run as separate processes (so the process sampler finds them, as it would LM Studio)
on fixed, documented ports; the generated config is written next to the demo's state so a user can
copy it while it runs. Ctrl-C stops everything and removes that temporary directory.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from lmwatch import event_loop
from lmwatch.admin_client import DEFAULT_URL, URL_ENV
from lmwatch.config import DEFAULT_PORT, load_config
from lmwatch.control_cli import usage_table
from lmwatch.logs import setup_logging
from lmwatch.redaction import Redactor

if TYPE_CHECKING:
    from lmwatch.daemon import Daemon

STARTUP_TIMEOUT_SECONDS = 15.0
ANSWER_TOKENS = 48
"""Answers of the demo's simulators end on their own after this many tokens (as a model's would), so
agents that ask for a large `max_tokens` (Claude Code asks for 32,000) get complete answers."""


@dataclass(frozen=True)
class DemoServer:
    name: str
    flavour: str
    models_file: str | None
    port_offset: int
    sim_args: tuple[str, ...] = ()
    backend: Mapping[str, object] = field(default_factory=dict)
    """Extra keys of its `backends:` entry."""


KEPT = "mistral-7b-instruct-v0.3"
"""The model studio-a keeps loaded: downloaded but not loaded when its simulator starts."""
SERVERS = (
    DemoServer(
        "studio-a",
        "0.4",
        None,
        0,
        ("--memory", "32GiB", "--load-seconds", "1"),
        {"keep_loaded": [KEPT], "gpu_memory": "32GiB"},
    ),
    DemoServer("studio-b", "0.3", "studio-b-models.yaml", 1),
    DemoServer("engine-c", "openai", "engine-c-models.yaml", 2),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"lmwatch's port (default {DEFAULT_PORT})")
    parser.add_argument(
        "--sim-port", type=int, default=12341, help="first simulator port; the others follow (default 12341)"
    )
    parser.add_argument("--fake-gpus", action="store_true", help="show two simulated NVIDIA GPUs (fake NVML)")
    parser.add_argument("--poll-interval", type=float, default=2.0, help="seconds between polls (default 2)")


DEMO_EMBEDDER = "text-embedding-nomic-embed-text-v1.5"
"""studio-b's embedding model, which embeds prompts for the demo's semantic cache."""


def demo_config(args: argparse.Namespace, state: Path) -> dict[str, object]:
    return {
        "server": {"host": "127.0.0.1", "port": args.port},
        "state_dir": str(state),
        "backends": [
            {
                "name": s.name,
                "url": f"http://127.0.0.1:{args.sim_port + s.port_offset}",
                "poll_interval": args.poll_interval,
                **s.backend,
            }
            for s in SERVERS
        ],
        "sampling": {"gpu": "simulated" if args.fake_gpus else "auto"},
        "cache": {"enabled": True, "semantic": {"enabled": True, "model": DEMO_EMBEDDER}},
    }


def _start_simulators(args: argparse.Namespace) -> list[subprocess.Popen[bytes]]:
    procs = []
    for server in SERVERS:
        command = [sys.executable, "-m", "lmwatch", "simulate", "--port", str(args.sim_port + server.port_offset)]
        command += ["--flavour", server.flavour, "--answer-tokens", str(ANSWER_TOKENS)]
        if server.models_file:
            command += ["--models", str(resources.files("lmwatch.demo") / server.models_file)]
        command += server.sim_args
        procs.append(subprocess.Popen(command))
    return procs


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"a simulator exited with code {proc.returncode}; is port {port} free?")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise SystemExit(f"simulator on port {port} did not start within {STARTUP_TIMEOUT_SECONDS:.0f} s")


def run(args: argparse.Namespace) -> int:
    state = Path(tempfile.mkdtemp(prefix="lmwatch-demo-"))
    try:
        return _run_in(args, state)
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _run_in(args: argparse.Namespace, state: Path) -> int:
    config_path = state / "config.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(args, state), sort_keys=False))
    loaded = load_config(config_path)
    redactor = Redactor()  # the daemon's, given to the log handler too
    setup_logging(redactor, loaded.config.logging.level, loaded.config.logging.format)
    procs = _start_simulators(args)
    try:
        for server, proc in zip(SERVERS, procs, strict=True):
            _wait_for_port(args.sim_port + server.port_offset, proc)
        from lmwatch.daemon import CannotListen, Daemon

        daemon = Daemon(loaded, redactor=redactor)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await daemon.start()
            await _show_cache_and_usage(daemon)
            _print_urls(daemon.url, config_path)
            await stop.wait()
            await daemon.stop()

        try:
            event_loop.run(main())
        except CannotListen as exc:
            print(f"lmwatch demo: error: {exc}; choose another --port", file=sys.stderr)
            return 1
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=10)
    return 0


def _shell_setup(url: str) -> str:
    """What a new shell needs for the README's examples: `lmwatch` and this Python (which has `openai`)
    on its PATH when the demo runs from a venv, and LMWATCH_URL when the demo is not on the default port."""
    activate = Path(sys.executable).parent / "activate"
    lines = [f"  . {activate}\n"] if activate.exists() else []
    if url != DEFAULT_URL:
        lines.append(f"  export {URL_ENV}={url}\n")
    return "".join(lines)


async def _show_cache_and_usage(daemon: Daemon) -> None:
    """The same deterministic request twice (a cache miss, then a hit), the question in other words
    (a semantic hit), then the usage table."""
    import aiohttp

    results = []
    async with aiohttp.ClientSession() as http:
        for question in ("What is a GPU?", "What is a GPU?", "what is a gpu"):
            body = {"model": "auto", "temperature": 0, "messages": [{"role": "user", "content": question}]}
            async with http.post(daemon.url + "/v1/chat/completions", json=body) as resp:
                await resp.read()
                similarity = resp.headers.get("X-LMWatch-Cache-Similarity")
                results.append(
                    f"{resp.headers.get('X-LMWatch-Cache')} ({resp.headers.get('X-LMWatch-Route')}"
                    + (f", similarity {similarity})" if similarity else ")")
                )
            if daemon.services.cache is not None:
                await daemon.services.cache.settled()
    print(f"\nthe same temperature-0 request twice, X-LMWatch-Cache: {results[0]} then {results[1]}")
    print(f"the same question in other words (the semantic cache): {results[2]}")
    if daemon.services.usage is not None:
        report = await daemon.services.usage.report(time.time() - 3600, "model")
        print("lmwatch usage --by model:\n" + usage_table({"by": "model", "since_text": "1h", **report}))


def _print_urls(url: str, config_path: Path) -> None:
    print(
        f"""
lmwatch demo is running (config: {config_path}). Open:
  {url}/             the operator console (live fleet view)
  {url}/status       fleet snapshot (JSON)
  {url}/metrics      Prometheus metrics
  {url}/v1/models    models across the fleet (OpenAI-compatible)
Next steps, in a new shell in this directory:
{_shell_setup(url)}  lmwatch status
  lmwatch top
  lmwatch fit {KEPT}        # studio-a keeps it loaded (keep_loaded)
  lmwatch route --explain "Fix this Python traceback"
  lmwatch usage --by model
  curl -s {url}/v1/chat/completions -H 'Content-Type: application/json' \\
       -d '{{"model": "auto", "messages": [{{"role": "user", "content": "Write a Python function to sort a list"}}]}}'
Every example in README.md works against this demo. Stop with Ctrl-C.
""",
        flush=True,
    )
