"""Train the task model shipped as lmwatch/routing/task_model.json.gz.

    .venv/bin/pip install -e '.[train]'
    .venv/bin/python train/classifier/train.py            # train, report on the dev set, write the model
    .venv/bin/python train/classifier/train.py --test     # also the public test split and the out-of-source set

Training data: the self-authored corpus of compose.py, every data/*.jsonl file except the held-out
ones (dev*.jsonl), and the train split of the public data that public.py builds (data/public/); each
line is {"text", "task", "source"}. Regularisation and features are chosen on the public val split;
the test split is only reported. See SOURCES.md for where the public parts come from and their
licences. databricks-dolly-15k, MBPP, HumanEval and CodeAlpaca
are never used: they are reserved for evaluation.

Features are lmwatch.routing.textfeatures.features (the runtime's own function), kept when they
occur in at least `--min-df` training texts; values are 1/sqrt(number of features of the text), as
the runtime computes them. The model is a multinomial logistic regression (scikit-learn, only
here); weights are rounded to integers times one scale (127 levels), and features whose weights
are all smaller than `--min-weight` levels are dropped: two thirds of them, at no cost in accuracy
on the val split, and a smaller dict is a faster one (fewer cache misses per lookup).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import sys
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parents[1]))

from compose import composed  # noqa: E402

from bench.classify import balanced_scores, metrics  # noqa: E402
from lmwatch.routing.taskmodel import MODEL_FILE  # noqa: E402
from lmwatch.routing.textfeatures import features  # noqa: E402

TASKS = ("coding", "research", "creative", "analysis")
OUT = HERE.parents[1] / "lmwatch" / "routing" / MODEL_FILE
LEVELS = 127


def load(paths: list[Path]) -> list[tuple[str, str]]:
    rows = []
    for path in paths:
        for line in path.read_text().splitlines():
            if line.strip():
                item = json.loads(line)
                rows.append((item["text"], item["task"]))
    return rows


PUBLIC = HERE / "data" / "public"


def training_rows(per_task: int) -> list[tuple[str, str]]:
    if not (PUBLIC / "train.jsonl").exists():
        sys.exit(f"no {PUBLIC / 'train.jsonl'}: run train/classifier/public.py first")
    own = sorted(p for p in (HERE / "data").glob("*.jsonl") if not p.name.startswith("dev"))
    return list(composed(per_task)) + load([*own, PUBLIC / "train.jsonl"])


def matrix(texts: list[str], vocab: dict[str, int]):
    from scipy.sparse import csr_matrix

    indptr, indices, values = [0], [], []
    for text in texts:
        feats = features(text)
        known = sorted({vocab[f] for f in feats if f in vocab})
        value = 1.0 / math.sqrt(len(feats)) if feats else 0.0
        indices.extend(known)
        values.extend([value] * len(known))
        indptr.append(len(indices))
    return csr_matrix((values, indices, indptr), shape=(len(texts), len(vocab)))


def train(rows: list[tuple[str, str]], min_df: int, c: float):
    from sklearn.linear_model import LogisticRegression

    df: Counter[str] = Counter()
    for text, _ in rows:
        df.update(features(text))
    vocab = {f: i for i, f in enumerate(sorted(f for f, n in df.items() if n >= min_df))}
    x = matrix([t for t, _ in rows], vocab)
    y = [TASKS.index(task) for _, task in rows]
    clf = LogisticRegression(C=c, max_iter=3000, class_weight="balanced")
    clf.fit(x, y)
    n = len(rows)
    idf = {f: round(math.log((1 + n) / (1 + df[f])) + 1, 1) for f in vocab}
    return clf, vocab, idf, round(math.log((1 + n) / (1 + min_df - 1)) + 1, 1)


def export(clf, vocab: dict[str, int], idf: dict[str, float], rare_idf: float, min_weight: int) -> dict[str, object]:
    coef = clf.coef_
    scale = float(abs(coef).max()) / LEVELS
    weights = {}
    for feature, i in vocab.items():
        row = [round(float(w) / scale) for w in coef[:, i]]
        if max(map(abs, row)) >= min_weight:
            weights[feature] = row
    return {
        "tasks": list(TASKS),
        "scale": scale,
        "bias": [float(b) for b in clf.intercept_],
        "weights": weights,
        "idf": {f: x for f, x in idf.items() if x < rare_idf},
        "rare_idf": rare_idf,
    }


def report(model: dict[str, object], rows: list[tuple[str, str]], title: str) -> float:
    """Prints accuracy, macro-F1, the class-balanced figures (bench/classify.py's) and the confusion
    matrix; returns the balanced macro-F1, which is what the choices on the val split go by (the
    hidden set has as many prompts of each task)."""
    from lmwatch.routing.taskmodel import parse_model

    linear = parse_model(model)
    pairs = []
    for text, task in rows:
        logits = linear.score(text).logits
        pairs.append((task, linear.tasks[max(range(len(logits)), key=logits.__getitem__)]))
    confusion = Counter(pairs)
    accuracy = sum(t == g for t, g in pairs) / len(pairs)
    macro = sum(f1 for _, _, f1 in metrics(confusion)) / len(TASKS)
    mean_recall, even_macro = balanced_scores(pairs)
    print(
        f"{title}: accuracy {accuracy:.3f}, macro-F1 {macro:.3f}; balanced accuracy {mean_recall:.3f},"
        f" balanced macro-F1 {even_macro:.3f} on {len(rows)}"
    )
    for task in TASKS:
        print(f"  {task:9s}", " ".join(f"{confusion[(task, g)]:4d}" for g in TASKS))
    return even_macro


def evaluate(model: dict[str, object], test: bool) -> None:
    """The val split (what choices go by), then, with `test`, the held-out sets (reported only)."""
    report(model, load([PUBLIC / "val.jsonl"]), "public val")
    if test:
        report(model, load([PUBLIC / "test.jsonl"]), "public test")
        if (PUBLIC / "outofsource.jsonl").exists():
            report(model, load([PUBLIC / "outofsource.jsonl"]), "out-of-source (outofsource.py)")
    for dev in sorted((HERE / "data").glob("dev*.jsonl")):
        report(model, load([dev]), dev.name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-task", type=int, default=500, help="composed examples per task")
    parser.add_argument("--min-df", type=int, default=3)
    parser.add_argument("-C", type=float, default=5.0, help="inverse regularisation strength (chosen on val)")
    parser.add_argument(
        "--min-weight", type=int, default=3, help=f"drop features whose weights are all below this (of {LEVELS})"
    )
    parser.add_argument("--no-write", action="store_true", help="report only")
    parser.add_argument("--evaluate", type=Path, help="report on this model file (e.g. the shipped one) and stop")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the model")
    parser.add_argument("--test", action="store_true", help="also report on the public test split (not for tuning)")
    args = parser.parse_args()
    if args.evaluate:
        model = json.loads(gzip.decompress(args.evaluate.read_bytes()))
        evaluate(model, args.test)
        return
    rows = training_rows(args.per_task)
    print("training rows:", Counter(task for _, task in rows))
    clf, vocab, idf, rare_idf = train(rows, args.min_df, args.C)
    model = export(clf, vocab, idf, rare_idf, args.min_weight)
    print(f"features kept: {len(model['weights'])} of {len(vocab)}")
    report(model, rows, "train")
    evaluate(model, args.test)
    if not args.no_write:
        args.out.write_bytes(gzip.compress(json.dumps(model, separators=(",", ":")).encode(), mtime=0))
        print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
