"""The routing benchmark: the simulator direct vs through lmwatch, in the same run, on loopback.

Starts the LM Studio simulator with zero delay (`lmwatch simulate`, its own process) and a daemon
routing to it (`lmwatch run`, its own process), then measures with `wrk` (Debian's C load
generator) and a small raw-socket client for streams:

- added latency: p50 at concurrency 1 through lmwatch minus p50 direct (target <= 0.3 ms);
- throughput: requests/s at concurrency 32 through lmwatch as a share of direct (target >= 25%);
- streaming first-byte overhead: p50 time to the first SSE event, through minus direct (<= 1 ms);
- daemon RSS: the peak resident memory of the lmwatch process during the load (<= 80 MB).

    .venv/bin/python bench/run.py [--seconds 5] [--rounds 3] [--write bench/RESULTS.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODEL = "bench-llm"
STREAM_BODY = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]})
TARGETS = {"latency_ms": 0.3, "share": 0.25, "first_byte_ms": 1.0, "rss_mb": 80.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, deadline: float = 30.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer within {deadline:.0f} s")


@contextmanager
def process(args: list[str], ready_url: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(ready_url)
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=15)


# --- wrk -----------------------------------------------------------------------------------------


def _seconds(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", value).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


@dataclass
class WrkResult:
    rps: float
    p50: float
    p99: float


def wrk(url: str, script: str, connections: int, seconds: int) -> WrkResult:
    threads = min(2, connections)
    out = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(HERE / script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99)


# --- streams: time to the first event ------------------------------------------------------------


async def first_event_times(port: int, path: str, count: int) -> list[float]:
    """Sequential streamed requests on one keep-alive connection; seconds to the first `data:`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = STREAM_BODY.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    times = []
    for _ in range(count):
        started = time.perf_counter()
        writer.write(request)
        seen = b""
        while b"data:" not in seen:
            seen += await reader.read(65536)
        times.append(time.perf_counter() - started)
        while not seen.endswith(b"0\r\n\r\n"):  # drain to the end of the chunked body
            seen += await reader.read(65536)
    writer.close()
    return times


def stream_p50(port: int, count: int) -> float:
    return statistics.median(asyncio.run(first_event_times(port, "/v1/chat/completions", count)))


# --- memory --------------------------------------------------------------------------------------


