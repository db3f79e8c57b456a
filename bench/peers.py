"""lmwatch beside its peers: LiteLLM's proxy (PyPI) and Portkey's gateway (npm), one worker each.

All three route to the same zero-delay simulator in the same run, measured the same way as
bench/run.py: added p50 at concurrency 1, requests/s at concurrency 32, CPU per request from /proc
(the proxy and its child processes), time to the first streamed event, and peak RSS.

    .venv/bin/python bench/peers.py [--seconds 5] [--rounds 3] [--write bench/PEERS.md]

runs the checkout's (pure Python) lmwatch; `make bench-peers` runs the compiled build, as `make bench`.

The peers are installed on first use under ~/.cache/lmwatch-peers (a venv with `litellm[proxy]`,
an npm project with `@portkey-ai/gateway`); nothing of theirs is committed or run by `make test`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
from run import HERE, LMWATCH, MODEL, PeakRss, free_port, machine, process, stream_p50, wrk

CACHE = Path.home() / ".cache" / "lmwatch-peers"
LITELLM_KEY = "sk-" + "5e" * 32
"""LiteLLM's proxy refuses to start without a master key; a fixed one for the loopback run."""


@dataclass
class Peer:
    name: str
    version: str
    start: Callable[[int, int, Path], list[str]]
    """(its port, the simulator's port, a scratch dir) -> the command line."""
    ready: str
    headers: Callable[[int], dict[str, str]]


def litellm_setup() -> str:
    venv = CACHE / "litellm"
    if not (venv / "bin" / "litellm").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([venv / "bin" / "pip", "install", "-q", "litellm[proxy]"], check=True)
    out = subprocess.run([venv / "bin" / "pip", "show", "litellm"], capture_output=True, text=True, check=True)
    return next(line.split()[1] for line in out.stdout.splitlines() if line.startswith("Version:"))


def litellm_command(port: int, sim_port: int, tmp: Path) -> list[str]:
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        f"  - model_name: {MODEL}\n"
        "    litellm_params:\n"
        f"      model: openai/{MODEL}\n"
        f"      api_base: http://127.0.0.1:{sim_port}/v1\n"
        "      api_key: none\n"
        "litellm_settings: {telemetry: false, drop_params: true}\n"
        f"general_settings: {{master_key: {LITELLM_KEY}}}\n"
    )
    litellm = CACHE / "litellm" / "bin" / "litellm"
    return [str(litellm), "--config", str(config), "--port", str(port), "--num_workers", "1"]


def portkey_setup() -> str:
    project = CACHE / "portkey"
    package = project / "node_modules" / "@portkey-ai" / "gateway"
    if not package.exists():
        project.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "init", "-y"], cwd=project, check=True, capture_output=True)
        subprocess.run(["npm", "install", "-q", "@portkey-ai/gateway"], cwd=project, check=True)
    import json

    return str(json.loads((package / "package.json").read_text())["version"])


def portkey_command(port: int, sim_port: int, tmp: Path) -> list[str]:
    start = CACHE / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    return ["node", str(start), f"--port={port}", "--headless"]


def lmwatch_command(port: int, sim_port: int, tmp: Path) -> list[str]:
    config = tmp / "lmwatch.yaml"
    config.write_text(
        f"server: {{port: {port}}}\n"
        f"backends: [{{name: sim, url: 'http://127.0.0.1:{sim_port}', poll_interval: 5}}]\n"
        "logging: {level: warning}\n"
    )
    return [*LMWATCH, "run", "--config", str(config)]


def lmwatch_version() -> str:
    from lmwatch import __version__

    return __version__


