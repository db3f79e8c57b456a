"""The task classifier's benchmark: accuracy on held-out prompts and the time per request.

Held out (train.py never trains on them): the public test split that train/classifier/public.py
builds from whole source tasks (data/public/test.jsonl, not committed; the section is skipped with a
note when it has not been built), the out-of-source set of train/classifier/outofsource.py (other
collections than any training source: data/public/outofsource.jsonl, likewise not committed) and
every train/classifier/data/dev*.jsonl file. Each prompt is
sent through `Classifier.classify` as a chat body, exactly as the router does; reported are the
per-class precision, recall and F1, macro-F1, the confusion matrix, and the time per request
(median and p99 over `--repeat` passes, wall clock and thread CPU time, since the machine may be
shared).

    .venv/bin/python bench/classify.py [--repeat 20] [--write bench/CLASSIFY.md]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from lmwatch.config import RoutingConfig
from lmwatch.routing.classify import Classifier

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "train" / "classifier" / "data"
TASKS = ("coding", "research", "creative", "analysis")
EMBEDDING_SECTION = "<!-- embedding mode: bench/embedclass.py -->"
"""Where bench/embedclass.py's part of the report starts; it is kept as it is."""


def load(path: Path) -> list[tuple[str, str, str]]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [(r["text"], r["task"], r.get("source", path.stem)) for r in rows]


def accuracy_table(
    classifier: Classifier, rows: list[tuple[str, str, str]], title: str
) -> tuple[list[str], list[tuple[str, str]]]:
    """The report of `rows` (with per-source accuracy) and its (true, guess) pairs."""
    guesses = [classifier.classify({"messages": [{"role": "user", "content": text}]}).task for text, _, _ in rows]
    pairs = [(r[1], guess) for r, guess in zip(rows, guesses, strict=True)]
    lines, _, _ = confusion_report(pairs, title)
    sources = sorted({r[2] for r in rows})
    if len(sources) > 1:
        lines += ["| source | n | accuracy |", "|---|---|---|"]
        for source in sources:
            right = [r[1] == g for r, g in zip(rows, guesses, strict=True) if r[2] == source]
            lines.append(f"| {source} | {len(right)} | {sum(right) / len(right):.3f} |")
        lines.append("")
    return lines, pairs