class PeakRss:
    """Samples a process's VmRSS every 100 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self._stop.wait(0.1)

    def now(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- the run -------------------------------------------------------------------------------------


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    mem = next(
        line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    import aiohttp

    return (
        f"{os.cpu_count()} CPUs ({model}), {int(mem) // 1024 // 1024 + 1} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, stdlib asyncio event loop"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/through runs per figure")
    parser.add_argument("--streams", type=int, default=1000, help="sequential streams per round and side")
    parser.add_argument("--write", type=Path, help="write the results table (markdown) to this file")
    args = parser.parse_args()

    sim_port, lm_port = free_port(), free_port()
    sim_args = [
        sys.executable,
        "-m",
        "lmwatch",
        "simulate",
        "--port",
        str(sim_port),
        "--model",
        MODEL,
        "--parallel",
        "64",
    ]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write(
            f"server: {{port: {lm_port}}}\n"
            f"backends: [{{name: sim, url: 'http://127.0.0.1:{sim_port}', poll_interval: 5}}]\n"
            "logging: {level: warning}\n"
        )
    direct, through = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{lm_port}"
    path = "/v1/chat/completions"
    with (
        process(sim_args, direct + "/v1/models"),
        process([sys.executable, "-m", "lmwatch", "run", "--config", cfg.name], through + "/readyz") as daemon,
    ):
        for url in (direct, through):  # warm up: connections, caches, the first poll
            wrk(url + path, "chat.lua", 4, 2)
        rows: dict[str, tuple[float, float]] = {}

        def paired(script: str, connections: int) -> tuple[WrkResult, WrkResult]:
            """Direct and through, alternating for `rounds` rounds; the median of each figure."""
            runs = [
                (
                    wrk(direct + path, script, connections, args.seconds),
                    wrk(through + path, script, connections, args.seconds),
                )
                for _ in range(args.rounds)
            ]
            return tuple(  # type: ignore[return-value]
                WrkResult(*(statistics.median(getattr(r[side], f) for r in runs) for f in ("rps", "p50", "p99")))
                for side in (0, 1)
            )

        c1 = paired("chat.lua", 1)
        rows["p50 latency, concurrency 1 (ms)"] = (c1[0].p50 * 1e3, c1[1].p50 * 1e3)
        rows["p99 latency, concurrency 1 (ms)"] = (c1[0].p99 * 1e3, c1[1].p99 * 1e3)
        auto = paired("auto.lua", 1)
        rows["p50 latency, model=auto, concurrency 1 (ms)"] = (auto[0].p50 * 1e3, auto[1].p50 * 1e3)
        with PeakRss(daemon.pid) as rss:
            idle_rss = rss.now()
            c32 = paired("chat.lua", 32)
        rows["requests/s, concurrency 32"] = (c32[0].rps, c32[1].rps)
        rows["p50 latency, concurrency 32 (ms)"] = (c32[0].p50 * 1e3, c32[1].p50 * 1e3)
        streams = [(stream_p50(sim_port, args.streams), stream_p50(lm_port, args.streams)) for _ in range(args.rounds)]
        stream_direct = statistics.median(d for d, _ in streams)
        stream_through = statistics.median(t for _, t in streams)
        rows["p50 time to first stream event (ms)"] = (stream_direct * 1e3, stream_through * 1e3)

    added = (c1[1].p50 - c1[0].p50) * 1e3
    share = c32[1].rps / c32[0].rps
    first_byte = (stream_through - stream_direct) * 1e3
    peak_mb = rss.peak / 2**20
    checks = [
        (
            "added latency p50 at concurrency 1",
            f"{added:.3f} ms",
            f"<= {TARGETS['latency_ms']} ms",
            added <= TARGETS["latency_ms"],
        ),
        (
            "requests/s at concurrency 32, share of direct",
            f"{share:.0%}",
            f">= {TARGETS['share']:.0%}",
            share >= TARGETS["share"],
        ),
        (
            "streaming first-event overhead p50",
            f"{first_byte:.3f} ms",
            f"<= {TARGETS['first_byte_ms']} ms",
            first_byte <= TARGETS["first_byte_ms"],
        ),
        (
            "daemon RSS under load (peak)",
            f"{peak_mb:.1f} MB (idle {idle_rss / 2**20:.1f} MB)",
            f"<= {TARGETS['rss_mb']:.0f} MB",
            peak_mb <= TARGETS["rss_mb"],
        ),
    ]
    lines = [
        "# Routing benchmark: the simulator direct vs through lmwatch",
        "",
        "Made by `make bench` (`.venv/bin/python bench/run.py --write bench/RESULTS.md`); see bench/run.py.",
        "",
        f"Machine: {machine()}.",
        f"Run: {time.strftime('%Y-%m-%d %H:%M %Z')}; each figure is the median of {args.rounds} alternating rounds"
        f" (wrk {args.seconds} s per run, {args.streams} sequential streams per run);"
        " simulator with zero delay, lmwatch and simulator in separate processes, everything on loopback"
        " (wrk, lmwatch and the simulator share the CPUs).",
        "",
        "| target | measured | goal | met |",
        "|---|---|---|---|",
        *(f"| {name} | {value} | {goal} | {'yes' if ok else 'NO'} |" for name, value, goal, ok in checks),
        "",
        "| figure | direct | through lmwatch |",
        "|---|---|---|",
        *(
            f"| {name} | {d:,.3f} | {t:,.3f} |" if "ms" in name else f"| {name} | {d:,.0f} | {t:,.0f} |"
            for name, (d, t) in rows.items()
        ),
    ]
    print("\n".join(lines))
    if args.write:
        args.write.write_text("\n".join(lines) + "\n")
    os.unlink(cfg.name)


if __name__ == "__main__":
    main()
