"""The learned linear task model: weights shipped in the package, scored in pure Python.

`task_model.json.gz` (written by train/classifier/train.py) holds, per feature string of
lmwatch/routing/textfeatures.py, one integer weight per task (times `scale`) and a bias per task.
A text's feature values are 1/sqrt(number of its features), so the score of task t is
`bias[t] + scale * sum(w[f][t]) / sqrt(n)`: one dict lookup per feature and no numpy. The integer
weights of a feature are also packed into one int (`PACK_BITS` bits per task, offset by
`PACK_OFFSET` so each part is positive), so the sums over all of a text's features are one C-level
`sum` of ints, unpacked per task afterwards.
"""

from __future__ import annotations

import gzip
import heapq
import json
import math
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import compress
from operator import itemgetter, sub
from typing import Any

from lmwatch.routing.textfeatures import LENGTH, features

MODEL_FILE = "task_model.json.gz"
PACK_BITS = 24
PACK_OFFSET = 128
"""Weights are integers in [-127, 127]; a part holds the sum of up to 2**24 / 255 (65,000) features."""
_PACK_MASK = (1 << PACK_BITS) - 1


class ModelFileError(ValueError):
    """The shipped model file is missing or malformed (a packaging bug, not a user error)."""


@dataclass(frozen=True)
class Scored:
    """The model's view of one text."""

    logits: tuple[float, ...]
    """Per task, in `LinearModel.tasks` order."""
    names: list[str]
    """The known features of the text."""
    weights: list[tuple[int, ...]]
    """Their per-task integer weights, in `names` order (each contributes weight * `value`)."""
    value: float
    """What one unit of weight adds to a logit for this text: scale/sqrt(its number of features)."""


@dataclass(frozen=True)
class LinearModel:
    tasks: tuple[str, ...]
    bias: tuple[float, ...]
    scale: float
    weights: dict[str, tuple[int, ...]]
    """Per feature: the integer weight of each task, then all of them packed into one int."""
    idf: dict[str, float]
    """Inverse document frequency over the training texts (features not listed: `rare_idf`), so
    similarity to configured examples is not made of "the" and "is"."""
    rare_idf: float

    def score(self, text: str) -> Scored:
        """Every step is a C-level map or filter: no Python loop per feature on the request path."""
        feats = list(features(text))
        found = list(map(self.weights.get, feats))
        names = list(compress(feats, found))
        if not names:
            return Scored(self.bias, [], [], 0.0)
        weights: list[tuple[int, ...]] = list(filter(None, found))
        value = self.scale / math.sqrt(len(feats))
        total = sum(map(itemgetter(len(self.tasks)), weights))
        offset = PACK_OFFSET * len(weights)
        logits = tuple(
            b + value * (((total >> (PACK_BITS * t)) & _PACK_MASK) - offset) for t, b in enumerate(self.bias)
        )
        return Scored(logits, names, weights, value)


def top_features(scored: Scored, win: int, other: int, k: int) -> list[tuple[str, float]]:
    """The `k` features that most favour task index `win` over task index `other`, with that margin."""
    margins = list(map(sub, map(itemgetter(win), scored.weights), map(itemgetter(other), scored.weights)))
    best = heapq.nlargest(k, range(len(margins)), key=margins.__getitem__)  # C-level, no Python loop
    names, value = scored.names, scored.value
    return [(names[i], margins[i] * value) for i in best if margins[i] > 0]


def knows_nothing(scored: Scored) -> bool:
    """True when no feature but the length bucket (which every text has) is known to the model."""
    names = scored.names
    return not names or (len(names) == 1 and names[0].startswith(LENGTH))


def parse_model(data: dict[str, Any]) -> LinearModel:
    try:
        tasks = tuple(str(t) for t in data["tasks"])
        scale = float(data["scale"])
        bias = tuple(float(b) for b in data["bias"])
        weights = {str(f): _packed([int(x) for x in w]) for f, w in data["weights"].items()}
        idf = {str(f): float(x) for f, x in data["idf"].items()}
        rare_idf = float(data["rare_idf"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"task model file is malformed: {exc!r}") from None
    if len(bias) != len(tasks) or any(len(w) != len(tasks) + 1 for w in weights.values()):
        raise ModelFileError("task model file is malformed: weight rows do not match the task list")
    if any(abs(x) >= PACK_OFFSET for w in weights.values() for x in w[:-1]):
        raise ModelFileError(f"task model file is malformed: a weight is outside ±{PACK_OFFSET - 1}")
    return LinearModel(tasks, bias, scale, weights, idf, rare_idf)


def _packed(row: list[int]) -> tuple[int, ...]:
    return (*row, sum((x + PACK_OFFSET) << (PACK_BITS * t) for t, x in enumerate(row)))


@cache
def shipped_model() -> LinearModel:
    """The model in the package, read once per process (about 0.1 s)."""
    try:
        raw = resources.files("lmwatch.routing").joinpath(MODEL_FILE).read_bytes()
        data = json.loads(gzip.decompress(raw))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read the task model {MODEL_FILE}: {exc}") from None
    return parse_model(data)
