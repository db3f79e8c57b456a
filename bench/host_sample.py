"""CPU time of one whole host sample: the host sampler plus the process sampler.

Starts one local backend in a separate process (the LM Studio simulator, or any Python HTTP server
when the simulator is not installed), registers it with one remote backend next to it, and measures
`time.process_time()` around each sample, after a warm-up. The target is under 20 ms of CPU.

    .venv/bin/python bench/host_sample.py [--runs 200]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

from lmwatch.config import BackendConfig
from lmwatch.registry import Registry
from lmwatch.samplers.host import HostSampler
from lmwatch.samplers.process import ProcessSampler

TARGET_MS = 20.0


@contextlib.contextmanager
def local_backend() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    if importlib.util.find_spec("lmwatch.simulator.command") and importlib.util.find_spec("lmwatch.cli"):
        command = [sys.executable, "-m", "lmwatch", "simulate", "--port", str(port)]
    else:
        command = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the backend did not start: {' '.join(command)}")
            time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=10)


def measure(step: Callable[[], object], runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """CPU and wall milliseconds of each of `runs` calls, after `warmup` unmeasured ones."""
    for _ in range(warmup):
        step()
    cpu: list[float] = []
    wall: list[float] = []
    for _ in range(runs):
        c, w = time.process_time(), time.perf_counter()
        step()
        cpu.append((time.process_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return cpu, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    with local_backend() as port:
        registry = Registry()
        registry.configure_backends(
            [
                BackendConfig(name="local", url=f"http://127.0.0.1:{port}"),
                BackendConfig(name="remote", url="http://192.0.2.10:1234"),
            ]
        )
        snapshot = registry.snapshot()
        host = HostSampler()
        process = ProcessSampler()  # the default 30 s re-check: steady samples use the cached owner
        scanning = ProcessSampler(rescan_interval=1e-9)  # looks the port up in the socket table every time
        found = process.sample(snapshot).backends[0]
        if not found.visible:
            raise SystemExit(f"the local backend's process was not found: {found.visibility}")

        def whole() -> None:
            host.sample(snapshot)
            process.sample(snapshot)

        rows = [
            ("host + process (one whole host sample)", whole),
            ("host sampler alone", lambda: host.sample(snapshot)),
            ("process sampler, cached owner", lambda: process.sample(snapshot)),
            ("process sampler, socket-table scan", lambda: scanning.sample(snapshot)),
        ]
        print(f"{args.runs} runs after {args.warmup} warm-up; backend pid {found.pid} ({found.name})")
        print(f"{'step':<42} {'cpu mean':>9} {'cpu p50':>8} {'cpu max':>8} {'wall p50':>9}   (ms)")
        results = {}
        for label, step in rows:
            cpu, wall = measure(step, args.runs, args.warmup)
            results[label] = statistics.fmean(cpu)
            print(
                f"{label:<42} {statistics.fmean(cpu):>9.3f} {statistics.median(cpu):>8.3f} "
                f"{max(cpu):>8.3f} {statistics.median(wall):>9.3f}"
            )
    whole_ms = results[rows[0][0]]
    verdict = "OK" if whole_ms < TARGET_MS else "OVER"
    print(f"\none whole host sample: {whole_ms:.3f} ms CPU (target < {TARGET_MS:g} ms): {verdict}")
    return 0 if whole_ms < TARGET_MS else 1


if __name__ == "__main__":
    raise SystemExit(main())