PEERS = {
    "lmwatch": (lmwatch_version, lambda: Peer("lmwatch", "", lmwatch_command, "/readyz", lambda _: {})),
    "litellm": (
        litellm_setup,
        lambda: Peer(
            "LiteLLM proxy",
            "",
            litellm_command,
            "/health/liveliness",
            lambda _: {"Authorization": f"Bearer {LITELLM_KEY}"},
        ),
    ),
    "portkey": (
        portkey_setup,
        lambda: Peer(
            "Portkey gateway",
            "",
            portkey_command,
            "/",
            lambda sim_port: {
                "x-portkey-provider": "openai",
                "x-portkey-custom-host": f"http://127.0.0.1:{sim_port}/v1",
                "Authorization": "Bearer x",
            },
        ),
    ),
}


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (LiteLLM's worker, node's helpers)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def lua_with_headers(tmp: Path, name: str, headers: dict[str, str], stream: bool = False) -> str:
    script = tmp / f"{name}.lua"
    body = f'{{"model":"{MODEL}","messages":[{{"role":"user","content":"hello"}}]}}'
    lines = ['wrk.method = "POST"', f"wrk.body = '{body}'", 'wrk.headers["Content-Type"] = "application/json"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    return str(script)


@contextmanager
def started(peer: Peer, sim_port: int, tmp: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    port = free_port()
    env = {**os.environ, "LITELLM_LOG": "ERROR", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NODE_ENV": "production"}
    proc = subprocess.Popen(
        peer.start(port, sim_port, tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        from run import wait_http

        wait_http(f"http://127.0.0.1:{port}{peer.ready}", deadline=120)
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--streams", type=int, default=300)
    parser.add_argument("--only", nargs="*", choices=list(PEERS), default=list(PEERS))
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    peers = []
    for key in args.only:
        setup, make = PEERS[key]
        version = setup()
        peer = make()
        peer.version = version
        peers.append(peer)

    sim_port = free_port()
    sim_args = [
        *LMWATCH,
        "simulate",
        "--port",
        str(sim_port),
        "--model",
        MODEL,
        "--parallel",
        "64",
    ]
    rows = []
    with tempfile.TemporaryDirectory() as scratch, process(sim_args, f"http://127.0.0.1:{sim_port}/v1/models") as sim:
        tmp = Path(scratch)
        direct_script = str(HERE / "chat.lua")
        direct = f"http://127.0.0.1:{sim_port}/v1/chat/completions"
        wrk(direct, direct_script, 4, 2)
        for peer in peers:
            script = lua_with_headers(tmp, peer.name.split()[0].lower(), peer.headers(sim_port))
            with started(peer, sim_port, tmp) as (port, proc):
                url = f"http://127.0.0.1:{port}/v1/chat/completions"
                wrk(url, script, 4, 2)  # warm up
                c1, c1_direct, c32, c32_direct, cpu, sim_cpu, first, first_direct = [], [], [], [], [], [], [], []
                with PeakRss(proc.pid) as rss:
                    for _ in range(args.rounds):
                        c1_direct.append(wrk(direct, direct_script, 1, args.seconds).p50)
                        c1.append(wrk(url, script, 1, args.seconds).p50)
                        c32_direct.append(wrk(direct, direct_script, 32, args.seconds).rps)
                        before, sim_before = tree_cpu(proc.pid), tree_cpu(sim.pid)
                        run32 = wrk(url, script, 32, args.seconds)
                        cpu.append((tree_cpu(proc.pid) - before) / max(run32.requests, 1))
                        sim_cpu.append((tree_cpu(sim.pid) - sim_before) / max(run32.requests, 1))
                        c32.append(run32.rps)
                        try:
                            first_direct.append(stream_p50(sim_port, args.streams))
                            first.append(stream_p50(port, args.streams, peer.headers(sim_port)))
                        except (OSError, ValueError):
                            pass  # a peer whose streaming fails: reported as such
                m = statistics.median
                rows.append(
                    (
                        f"{peer.name} {peer.version}",
                        (m(c1) - m(c1_direct)) * 1e3,
                        m(c32) / m(c32_direct),
                        m(cpu) * 1e6,
                        # per run, as bench/run.py takes it; a run whose upstream CPU is below a clock tick: left out
                        m([c / s for c, s in zip(cpu, sim_cpu, strict=True) if s] or [float("nan")]),
                        (m(first) - m(first_direct)) * 1e3 if first else None,
                        rss.peak / 2**20,
                    )
                )
    lines = [
        "# lmwatch beside its peers",
        "",
        "Made by `make bench-peers` (bench/peers.py, on the compiled build); see bench/peers.py.",
        "",
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Machine: {machine()}.",
        f"Medians of {args.rounds} rounds, wrk {args.seconds} s per run, the same zero-delay simulator behind each"
        " proxy, one worker each, everything on loopback; x upstream's is the median of each run's proxy-to-simulator"
        " CPU ratio.",
        "",
        "| proxy | added p50, concurrency 1 | requests/s at 32, share of direct | CPU per request"
        " | x upstream's | added first stream event | peak RSS |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, added, share, cpu_us, ratio, first_ms, rss_mb in rows:
        first_text = f"{first_ms:.2f} ms" if first_ms is not None else "failed"
        lines.append(
            f"| {name} | {added:.2f} ms | {share:.1%} | {cpu_us:,.0f} us | {ratio:.2f}x | {first_text}"
            f" | {rss_mb:.0f} MB |"
        )
    print("\n".join(lines))
    if args.write:
        args.write.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
