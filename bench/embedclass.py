"""The embedding mode of the task classifier against the linear model, on the held-out prompts.

Every train/classifier/data/dev*.jsonl prompt (with `--public`, also the public held-out split
train/classifier/data/public/test.jsonl and the out-of-source set data/public/outofsource.jsonl,
about 1,900 prompts, when train/classifier/public.py and outofsource.py have built them) is
classified three ways, through the daemon's own
classifier object (`EmbeddingClassifier.classify`, real HTTP to the backend):
- `linear`: the shipped learned model (what `mode: linear` answers);
- `embedding, simulator`: the simulator's embedding model, a hashed bag of words (a toy: it shows
  what word overlap with the exemplars alone gives, not what a real embedding model would);
- `embedding, SmolLM2-135M` (with `--engine`): llama.cpp's server with `--embedding true` on the
  only real model here, a 135M chat model whose token vectors are mean-pooled (not an embedding
  model: nomic-embed or bge would be the real test, and none is available on this machine);
- `embedding, all-MiniLM-L6-v2` (with `--minilm`, the `bench-embed` extra): the same engine serving a
  real, small sentence-embedding model (bench/minilm_gguf.py makes its GGUF).
The timeout is raised to 120 s so accuracy is not cut by it; the added time per request (uncached,
then cached) is reported separately. The report replaces the "Embedding mode" section of
bench/CLASSIFY.md (between its markers) with `--write`.

    .venv/bin/python bench/embedclass.py [--engine] [--minilm] [--public] [--write bench/CLASSIFY.md]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from classify import DATA, confusion_report, load

from bench.semantic import engine
from lmwatch.api import openai as router
from lmwatch.config import parse_config
from lmwatch.daemon import running_daemon
from lmwatch.simulator import SimModel, SimSettings, start_simulator

BEGIN = "<!-- embedding mode: bench/embedclass.py -->"
END = "<!-- end of embedding mode -->"


def chat(text: str) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


async def run(backend_url: str, model: str | None, rows: list[tuple[str, str, str]]) -> dict[str, Any]:
    """Classify `rows` twice (uncached, then cached) in the mode the config gives."""
    classifier_cfg: dict[str, Any] = {"mode": "embedding" if model else "linear", "embedding": {"timeout": 120}}
    if model:
        classifier_cfg["embedding"]["model"] = model
    config = {
        "server": {"port": 0},
        "backends": [{"name": "b", "url": backend_url, "poll_interval": 600}],
        "routing": {"classifier": classifier_cfg},
    }
    async with running_daemon(parse_config(yaml.safe_dump(config), env={}), [router.setup]) as daemon:
        classifier = daemon.app[router.CLASSIFIER]
        routing, snap = daemon.services.config.config.routing, daemon.registry.snapshot()
        started = time.perf_counter()
        if model:
            await classifier.warm(routing, snap)
        warm = time.perf_counter() - started
        passes: list[list[float]] = []
        pairs: list[tuple[str, str]] = []
        reasons: Counter[str] = Counter()
        for pass_no in range(2):
            times = []
            for text, task, _ in rows:
                t0 = time.perf_counter()
                answer = await classifier.classify(routing, snap, chat(text))
                times.append(time.perf_counter() - t0)
                if pass_no == 0:
                    pairs.append((task, answer.task))
                    reasons[answer.reasons[0].split("(")[0] if answer.reasons else "default"] += 1
            passes.append(sorted(times))
    return {"pairs": pairs, "warm": warm, "uncached": passes[0], "cached": passes[1], "reasons": reasons}


def served_model(url: str) -> str:
    """The id of the one model the engine at `url` serves."""
    with urllib.request.urlopen(url + "/v1/models", timeout=10) as resp:
        return str(json.load(resp)["data"][0]["id"])


def ms(sorted_times: list[float], q: float) -> str:
    return f"{sorted_times[min(int(len(sorted_times) * q), len(sorted_times) - 1)] * 1000:.2f} ms"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--engine", action="store_true", help="also measure SmolLM2-135M through llama.cpp")
    parser.add_argument(
        "--minilm", action="store_true", help="also measure all-MiniLM-L6-v2 through llama.cpp (bench-embed extra)"
    )
    parser.add_argument("--write", type=Path, help="replace the Embedding mode section of this file")
    parser.add_argument(
        "--public", action="store_true", help="add the public held-out and out-of-source sets (when built)"
    )
    args = parser.parse_args()
    built = [DATA / "public" / "test.jsonl", DATA / "public" / "outofsource.jsonl"]
    paths = [p for p in built if p.exists() and args.public] + sorted(DATA.glob("dev*.jsonl"))
    rows = [row for path in paths for row in load(path)]
    names = ", ".join(str(p.relative_to(DATA)) for p in paths)
    load_avg = os.getloadavg()[0]
    sim = await start_simulator(
        SimSettings(models=[SimModel(id="meta-llama-3.1-8b-instruct"), SimModel(id="nomic-embed", type="embeddings")]),
        port=0,
    )
    results: dict[str, dict[str, Any]] = {}
    try:
        results["linear"] = await run(sim.url, None, rows)
        results["embedding, simulator (hashed bag of words)"] = await run(sim.url, "nomic-embed", rows)
    finally:
        await sim.stop()
    if args.engine:
        with engine() as url:
            name = "embedding, SmolLM2-135M Q4_1 (llama.cpp, mean-pooled token vectors)"
            results[name] = await run(url, served_model(url), rows)
    if args.minilm:
        from bench.minilm_gguf import minilm_gguf

        with engine(minilm_gguf()) as url:
            name = "embedding, all-MiniLM-L6-v2 (llama.cpp, a sentence-embedding model, mean pooling)"
            results[name] = await run(url, served_model(url), rows)
    report = [
        BEGIN,
        "## Embedding mode (`routing.classifier.mode: embedding`) against the linear model",
        "",
        f"Made by `.venv/bin/python bench/embedclass.py{' --engine' if args.engine else ''}"
        f"{' --minilm' if args.minilm else ''}"
        f"{' --public' if args.public else ''} --write bench/CLASSIFY.md`; {len(rows)} held-out "
        f"prompts ({names}); load average {load_avg:.1f} at the start on {os.cpu_count()} shared CPUs; "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC. The exemplars: lmwatch/routing/exemplars.py (12 per task).",
        "",
        "| classifier | accuracy | macro-F1 | time per request, uncached (median / p99) | cached (median) "
        "| exemplars embedded in |",
        "|---|---|---|---|---|---|",
    ]
    details: list[str] = []
    for name, r in results.items():
        lines, accuracy, macro = confusion_report(r["pairs"], name)
        details += lines
        warm = f"{r['warm']:.2f} s" if name != "linear" else ""
        report.append(
            f"| {name} | {accuracy:.3f} | {macro:.3f} | {ms(r['uncached'], 0.5)} / {ms(r['uncached'], 0.99)} "
            f"| {ms(r['cached'], 0.5)} | {warm} |"
        )
        fallbacks = {k: v for k, v in r["reasons"].items() if k.startswith("linear")}
        if fallbacks:
            details.append(f"Answered by the linear fallback: {dict(fallbacks)}")
            details.append("")
    macro = {n: confusion_report(r["pairs"], "")[2] for n, r in results.items()}
    beats = "yes" if max(v for n, v in macro.items() if n != "linear") > macro["linear"] else "no"
    runs = ", ".join(f"{v:.3f} ({n})" for n, v in macro.items() if n != "linear")
    measured = (
        "all-MiniLM-L6-v2 is a real sentence-embedding model, though a small one (384 dimensions) and not "
        "the nomic-embed or bge a fleet would load"
        if args.minilm
        else "Neither embedding model measured is a real sentence-embedding model (the simulator's is a toy, "
        "SmolLM2-135M is a small chat model); nomic-embed or bge were not available on this machine, so "
        "whether they would beat the linear model is not known from this run"
    )
    report += [
        "",
        f"**Does the embedding mode beat the linear model here? {beats}**: macro-F1 {runs} against the "
        f"linear model's {macro['linear']:.3f}. {measured}.",
        "",
        *details,
        END,
    ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.write:
        old = args.write.read_text() if args.write.exists() else ""
        if BEGIN in old and END in old:
            new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) :].lstrip("\n")
        else:
            new = old.rstrip("\n") + "\n\n" + text
        args.write.write_text(new)


if __name__ == "__main__":
    asyncio.run(main())
