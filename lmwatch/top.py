"""`lmwatch top`: the console's live fleet view in a terminal, in the style of `lms ps` and `nvtop`.

It reads `/status` (no admin token needed) every `--interval` seconds and redraws: backends with
state, in-flight and queued requests and breakers; the loaded models with context, slots, tokens per
second and time to first token; GPU memory and utilization. `--once` prints one snapshot and exits
(for scripts and tests); without a terminal the frames follow each other without escape codes, and
`--json` prints each `/status` document on one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from lmwatch.admin_client import CliError, call, short, table

CLEAR = "\x1b[H\x1b[2J"
BAR_WIDTH = 20


def render(status: dict[str, Any], url: str, now: float) -> str:
    """One frame of the view, from a `/status` document."""
    requests = status.get("requests", {})
    inflight, queued = requests.get("inflight", {}), requests.get("queued", {})
    speeds = {(s["backend"], s["model"]): s for s in requests.get("speeds", [])}
    breakers: dict[str, list[str]] = {}
    for b in requests.get("breakers", []):
        breakers.setdefault(b["backend"], []).append(b["state"])
    backends = status.get("backends", [])
    loaded = [(b, m) for b in backends for m in b.get("models", []) if m.get("loaded")]
    up = sum(b["health"] == "up" for b in backends)
    lines = [
        f"lmwatch {status.get('version', '?')} at {url}  {time.strftime('%H:%M:%S', time.localtime(now))}"
        + ("" if status.get("ready") else "  (starting)"),
        f"backends {up}/{len(backends)} up · models loaded {len(loaded)} · in flight {sum(inflight.values())}"
        f" · queued {sum(queued.values())}",
        "",
        table(
            [
                [
                    b["name"],
                    b["health"] + (",draining" if b.get("draining") else ""),
                    " ".join(filter(None, [b.get("flavour"), b.get("version")])) or "-",
                    str(sum(1 for m in b.get("models", []) if m.get("loaded"))),
                    str(inflight.get(b["name"], 0)),
                    str(queued.get(b["name"], 0)),
                    _worst(breakers.get(b["name"], [])),
                    _seconds(b.get("probe_duration_seconds")),
                ]
                for b in backends
            ],
            ["BACKEND", "STATE", "FLAVOUR", "LOADED", "IN-FLIGHT", "QUEUED", "BREAKER", "PROBE"],
        )
        if backends
        else "no backends configured",
        "",
    ]
    if loaded:
        rows = []
        for b, m in loaded:
            speed = speeds.get((b["name"], m["id"]), {})
            rows.append(
                [
                    short([m["id"]], 48) + (" (stale)" if m.get("stale") else ""),
                    b["name"],
                    str(m.get("model_type", "")),
                    str(m.get("loaded_context_length") or m.get("max_context_length") or "-"),
                    str(m.get("parallel") or "-"),
                    _number(speed.get("tokens_per_second")),
                    _seconds(speed.get("ttft_seconds")),
                ]
            )
        lines += [table(rows, ["MODEL", "BACKEND", "TYPE", "CONTEXT", "SLOTS", "TOK/S", "TTFT"]), ""]
    gpus = status.get("host", {}).get("gpus", [])
    if gpus:
        rows = [
            [
                str(g["index"]),
                g["name"],
                _bar(g["memory_total_bytes"] - g["memory_free_bytes"], g["memory_total_bytes"]),
                _percent(g.get("utilization_ratio")),
            ]
            for g in gpus
        ]
        lines.append(table(rows, ["GPU", "NAME", "MEMORY", "UTIL"]))
    else:
        lines.append("no GPU seen")
    return "\n".join(lines) + "\n"


def _worst(states: list[str]) -> str:
    return next((s for s in ("open", "half_open") if s in states), "closed")


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _percent(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.0f}%"


def _bar(used: int, total: int) -> str:
    filled = round(BAR_WIDTH * used / total) if total else 0
    return f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {used / 2**30:.1f}/{total / 2**30:.1f} GiB"


def cmd_top(args: argparse.Namespace, sleep: Callable[[float], None] = time.sleep) -> int:
    """Redraw every `--interval` seconds until Ctrl-C (or `--count` frames); `--once` is one frame.

    A daemon that stops answering is shown in the frame and retried; only the first frame's failure
    exits 1 (there is nothing to show yet)."""
    count = 1 if args.once else args.count
    clear = sys.stdout.isatty() and not args.once
    frame = 0
    try:
        while count is None or frame < count:
            if frame:
                sleep(args.interval)
            try:
                status = call(args, "GET", "/status")
                text = json.dumps(status) + "\n" if args.json else render(status, args.url, time.time())
            except CliError as exc:
                if frame == 0:
                    raise
                text = f"lmwatch: {exc.message} (retrying every {args.interval:g} s)\n"
            sys.stdout.write((CLEAR if clear else "\n" if frame else "") + text)
            sys.stdout.flush()
            frame += 1
    except KeyboardInterrupt:
        pass
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="stop after N frames")
