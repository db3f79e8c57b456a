"""Two versions of lmwatch side by side on one zero-delay simulator: CPU per proxied request.

    .venv/bin/python bench/compare.py OLD NEW [SCRIPT ...] [--rounds 3] [--seconds 4] [--connections 32]

OLD and NEW are directories holding an `lmwatch` package (`git archive <commit> lmwatch | tar -x
-C /tmp/old`), put first on each daemon's PYTHONPATH; `-` is the installed one. Both daemons run
at once and wrk alternates between them, so a machine whose load drifts (other work on its CPUs)
weighs on both alike. Per script (bench/chat.lua: an explicit model id; bench/auto.lua: `auto`),
the medians over the rounds of: the daemon's CPU per request (utime + stime from /proc), the
simulator's, their ratio and the share of the simulator's own throughput (wrk on it directly in
the same round); then the added p50 at concurrency 1 (through minus direct, in turns). Run it from
bench/: from the repository's root `-m lmwatch` would find the working tree's package first.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import run


@contextmanager
def daemon(pythonpath: str, sim_port: int) -> Iterator[tuple[str, int]]:
    """A daemon routing to the simulator, with `pythonpath` first on its path (`-`: as installed)."""
    port = run.free_port()
    with tempfile.TemporaryDirectory(prefix="lmwatch-compare-") as tmp:
        config = Path(tmp) / "config.yaml"
        run.daemon_config(config, port, sim_port)
        env = dict(os.environ)
        if pythonpath != "-":
            env["PYTHONPATH"] = pythonpath
        args = [sys.executable, "-m", "lmwatch", "run", "--config", str(config)]
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run.wait_http(f"http://127.0.0.1:{port}/readyz")
            yield f"http://127.0.0.1:{port}", proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("scripts", nargs="*", default=["chat.lua", "auto.lua"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    sim_port = run.free_port()
    sim_args = [sys.executable, "-m", "lmwatch", "simulate", "--port", str(sim_port), "--model", run.MODEL]
    path = "/v1/chat/completions"
    load = os.getloadavg()[0]
    with (
        run.process([*sim_args, "--parallel", "64"], f"http://127.0.0.1:{sim_port}/v1/models") as sim,
        daemon(args.old, sim_port) as old,
        daemon(args.new, sim_port) as new,
    ):
        for url, _ in (old, new):
            run.wrk(url + path, "chat.lua", 4, 2)  # warm up: connections, caches, the first poll
        direct = f"http://127.0.0.1:{sim_port}"
        for script in args.scripts:
            runs: dict[str, list[tuple[float, float, float]]] = {"old": [], "new": []}
            for _ in range(args.rounds):
                alone = run.wrk(direct + path, script, args.connections, args.seconds).rps
                for name, (url, pid) in (("old", old), ("new", new)):
                    result, (sim_cpu, lm_cpu) = run.wrk_cpu(
                        url + path, script, args.connections, args.seconds, [sim.pid, pid]
                    )
                    runs[name].append((lm_cpu * 1e6, sim_cpu * 1e6, result.rps / alone))
            line = [script]
            for name, figures in runs.items():
                lm, upstream, share = (statistics.median(f[i] for f in figures) for i in range(3))
                line.append(
                    f"{name}: {lm:.0f} us vs the simulator's {upstream:.0f} us ({lm / upstream:.2f}x),"
                    f" {share:.0%} of direct throughput"
                )
            print(" | ".join(line), flush=True)
        added: dict[str, list[float]] = {"old": [], "new": []}
        for _ in range(args.rounds):  # added p50 at concurrency 1: through minus direct, measured in turn
            alone = run.wrk(direct + path, "chat.lua", 1, args.seconds).p50
            for name, (url, _) in (("old", old), ("new", new)):
                added[name].append(run.wrk(url + path, "chat.lua", 1, args.seconds).p50 - alone)
        print(
            " | ".join(
                ["added p50 at concurrency 1", *(f"{n}: {statistics.median(a) * 1e3:.3f} ms" for n, a in added.items())]
            )
        )
    print(f"load average {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
