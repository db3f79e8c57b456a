"""`lmwatch demo` (what `make demo` runs): the simulated backends are up, with their models, in
`/status` and `/metrics` within 10 s of start, and Ctrl-C stops the simulators with it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import closing

READY_WITHIN_SECONDS = 10.0


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports."""
    for base in range(23000, 33000, 17):
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(count)]
        except OSError:
            continue
        for sock in socks:
            sock.close()
        return base
    raise RuntimeError("no free port range")


def get(url: str) -> tuple[int, str]:
    with closing(urllib.request.urlopen(url, timeout=2)) as resp:
        return resp.status, resp.read().decode()


def test_demo_is_up_within_ten_seconds_and_stops_cleanly() -> None:
    sim_port = free_port_run(4)
    port = sim_port + 3
    command = [sys.executable, "-m", "lmwatch", "demo", "--port", str(port), "--sim-port", str(sim_port)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = time.monotonic()
    try:
        status: dict[str, object] = {}
        while time.monotonic() - started < READY_WITHIN_SECONDS:
            try:
                code, body = get(f"http://127.0.0.1:{port}/status")
            except OSError:
                time.sleep(0.1)
                continue
            status = json.loads(body)
            if code == 200 and status.get("ready"):
                break
            time.sleep(0.1)
        backends = {b["name"]: b for b in status.get("backends", [])}  # type: ignore[attr-defined]
        assert {name: b["health"] for name, b in backends.items()} == {
            "studio-a": "up",
            "studio-b": "up",
            "engine-c": "up",
        }, f"not all up within {READY_WITHIN_SECONDS:.0f} s: {status}"
        assert any(m["id"] == "deepseek-coder-v2-lite-instruct" for m in backends["studio-b"]["models"])
        _, metrics = get(f"http://127.0.0.1:{port}/metrics")
        for name in ("studio-a", "studio-b", "engine-c"):
            assert f'lmwatch_backend_up{{backend="{name}"}} 1.0' in metrics
        mistral = 'lmwatch_model_loaded{backend="engine-c",model="mistral-7b-instruct-v0.3",model_type="llm"} 1.0'
        assert mistral in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, output
    assert f"http://127.0.0.1:{port}/status" in output
    for offset in range(3):  # the simulators are gone: their ports are free again
        with socket.create_server(("127.0.0.1", sim_port + offset)):
            pass
