"""The task classifier's benchmark: accuracy on held-out prompts and the time per request.

Every train/classifier/data/dev*.jsonl file is held out (train.py never reads it). Each prompt is
sent through `Classifier.classify` as a chat body, exactly as the router does; reported are the
per-class precision, recall and F1, macro-F1, the confusion matrix, and the time per request
(median and p99 over `--repeat` passes, wall clock and thread CPU time, since the machine may be
shared).

    .venv/bin/python bench/classify.py [--repeat 20] [--write bench/CLASSIFY.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from lmwatch.config import RoutingConfig
from lmwatch.routing.classify import Classifier

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "train" / "classifier" / "data"
TASKS = ("coding", "research", "creative", "analysis")


def load(path: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["text"], r["task"]) for r in rows]


def accuracy_table(classifier: Classifier, rows: list[tuple[str, str]], title: str) -> tuple[list[str], float, float]:
    guesses = [classifier.classify({"messages": [{"role": "user", "content": text}]}).task for text, _ in rows]
    return confusion_report([(task, guess) for (_, task), guess in zip(rows, guesses, strict=True)], title)


def confusion_report(pairs: list[tuple[str, str]], title: str) -> tuple[list[str], float, float]:
    """Per-class precision, recall and F1, accuracy, macro-F1 and the confusion matrix of (true, guess) pairs."""
    confusion: Counter[tuple[str, str]] = Counter(pairs)
    right = sum(confusion[(t, t)] for t in TASKS)
    lines = [
        f"### {title}: {len(pairs)} prompts",
        "",
        "| task | precision | recall | F1 | n |",
        "|---|---|---|---|---|",
    ]
    f1s = []
    for task in TASKS:
        predicted = sum(n for (_, g), n in confusion.items() if g == task)
        actual = sum(n for (t, _), n in confusion.items() if t == task)
        p = confusion[(task, task)] / predicted if predicted else 0.0
        r = confusion[(task, task)] / actual if actual else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        f1s.append(f1)
        lines.append(f"| {task} | {p:.3f} | {r:.3f} | {f1:.3f} | {actual} |")
    accuracy, macro = right / len(pairs), statistics.mean(f1s)
    lines += ["", f"accuracy **{accuracy:.3f}**, macro-F1 **{macro:.3f}**", ""]
    guesses = [*TASKS, *sorted({g for _, g in confusion} - set(TASKS))]
    lines += ["| true \\ predicted | " + " | ".join(guesses) + " |", "|---" * (len(guesses) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(str(confusion[(t, g)]) for g in guesses) + " |" for t in TASKS]
    return [*lines, ""], accuracy, macro


def latency(classifier: Classifier, rows: list[tuple[str, str]], repeat: int) -> dict[str, float]:
    bodies = [{"messages": [{"role": "user", "content": text}]} for text, _ in rows]
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(repeat):
        for body in bodies:
            w0, c0 = time.perf_counter_ns(), time.thread_time_ns()
            classifier.classify(body)
            c1, w1 = time.thread_time_ns(), time.perf_counter_ns()
            wall.append((w1 - w0) / 1000)
            cpu.append((c1 - c0) / 1000)
    wall.sort()
    cpu.sort()
    return {
        "wall_p50": wall[len(wall) // 2],
        "wall_p99": wall[int(len(wall) * 0.99)],
        "cpu_p50": cpu[len(cpu) // 2],
        "cpu_p99": cpu[int(len(cpu) * 0.99)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", type=Path, help="write the report here (Markdown)")
    args = parser.parse_args()
    started = time.perf_counter()
    classifier = Classifier(RoutingConfig())
    load_ms = (time.perf_counter() - started) * 1000
    sets = sorted(DATA.glob("dev*.jsonl"))
    report = [
        "# Task classifier: held-out accuracy and time per request",
        "",
        "Made by `.venv/bin/python bench/classify.py --write bench/CLASSIFY.md`; see bench/classify.py.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f} at the start (the CPUs are shared). Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    everything: list[tuple[str, str]] = []
    summary = []
    for path in sets:
        rows = load(path)
        everything += rows
        lines, accuracy, macro = accuracy_table(classifier, rows, path.name)
        report += lines
        summary.append((path.name, len(rows), accuracy, macro))
    timing = latency(classifier, everything, args.repeat)
    report += [
        f"### Time per request ({len(everything)} prompts x {args.repeat}, `Classifier.classify` on a chat body)",
        "",
        "| | median | p99 | target |",
        "|---|---|---|---|",
        f"| wall clock | {timing['wall_p50']:.1f} µs | {timing['wall_p99']:.1f} µs | ≤ 50 µs median, ≤ 500 µs p99 |",
        f"| thread CPU time | {timing['cpu_p50']:.1f} µs | {timing['cpu_p99']:.1f} µs | |",
        "",
        f"Loading the model and compiling the classifier: {load_ms:.0f} ms, once per process and config.",
        "",
    ]
    text = "\n".join(report)
    print(text)
    print("README table:\n\n| held-out set | prompts | accuracy | macro-F1 |\n|---|---|---|---|")
    for name, n, accuracy, macro in summary:
        print(f"| {name} | {n} | {accuracy:.3f} | {macro:.3f} |")
    print(f"| time per request (median / p99) | | {timing['wall_p50']:.0f} µs / {timing['wall_p99']:.0f} µs | |")
    if args.write:
        old = args.write.read_text() if args.write.exists() else ""
        begin = old.find("<!-- embedding mode: bench/embedclass.py -->")
        kept = "\n" + old[begin:] if begin >= 0 else ""  # bench/embedclass.py's section stays
        args.write.write_text(text + kept)


if __name__ == "__main__":
    main()