def confusion_report(pairs: list[tuple[str, str]], title: str) -> tuple[list[str], float, float]:
    """Per-class precision, recall and F1, accuracy, macro-F1 and the confusion matrix of (true, guess)
    pairs; for a set whose classes differ in size, also the class-balanced figures (`balanced`)."""
    confusion: Counter[tuple[str, str]] = Counter(pairs)
    rows = metrics(confusion)
    accuracy, macro = sum(confusion[(t, t)] for t in TASKS) / len(pairs), statistics.mean(r[2] for r in rows)
    counts = Counter(t for t, _ in pairs)
    lines = [
        f"### {title}: {len(pairs)} prompts",
        "",
        "| task | precision | recall | F1 | n |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {t} | {p:.3f} | {r:.3f} | {f1:.3f} | {counts[t]} |" for t, (p, r, f1) in zip(TASKS, rows, strict=True)
    ]
    mean_recall, even_macro = balanced_scores(pairs)
    lines += ["", f"accuracy **{accuracy:.3f}**, macro-F1 **{macro:.3f}**, mean recall {mean_recall:.3f}", ""]
    if len({counts[t] for t in TASKS}) > 1:
        even_rows = metrics(balanced(confusion))
        lines += [
            "Class-balanced (each true class's row of the matrix scaled to the same count, as on a hidden set",
            "of about 150 prompts per task): precision and F1 from the scaled matrix; recall is unchanged.",
            "",
            "| task | precision | F1 | balanced precision | balanced F1 |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {t} | {p:.3f} | {f1:.3f} | {bp:.3f} | {bf1:.3f} |"
            for t, (p, _, f1), (bp, _, bf1) in zip(TASKS, rows, even_rows, strict=True)
        ]
        lines += [
            "",
            f"balanced accuracy (= mean recall) **{mean_recall:.3f}**, balanced macro-F1 **{even_macro:.3f}**"
            f" (raw: {accuracy:.3f}, {macro:.3f})",
            "",
        ]
    guesses = [*TASKS, *sorted({g for _, g in confusion} - set(TASKS))]
    lines += ["| true \\ predicted | " + " | ".join(guesses) + " |", "|---" * (len(guesses) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(str(confusion[(t, g)]) for g in guesses) + " |" for t in TASKS]
    return [*lines, ""], accuracy, macro


def metrics(confusion: Mapping[tuple[str, str], float]) -> list[tuple[float, float, float]]:
    """Per task, in `TASKS` order: precision, recall and F1 of a (true, guess) -> count matrix."""
    out = []
    for task in TASKS:
        predicted = sum(n for (_, g), n in confusion.items() if g == task)
        actual = sum(n for (t, _), n in confusion.items() if t == task)
        right = confusion.get((task, task), 0)
        p = right / predicted if predicted else 0.0
        r = right / actual if actual else 0.0
        out.append((p, r, 2 * p * r / (p + r) if p + r else 0.0))
    return out


def balanced_scores(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """Balanced accuracy (the mean recall over the classes present) and the macro-F1 of `balanced`."""
    confusion = Counter(pairs)
    present = {t for t, _ in pairs}
    recalls = [r for t, (_, r, _) in zip(TASKS, metrics(confusion), strict=True) if t in present]
    return statistics.mean(recalls), statistics.mean(f1 for _, _, f1 in metrics(balanced(confusion)))


def balanced(confusion: Mapping[tuple[str, str], float]) -> dict[tuple[str, str], float]:
    """The matrix with each true class's row scaled to the same total (the mean row count): what a set
    with as many prompts of each task would see, if each class's errors stayed in proportion."""
    totals: dict[str, float] = {}
    for (t, _), n in confusion.items():
        totals[t] = totals.get(t, 0.0) + n
    mean = statistics.mean(totals.values())
    return {(t, g): n * mean / totals[t] for (t, g), n in confusion.items()}


def latency(routing: RoutingConfig, rows: list[tuple[str, str, str]], repeat: int) -> dict[str, float]:
    """Each pass uses a new `Classifier`, whose memo of recent answers is empty, so every call is a
    first classification of its text; a last pass sends each text twice in a row (the second is a
    memo hit)."""
    bodies = [{"messages": [{"role": "user", "content": r[0]}]} for r in rows]
    wall: list[float] = []
    cpu: list[float] = []
    best = [math.inf] * len(bodies)
    for _ in range(repeat):
        classifier = Classifier(routing)
        for i, body in enumerate(bodies):
            c0 = time.thread_time_ns()  # a system call (about 0.7 µs): outside the wall clock's window
            w0 = time.perf_counter_ns()
            classifier.classify(body)
            w1 = time.perf_counter_ns()
            c1 = time.thread_time_ns()
            wall.append((w1 - w0) / 1000)
            cpu.append((c1 - c0) / 1000)
            best[i] = min(best[i], (c1 - c0) / 1000)
    hits = []
    for body in bodies:
        classifier.classify(body)
        c0 = time.thread_time_ns()
        classifier.classify(body)  # the same text again: the memo answers
        hits.append((time.thread_time_ns() - c0) / 1000)
    hits.sort()
    wall.sort()
    cpu.sort()
    best.sort()
    return {
        "best_p50": best[len(best) // 2],
        "best_p99": best[int(len(best) * 0.99)],
        "wall_p50": wall[len(wall) // 2],
        "wall_p99": wall[int(len(wall) * 0.99)],
        "cpu_p50": cpu[len(cpu) // 2],
        "cpu_p99": cpu[int(len(cpu) * 0.99)],
        "hit_p50": hits[len(hits) // 2],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--write", type=Path, help="write the report here (Markdown)")
    args = parser.parse_args()
    started = time.perf_counter()
    routing = RoutingConfig()
    classifier = Classifier(routing)
    load_ms = (time.perf_counter() - started) * 1000
    public = DATA / "public" / "test.jsonl"
    outside = DATA / "public" / "outofsource.jsonl"
    sets = [p for p in (public, outside) if p.exists()] + sorted(DATA.glob("dev*.jsonl"))
    report = [
        "# Task classifier: held-out accuracy and time per request",
        "",
        "Made by `.venv/bin/python bench/classify.py --write bench/CLASSIFY.md`; see bench/classify.py.",
        "Each change to the model, before and after: the last section (written by hand, kept on rewrites).",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.1f} at the start (the CPUs are shared). Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.",
        "",
    ]
    if not public.exists():
        report += [
            f"(No {public.relative_to(REPO)}: run train/classifier/public.py to build the public held-out set.)",
            "",
        ]
    if not outside.exists():
        report += [f"(No {outside.relative_to(REPO)}: run train/classifier/outofsource.py to build it.)", ""]
    titles = {
        public: "public held-out (train/classifier/public.py test split)",
        outside: "out-of-source (train/classifier/outofsource.py: AlpacaEval, WizardLM, FLASK)",
    }
    notes = {
        outside: [
            "Collections that no training source comes from (see train/classifier/SOURCES.md), labelled by",
            "the issue's definitions. It first measured accuracy 0.721, macro-F1 0.692 with the model trained",
            "before it existed; for the errors it showed, NQ questions and 91 handwritten casual questions",
            "were added to the training data and function words stopped being features alone (which raised",
            "the public val split too), so it is no longer fully blind. The question-form feature and the",
            "TruthfulQA and passage questions were likewise added while its research errors were in view",
            "(their share and the regularisation were chosen on the val split). The NL2Bash, NL-RX and",
            'Exercism coding prompts were added after its coding misses (problem statements such as "Given an',
            'array of integers, find ..." taken for analysis) were seen, their caps and C chosen on val. So',
            "it is not blind: expect a truly unseen set to score somewhat lower.",
            "",
        ]
    }
    everything: list[tuple[str, str, str]] = []
    summary = []
    timings = []
    for path in sets:
        rows = load(path)
        everything += rows
        title = titles.get(path, path.name)
        lines, pairs = accuracy_table(classifier, rows, title)
        report += [*lines[:1], "", *notes.get(path, []), *lines[2:]]
        summary.append((title, pairs))
        timings.append((title, len(rows), latency(routing, rows, args.repeat)))
    timings.append(("all of them", len(everything), latency(routing, everything, args.repeat)))
    report += [
        f"### Time per request (each prompt x {args.repeat}, `Classifier.classify` on a chat body)",
        "",
        "Target: ≤ 50 µs median, ≤ 500 µs p99. Every call is a first classification of its text (a new",
        "classifier each pass, so its memo of recent answers never answers); a repeated text costs the",
        '"memo hit" column. Wall clock includes preemption by other processes on the shared CPUs; thread',
        "CPU time does not, but still runs slower when the other hyperthread and the caches are busy;",
        '"best" takes each prompt\'s fastest CPU time over the repeats (its cost on an idle machine), then',
        "the median and p99 over prompts. The CPU clock is read outside the wall clock's window (reading",
        "it is a system call of about 0.7 µs, which the wall figures before 2026-12-07 06:00 include).",
        "",
        "| prompts | n | wall median | wall p99 | CPU median | CPU p99 | best median | best p99 | memo hit |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    columns = ("wall_p50", "wall_p99", "cpu_p50", "cpu_p99", "best_p50", "best_p99", "hit_p50")
    report += [f"| {title} | {n} | " + " | ".join(f"{t[k]:.1f} µs" for k in columns) + " |" for title, n, t in timings]
    report += [
        "",
        f"Loading the model and compiling the classifier: {load_ms:.0f} ms, once per process and config.",
        "",
    ]
    timing = timings[-1][2]
    text = "\n".join(report)
    print(text)
    print("README table:\n")
    print("| held-out set | prompts | accuracy | macro-F1 | balanced accuracy | balanced macro-F1 |")
    print("|---|---|---|---|---|---|")
    for name, pairs in summary:
        _, accuracy, macro = confusion_report(pairs, name)
        print(
            f"| {name} | {len(pairs)} | {accuracy:.3f} | {macro:.3f} | "
            + " | ".join(f"{x:.3f}" for x in balanced_scores(pairs))
            + " |"
        )
    print(f"| time per request (median / p99) | | {timing['wall_p50']:.0f} µs / {timing['wall_p99']:.0f} µs | | | |")
    if args.write:
        old = args.write.read_text() if args.write.exists() else ""
        begin = old.find(EMBEDDING_SECTION)
        kept = "\n" + old[begin:] if begin >= 0 else ""  # bench/embedclass.py's section and what follows stay
        args.write.write_text(text + kept)


if __name__ == "__main__":
    main()
