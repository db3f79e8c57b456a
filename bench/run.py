"""The routing benchmark: the simulator direct vs through lmwatch, in the same run, on loopback.

Starts the LM Studio simulator with zero delay (`lmwatch simulate`, its own process) and a daemon
routing to it (`lmwatch run`, its own process), then measures with `wrk` (Debian's C load
generator) and a small raw-socket client for streams:

- added latency: p50 at concurrency 1 through lmwatch minus p50 direct (target <= 0.2 ms);
- throughput: requests/s at concurrency 32 through lmwatch as a share of direct (target >= 60%);
- streaming first-byte overhead: p50 time to the first SSE event, through minus direct (<= 1 ms);
- daemon RSS: the peak resident memory of the lmwatch process during the load (<= 80 MB);
- CPU per proxied request: lmwatch's CPU time (utime + stime from /proc, the figure least sensitive
  to a noisy machine) per request at concurrency 32, as a multiple of the simulator's own (<= 1.3x);
- response cache (a second daemon with `cache: {enabled: true}`, SQLite): a miss's added p50 at
  concurrency 1 against the daemon without a cache, on new temperature-0 requests (<= 0.1 ms), and
  a hit's p50 on one request repeated (<= 1 ms); `--cache-only` measures only these;
- scrape stall: with a fleet of N simulated backends (one process, bench/fleet.py) polled every
  second, the /v1 p99 at concurrency 1 while /metrics is scraped once a second, as a multiple of
  the p99 without scrapes (<= 2x).

    .venv/bin/python bench/run.py [--seconds 5] [--rounds 3] [--fleet 300] [--write bench/RESULTS.md] [--cache-only]

measures the lmwatch on the path: the checkout's (pure Python) this way; `make bench` sets PYTHONPATH
to the compiled build (`make compiled`), the one the systemd install steps make.

`--write` adds the run at the top of the file's history; earlier runs stay below it.
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

import gcpauses

HERE = Path(__file__).resolve().parent
MODEL = "bench-llm"
STREAM_BODY = json.dumps({"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "hello"}]})
TARGETS = {
    "latency_ms": 0.2,
    "share": 0.60,
    "first_byte_ms": 1.0,
    "rss_mb": 80.0,
    "cpu_ratio": 1.3,
    "stall": 2.0,
    "poll_ms": 0.3,
}
CACHE_TARGETS = {"miss_ms": 0.1, "hit_ms": 1.0}
LMWATCH = (sys.executable, "-P", "-m", "lmwatch")
"""The daemon and the simulator: -P, so the lmwatch on the path runs (`make bench`: the compiled build
under build/compiled/lib, by PYTHONPATH), not the checkout's (the working directory's) one."""
TITLE = "# Routing benchmark: the simulator direct vs through lmwatch"


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
    requests: int = 0


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
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return WrkResult(rps, p50, p99, requests)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk_cpu(url: str, script: str, connections: int, seconds: int, pids: list[int]) -> tuple[WrkResult, list[float]]:
    """A wrk run and each process's CPU seconds per request during it."""
    before = [cpu_seconds(pid) for pid in pids]
    result = wrk(url, script, connections, seconds)
    return result, [(cpu_seconds(pid) - b) / max(result.requests, 1) for pid, b in zip(pids, before, strict=True)]


# --- the response cache --------------------------------------------------------------------------

Check = tuple[str, str, str, bool]
Rows = dict[str, tuple[float, float]]


def daemon_config(path: Path, port: int, sim_port: int, extra: str = "") -> None:
    path.write_text(
        f"server: {{port: {port}}}\n"
        f"backends: [{{name: sim, url: 'http://127.0.0.1:{sim_port}', poll_interval: 5}}]\n"
        "logging: {level: warning}\n" + extra
    )


