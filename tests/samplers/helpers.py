"""Helpers for the sampler tests: render and parse metrics, lint them, run a listening process."""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from lmwatch.metrics.samplers import SamplerCollector
from lmwatch.metrics.text import Format
from lmwatch.registry import Registry
from lmwatch.samplers.base import Sampler
from tests.ports import free_port

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(registry: Registry, samplers: list[Sampler]) -> str:
    """The text a Prometheus scrape of these samplers would get, the same from prometheus-client and
    from the collector's own rendering (both the first time and from its cached text)."""
    collector = SamplerCollector(registry, samplers)
    metrics = CollectorRegistry()
    metrics.register(collector)
    text = generate_latest(metrics).decode()
    fmt = Format(openmetrics=False)
    assert [collector.render(fmt), collector.render(fmt)] == [text, text]
    return text


def parse(text: str) -> Series:
    """Every sample as {(sample name, labels): value}."""
    out: Series = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(series: Series, name: str, /, **labels: str) -> float:
    return series[(name, frozenset(labels.items()))]


def has(series: Series, name: str, /, **labels: str) -> bool:
    """Whether a series with these labels (and maybe more) exists."""
    want = set(labels.items())
    return any(n == name and want <= set(lbls) for n, lbls in series)


def label_values(series: Series, name: str, label: str) -> set[str]:
    return {dict(lbls)[label] for n, lbls in series if n == name and label in dict(lbls)}


def names(series: Series) -> set[str]:
    return {n for n, _ in series}


def promtool_problems(text: str) -> tuple[int, str] | None:
    """(exit code, output) of `promtool check metrics`, or None without promtool."""
    promtool = shutil.which("promtool")
    if promtool is None:
        return None
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30, check=False
    )
    return done.returncode, (done.stdout + done.stderr).decode()


@contextlib.contextmanager
def listening_port() -> Iterator[int]:
    """A loopback port this test process listens on (its owner is us: always visible)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Return once something accepts connections on 127.0.0.1:port (fail if the process dies)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        if process.poll() is not None:
            out = process.stderr.read().decode(errors="replace") if process.stderr else ""
            raise AssertionError(f"server exited with {process.returncode} before listening: {out}")
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on port {port} after {timeout} s")
        time.sleep(0.05)  # between two connection attempts


def server_command(port: int) -> list[str]:
    """The LM Studio simulator when it is available, else any Python HTTP server."""
    if importlib.util.find_spec("lmwatch.simulator.command") and importlib.util.find_spec("lmwatch.cli"):
        return [sys.executable, "-m", "lmwatch", "simulate", "--port", str(port)]
    return [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"]


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def running_server() -> Iterator[Server]:
    """A separate process listening on a loopback port, stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        server_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        wait_for_port(port, process)
        yield Server(port, process)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    if process.stderr:
        process.stderr.close()


def records(caplog_records: Iterable[object], prefix: str = "lmwatch.samplers") -> list[str]:
    """The messages lmwatch's samplers logged (any level from INFO up)."""
    out = []
    for r in caplog_records:
        name = getattr(r, "name", "")
        if name.startswith(prefix) and getattr(r, "levelno", 0) >= 20:
            out.append(r.getMessage())  # type: ignore[attr-defined]
    return out


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
