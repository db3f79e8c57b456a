"""Run a daemon with every garbage collection timed: `python bench/gcpauses.py LOG -m lmwatch run --config FILE`.

A collection stops the event loop for as long as it runs, so its pauses are loop stalls that no
profile of the code shows. At exit (the daemon stops on SIGTERM) LOG gets one JSON line per
collection: generation, seconds (wall), cpu_seconds (the thread's CPU: on a shared machine the
wall time also holds the time other processes had the CPU), objects collected, and the monotonic
time it began.
"""

from __future__ import annotations

import atexit
import gc
import json
import runpy
import sys
import time
from pathlib import Path
from typing import Any


class PauseLog:
    """`gc.callbacks` hook: times each collection from its start to its stop."""

    def __init__(self) -> None:
        self.pauses: list[tuple[int, float, float, int, float]] = []
        self.began = self.began_cpu = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self.began, self.began_cpu = time.perf_counter(), time.thread_time()
        else:
            cpu = time.thread_time() - self.began_cpu
            seconds = time.perf_counter() - self.began
            self.pauses.append((info["generation"], seconds, cpu, info["collected"], time.monotonic() - seconds))

    def write(self, path: Path) -> None:
        keys = ("generation", "seconds", "cpu_seconds", "collected", "at")
        path.write_text("".join(json.dumps(dict(zip(keys, pause, strict=True))) + "\n" for pause in self.pauses))


def read(path: Path) -> list[dict[str, Any]]:
    """The pauses a run logged."""
    return [json.loads(line) for line in path.read_text().splitlines() if line]


if __name__ == "__main__":
    log, rest = Path(sys.argv[1]), sys.argv[2:]
    if rest[:1] != ["-m"] or len(rest) < 2:
        raise SystemExit(__doc__.splitlines()[0])
    pauses = PauseLog()
    atexit.register(pauses.write, log)
    gc.callbacks.append(pauses)
    sys.argv = [rest[1], *rest[2:]]
    runpy.run_module(rest[1], run_name="__main__", alter_sys=True)