@contextmanager
def cached_daemon(sim_port: int) -> Iterator[tuple[str, int]]:
    """A second daemon on the same simulator, with the response cache on (SQLite in a scratch state dir):
    its URL and process id."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="lmwatch-bench-cache-") as state:
        config = Path(state) / "config.yaml"
        daemon_config(config, port, sim_port, f"state_dir: {state}\ncache: {{enabled: true}}\n")
        url = f"http://127.0.0.1:{port}"
        with process([*LMWATCH, "run", "--config", str(config)], url + "/readyz") as daemon:
            yield url, daemon.pid


def cache_figures(
    direct: str, daemons: tuple[tuple[str, int], tuple[str, int]], rounds: int, seconds: int
) -> tuple[list[Check], Rows]:
    """A miss's added latency (new deterministic requests, through the cached daemon vs through the
    one without a cache: the median of each round's difference) and a hit's latency (one request
    repeated), at concurrency 1, alternating; beside the latency, each daemon's CPU per miss request
    (from /proc: the figure a busy machine disturbs least)."""
    path = "/v1/chat/completions"
    (through, through_pid), (cached, cached_pid) = daemons  # (URL, process id) without and with the cache
    wrk(cached + path, "cache_hit.lua", 1, 1)  # stores the answer the hit runs get
    runs, cpu = [], []
    for _ in range(rounds):
        plain_run, (plain_cpu,) = wrk_cpu(through + path, "cache_miss.lua", 1, seconds, [through_pid])
        miss_run, (miss_cpu,) = wrk_cpu(cached + path, "cache_miss.lua", 1, seconds, [cached_pid])
        cpu.append((plain_cpu, miss_cpu))
        runs.append(
            (
                plain_run.p50,
                miss_run.p50,
                wrk(direct + path, "cache_hit.lua", 1, seconds).p50,
                wrk(through + path, "cache_hit.lua", 1, seconds).p50,
                wrk(cached + path, "cache_hit.lua", 1, seconds).p50,
            )
        )
    plain, miss, alone, proxied, hit = (statistics.median(r[i] for r in runs) * 1e3 for i in range(5))
    added = statistics.median(r[1] - r[0] for r in runs) * 1e3  # paired by round: the machine's drift cancels
    checks = [
        (
            "cache miss: added latency p50 at concurrency 1 (vs no cache)",
            f"{added:.3f} ms",
            f"<= {CACHE_TARGETS['miss_ms']} ms",
            added <= CACHE_TARGETS["miss_ms"],
        ),
        (
            "cache hit: latency p50 at concurrency 1",
            f"{hit:.3f} ms",
            f"<= {CACHE_TARGETS['hit_ms']} ms",
            hit <= CACHE_TARGETS["hit_ms"],
        ),
    ]
    rows = {
        "p50, new temperature-0 requests, no cache / cache miss (ms)": (plain, miss),
        "p50, one temperature-0 request repeated, direct / cache hit (ms)": (alone, hit),
        "p50, one temperature-0 request repeated, through lmwatch without a cache (ms)": (proxied, proxied),
        "CPU per new temperature-0 request, no cache / cache miss (us)": (
            statistics.median(c[0] for c in cpu) * 1e6,
            statistics.median(c[1] for c in cpu) * 1e6,
        ),
    }
    return checks, rows


# --- streams: time to the first event ------------------------------------------------------------


async def first_event_times(port: int, path: str, count: int, headers: dict[str, str] | None = None) -> list[float]:
    """Sequential streamed requests on one keep-alive connection; seconds to the first `data:`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = STREAM_BODY.encode()
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    times = []

    async def more(seen: bytes) -> bytes:
        chunk = await reader.read(65536)
        if not chunk:
            raise ConnectionError(f"the stream ended before its end: {seen[-200:]!r}")
        return seen + chunk

    for _ in range(count):
        started = time.perf_counter()
        writer.write(request)
        seen = b""
        while b"data:" not in seen:
            seen = await more(seen)
        times.append(time.perf_counter() - started)
        while not seen.endswith(b"0\r\n\r\n"):  # drain to the end of the chunked body
            seen = await more(seen)
    writer.close()
    return times


def stream_p50(port: int, count: int, headers: dict[str, str] | None = None) -> float:
    """Median seconds to the first event; OSError (a timeout included) when streaming fails."""
    run = first_event_times(port, "/v1/chat/completions", count, headers)
    return statistics.median(asyncio.run(asyncio.wait_for(run, timeout=60)))


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

    from lmwatch import build
    from lmwatch.event_loop import loop_factory

    loop, _ = loop_factory()
    return (
        f"{os.cpu_count()} CPUs ({model}), {int(mem) // 1024 // 1024 + 1} GiB RAM, Linux {platform.release()}, "
        f"Python {platform.python_version()}, aiohttp {aiohttp.__version__}, {loop} event loop, "
        f"lmwatch's {build.kind()} build"
    )


# --- the scrape stall: a fleet of backends -------------------------------------------------------


@dataclass
class StallResult:
    backends: int
    p99_quiet: float
    p99_scraped: float
    render_ms: float
    size_bytes: int
    series: int
    poll_cpu_ms: float
    """The daemon's CPU per poll, idle, with the samplers off (`poll_cost`)."""
    sampler_cpu_ms: float
    """The host and process samplers' CPU per second (`sampler_cost`)."""
    scrape_cpu_ms: float
    """The daemon's CPU per scrape (`scrape_cost`)."""
    gc_pauses_ms: list[float]
    """Every full (generation-2) collection's pause once the daemon was ready, longest first (bench/gcpauses.py)."""
    gc_young_max_ms: float
    """The longest generation-0 or -1 collection."""


class Scraper:
    """GETs /metrics once a second in a thread (as Prometheus would), timing each scrape. A scrape
    that is not a 200 or has fewer than `min_series` series fails the run (a bogus row once had 1)."""

    def __init__(self, url: str, min_series: int) -> None:
        self.url, self.min_series, self.size, self.series = url, min_series, 0, 0
        self.times: list[float] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set() and self.error is None:
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(self.url, timeout=30) as resp:
                    status, body = resp.status, resp.read()
            except OSError as exc:  # HTTPError (a non-2xx) included
                self.error = f"GET {self.url} failed: {exc}"
                return
            self.times.append(time.perf_counter() - started)
            series = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
            if status != 200 or series < self.min_series:
                self.error = f"GET {self.url}: status {status}, {series} series (expected >= {self.min_series})"
                return
            self.size, self.series = len(body), series
            self._stop.wait(max(0.0, 1.0 - (time.perf_counter() - started)))

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise RuntimeError(self.error)
        if not self.times:
            raise RuntimeError(f"no scrape of {self.url} finished")


SAMPLERS_OFF = "sampling: {host_interval: 3600, process_interval: 3600, gpu: off}\n"
"""The samplers once an hour after their first round at start-up: what an idle daemon then spends is its polls."""


@contextmanager
def fleet(count: int) -> Iterator[list[str]]:
    """`count` simulated backends in one process (bench/fleet.py); yields their ports."""
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "ports"
        proc = subprocess.Popen([sys.executable, str(HERE / "fleet.py"), str(count), str(port_file)])
        try:
            end = time.monotonic() + 120
            while not port_file.exists() and time.monotonic() < end and proc.poll() is None:
                time.sleep(0.1)
            yield port_file.read_text().split()
        finally:
            proc.terminate()
            proc.wait(timeout=30)


@contextmanager
def fleet_daemon(ports: list[str], extra: str = "", gc_log: Path | None = None) -> Iterator[tuple[str, int]]:
    """A daemon polling every port of the fleet each second; yields its URL and PID. With `gc_log`,
    every garbage collection is timed into that file when the daemon exits."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = Path(tmp) / "config.yaml"
        rows = (f"  - {{name: b{i}, url: 'http://127.0.0.1:{n}', poll_interval: 1}}\n" for i, n in enumerate(ports))
        config.write_text(f"server: {{port: {port}}}\nlogging: {{level: warning}}\n{extra}backends:\n" + "".join(rows))
        timed = [str(HERE / "gcpauses.py"), str(gc_log)] if gc_log is not None else []
        url = f"http://127.0.0.1:{port}"
        args = [sys.executable, "-P", *timed, "-m", "lmwatch", "run", "--config", str(config)]
        with process(args, url + "/readyz") as daemon:
            yield url, daemon.pid


def idle_cpu(pid: int, seconds: float) -> float:
    """A process's CPU seconds per second over `seconds` of no traffic."""
    began = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - began) / seconds


def poll_cost(ports: list[str], seconds: float) -> float:
    """CPU seconds per poll: an idle daemon polling each backend every second, samplers off."""
    with fleet_daemon(ports, SAMPLERS_OFF) as (_, pid):
        time.sleep(2)  # the first scheduled polls after the start-up round
        return idle_cpu(pid, seconds) / len(ports)


SAMPLER_SECONDS = 20.0
"""How long `sampler_cost` watches each daemon: a clock tick (10 ms) is then 0.5 ms per second."""


def sampler_cost(port: str, seconds: float = SAMPLER_SECONDS) -> float:
    """The host and process samplers' CPU seconds per second: an idle daemon of one backend with them,
    less one without. One backend, so that the difference is not lost in the noise of 300 polls."""
    costs = []
    for extra in ("", SAMPLERS_OFF):
        with fleet_daemon([port], extra) as (_, pid):
            time.sleep(2)  # past the start-up round
            costs.append(idle_cpu(pid, seconds))
    return costs[0] - costs[1]


def scrape_stall(count: int, seconds: int, rounds: int) -> StallResult:
    """p99 at concurrency 1 with and without scrapes, `count` backends polled every second; the
    poll's own CPU (samplers off), the samplers' CPU, and the daemon's garbage-collection pauses."""
    with fleet(count) as ports, tempfile.TemporaryDirectory() as tmp:
        poll_cpu = poll_cost(ports, max(seconds, 10))
        sampler_cpu = sampler_cost(ports[0])
        gc_log = Path(tmp) / "gc.jsonl"
        with fleet_daemon(ports, gc_log=gc_log) as (through, pid):
            ready = time.monotonic()  # the same clock as the log's: start-up's collections left out
            time.sleep(2)
            wrk(through + "/v1/chat/completions", "chat.lua", 1, 2)
            quiet, scraped, render = [], [], []
            for _ in range(rounds):
                quiet.append(wrk(through + "/v1/chat/completions", "chat.lua", 1, seconds).p99)
                with Scraper(through + "/metrics", min_series=40 * count) as scraper:
                    scraped.append(wrk(through + "/v1/chat/completions", "chat.lua", 1, seconds).p99)
                render.extend(scraper.times)
            scrape_cpu = scrape_cost(through + "/metrics", pid, seconds)
        pauses = [p for p in gcpauses.read(gc_log) if p["at"] >= ready]
    return StallResult(
        count,
        statistics.median(quiet),
        statistics.median(scraped),
        statistics.median(render) * 1e3,
        scraper.size,
        scraper.series,
        poll_cpu * 1e3,
        sampler_cpu * 1e3,
        scrape_cpu * 1e3,
        sorted((p["seconds"] * 1e3 for p in pauses if p["generation"] == 2), reverse=True),
        max((p["seconds"] * 1e3 for p in pauses if p["generation"] < 2), default=0.0),
    )


def scrape_cost(url: str, pid: int, seconds: float) -> float:
    """The daemon's CPU seconds per scrape: its CPU while scraped back to back, less its CPU (polls)
    over as long idle, over the scrapes; many scrapes, so the figure stands out of the noise."""
    began = cpu_seconds(pid)
    time.sleep(seconds)
    idle = cpu_seconds(pid) - began
    began, start, scrapes = cpu_seconds(pid), time.monotonic(), 0
    while time.monotonic() - start < seconds:
        with urllib.request.urlopen(url, timeout=30) as resp:
            resp.read()
        scrapes += 1
    busy = cpu_seconds(pid) - began
    return max(0.0, busy - idle * (time.monotonic() - start) / seconds) / scrapes


# --- the run -------------------------------------------------------------------------------------


def commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=HERE, capture_output=True, text=True)
    return done.stdout.strip() or "unknown commit"


def add_to_history(path: Path, run: list[str]) -> None:
    """The new run first, under the file's title; earlier runs (each a `## ` section) kept below."""
    earlier = path.read_text() if path.exists() else ""
    sections = earlier.split("\n## ", 1)
    kept = "## " + sections[1] if len(sections) == 2 else ""
    intro = [
        TITLE,
        "",
        "Made by `make bench` (`bench/run.py --write bench/RESULTS.md` on the compiled build); see bench/run.py.",
        "Newest run first; each run names the commit and the machine it ran on.",
        "",
    ]
    path.write_text("\n".join([*intro, *run, "", kept]).rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating direct/through runs per figure")
    parser.add_argument("--streams", type=int, default=1000, help="sequential streams per round and side")
    parser.add_argument("--fleet", type=int, default=300, help="backends for the scrape-stall figure (0: skip it)")
    parser.add_argument("--write", type=Path, help="add the results (markdown) to this file's history")
    parser.add_argument("--cache-only", action="store_true", help="only the response cache's figures (printed)")
    args = parser.parse_args()

    sim_port, lm_port = free_port(), free_port()
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
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        daemon_config(Path(cfg.name), lm_port, sim_port)
    direct, through = f"http://127.0.0.1:{sim_port}", f"http://127.0.0.1:{lm_port}"
    path = "/v1/chat/completions"
    with (
        process(sim_args, direct + "/v1/models") as simulator,
        process([*LMWATCH, "run", "--config", cfg.name], through + "/readyz") as daemon,
        cached_daemon(sim_port) as (cached, cached_pid),
    ):
        for url in (direct, through, cached):  # warm up: connections, caches, the first poll
            wrk(url + path, "chat.lua", 4, 2)
        cache_checks, cache_rows = cache_figures(
            direct, ((through, daemon.pid), (cached, cached_pid)), args.rounds, args.seconds
        )
        if args.cache_only:
            os.unlink(cfg.name)
            print(f"Machine: {machine()}; load average {os.getloadavg()[0]:.2f} at the end.")
            print("\n".join(f"| {n} | {v} | {g} | {'yes' if ok else 'NO'} |" for n, v, g, ok in cache_checks))
            print("\n".join(f"| {n} | {d:,.3f} | {t:,.3f} |" for n, (d, t) in cache_rows.items()))
            return
        rows: dict[str, tuple[float, float]] = {}
        cpu: dict[str, list[tuple[float, float]]] = {"chat.lua": [], "auto.lua": []}

        def paired(script: str, connections: int) -> tuple[WrkResult, WrkResult]:
            """Direct and through, alternating for `rounds` rounds; the median of each figure.

            Through lmwatch, the CPU per request of the simulator and the daemon are kept in `cpu`."""
            runs = []
            for _ in range(args.rounds):
                alone = wrk(direct + path, script, connections, args.seconds)
                proxied, (sim_cpu, lm_cpu) = wrk_cpu(
                    through + path, script, connections, args.seconds, [simulator.pid, daemon.pid]
                )
                cpu[script].append((sim_cpu, lm_cpu))
                runs.append((alone, proxied))
            return tuple(  # type: ignore[return-value]
                WrkResult(*(statistics.median(getattr(r[side], f) for r in runs) for f in ("rps", "p50", "p99")))
                for side in (0, 1)
            )

        c1 = paired("chat.lua", 1)
        rows["p50 latency, concurrency 1 (ms)"] = (c1[0].p50 * 1e3, c1[1].p50 * 1e3)
        rows["p99 latency, concurrency 1 (ms)"] = (c1[0].p99 * 1e3, c1[1].p99 * 1e3)
        auto = paired("auto.lua", 1)
        rows["p50 latency, model=auto, concurrency 1 (ms)"] = (auto[0].p50 * 1e3, auto[1].p50 * 1e3)
        cpu = {"chat.lua": [], "auto.lua": []}  # CPU per request: at concurrency 32 only
        with PeakRss(daemon.pid) as rss:
            idle_rss = rss.now()
            c32 = paired("chat.lua", 32)
            auto32 = paired("auto.lua", 32)
        rows["requests/s, concurrency 32"] = (c32[0].rps, c32[1].rps)
        rows["requests/s, model=auto, concurrency 32"] = (auto32[0].rps, auto32[1].rps)
        rows["p50 latency, concurrency 32 (ms)"] = (c32[0].p50 * 1e3, c32[1].p50 * 1e3)
        streams = [(stream_p50(sim_port, args.streams), stream_p50(lm_port, args.streams)) for _ in range(args.rounds)]
        stream_direct = statistics.median(d for d, _ in streams)
        stream_through = statistics.median(t for _, t in streams)
        rows["p50 time to first stream event (ms)"] = (stream_direct * 1e3, stream_through * 1e3)
    os.unlink(cfg.name)
    stall = scrape_stall(args.fleet, args.seconds, args.rounds) if args.fleet else None

    # Each ratio pairs the daemon's and the upstream's CPU from one wrk run, so a machine that speeds up
    # or slows down between runs (the upstream's own cost moved 61-100 us between runs here) weighs on
    # both sides alike; the figure is the median of those per-run ratios, per script.
    sim_us = statistics.median(s for s, _ in cpu["chat.lua"]) * 1e6
    lm_us = statistics.median(m for _, m in cpu["chat.lua"]) * 1e6
    auto_sim_us = statistics.median(s for s, _ in cpu["auto.lua"]) * 1e6
    auto_us = statistics.median(m for _, m in cpu["auto.lua"]) * 1e6
    ratio, auto_ratio = (statistics.median(m / s for s, m in cpu[script]) for script in ("chat.lua", "auto.lua"))
    added = (c1[1].p50 - c1[0].p50) * 1e3
    share, auto_share = c32[1].rps / c32[0].rps, auto32[1].rps / auto32[0].rps
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
            "requests/s at concurrency 32, share of direct (explicit / auto)",
            f"{share:.0%} / {auto_share:.0%}",
            f">= {TARGETS['share']:.0%}",
            min(share, auto_share) >= TARGETS["share"],
        ),
        (
            "CPU per proxied request, multiple of the upstream's own (explicit / auto)",
            f"{ratio:.2f}x / {auto_ratio:.2f}x"
            f" ({lm_us:.0f} vs {sim_us:.0f} us / {auto_us:.0f} vs {auto_sim_us:.0f} us)",
            f"<= {TARGETS['cpu_ratio']}x",
            max(ratio, auto_ratio) <= TARGETS["cpu_ratio"],
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
    checks += cache_checks
    rows.update(cache_rows)
    if stall is not None:
        ratio = stall.p99_scraped / stall.p99_quiet
        checks.append(
            (
                f"p99 at concurrency 1 while /metrics is scraped every second, {stall.backends} backends",
                f"{ratio:.1f}x ({stall.p99_quiet * 1e3:.2f} -> {stall.p99_scraped * 1e3:.2f} ms)",
                f"<= {TARGETS['stall']:.0f}x",
                ratio <= TARGETS["stall"],
            )
        )
        checks.append(
            (
                f"CPU per poll of an unchanged backend, idle, {stall.backends} backends (samplers off)",
                f"{stall.poll_cpu_ms:.2f} ms",
                f"<= {TARGETS['poll_ms']} ms",
                stall.poll_cpu_ms <= TARGETS["poll_ms"],
            )
        )
    run = [
        f"## {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit()}",
        "",
        f"Machine: {machine()}.",
        f"Each figure is the median of {args.rounds} alternating rounds"
        f" (wrk {args.seconds} s per run, {args.streams} sequential streams per run);"
        " simulator with zero delay, lmwatch and simulator in separate processes, everything on loopback"
        " (wrk, lmwatch and the simulator share the CPUs). CPU per request is the process's utime + stime"
        " from /proc over the concurrency-32 runs divided by the requests wrk completed; the CPU ratio is"
        " the median of each run's daemon-to-upstream ratio (both measured over the same wrk run).",
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
    if stall is not None:
        run += [
            "",
            f"Scrape with {stall.backends} backends (3 LLMs and an embedding model each, polled every second):"
            f" {stall.render_ms:.0f} ms per /metrics scrape (median; {stall.scrape_cpu_ms:.0f} ms of the daemon's CPU),"
            f" {stall.size_bytes / 1e6:.1f} MB,"
            f" {stall.series:,} series. Idle, a poll costs the daemon {stall.poll_cpu_ms:.2f} ms of CPU"
            f" (samplers off), and the host and process samplers {stall.sampler_cpu_ms:.1f} ms per second"
            f" (±{1e3 / os.sysconf('SC_CLK_TCK') / SAMPLER_SECONDS:.1f} ms: a clock tick over {SAMPLER_SECONDS:.0f} s)."
            f" Full garbage collections during the run: {len(stall.gc_pauses_ms)}, the longest"
            f" {max(stall.gc_pauses_ms, default=0):.0f} ms; the longest young one {stall.gc_young_max_ms:.1f} ms.",
        ]
    print("\n".join(run))
    if args.write:
        add_to_history(args.write, run)


if __name__ == "__main__":
    main()
