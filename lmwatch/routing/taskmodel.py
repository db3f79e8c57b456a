"""The learned linear task model: weights shipped in the package, scored in pure Python.

`task_model.json.gz` (written by train/classifier/train.py) holds, per feature string of
lmwatch/routing/textfeatures.py, one integer weight per task (times `scale`) and a bias per task.
A text's feature values are 1/sqrt(number of its features), so the score of task t is
`bias[t] + scale * sum(w[f][t]) / sqrt(n)`: one dict lookup per feature and no numpy. The model
keeps one dict per group of `textfeatures.Parts`, keyed as the group is (a word pair is a tuple of
two words), so a request builds no feature string. Each known feature is a `Row`: its integer
weights packed into one int (`PACK_BITS` bits per task, offset by `PACK_OFFSET` so each part is
positive), so the sums over all of a text's features are one C-level `sum` of ints, unpacked per
task afterwards; and, for the reasons, one int per ordered pair of tasks that sorts the features by
how much they favour the one over the other.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import chain
from operator import itemgetter
from typing import Any

from lmwatch.routing.textfeatures import LENGTH, Parts, label, part_of, parts

MODEL_FILE = "task_model.json.gz"
PACK_BITS = 24
PACK_OFFSET = 128
"""Weights are integers in [-127, 127]; a part holds the sum of up to 2**24 / 255 (65,000) features."""
_PACK_MASK = (1 << PACK_BITS) - 1

Row = tuple[Any, ...]
"""A known feature: `(packed weights, feature string, reason label, *sort keys)`, a sort key per
ordered pair of tasks (`LinearModel.order`): `margin << rank bits | rank`, where the margin is the
feature's weight for the one task minus the other's and the rank is its place by name (the first by
name the highest), so ints sort the features by margin, ties by name, and say which row they are."""
PACKED, NAME, LABEL, KEYS = 0, 1, 2, 3
_GET_PACKED = itemgetter(PACKED)


class ModelFileError(ValueError):
    """The shipped model file is missing or malformed (a packaging bug, not a user error)."""


@dataclass(frozen=True)
class Scored:
    """The model's view of one text."""

    logits: tuple[float, ...]
    """Per task, in `LinearModel.tasks` order."""
    rows: list[Row]
    """The known features of the text."""
    value: float
    """What one unit of weight adds to a logit for this text: scale/sqrt(its number of features)."""


@dataclass(frozen=True)
class LinearModel:
    tasks: tuple[str, ...]
    bias: tuple[float, ...]
    scale: float
    lookups: tuple[Callable[[Any], Row | None], ...]
    """Per group of `textfeatures.Parts`, in its order: the `get` of its dict, member -> row."""
    ranked: tuple[Row, ...]
    """The rows by the rank their sort keys end with."""
    idf: dict[str, float]
    """Inverse document frequency over the training texts (features not listed: `rare_idf`), so
    similarity to configured examples is not made of "the" and "is"."""
    rare_idf: float

    def score(self, text: str) -> Scored:
        """Every step is a C-level map or filter: no Python loop per feature on the request path."""
        found: tuple[set[Any], ...] = parts(text)
        rows: list[Row] = list(filter(None, chain.from_iterable(map(map, self.lookups, found))))
        if not rows:
            return Scored(self.bias, [], 0.0)
        value = self.scale / math.sqrt(sum(map(len, found)))
        total = sum(map(_GET_PACKED, rows))
        offset = PACK_OFFSET * len(rows)
        logits = tuple(
            b + value * (((total >> (PACK_BITS * t)) & _PACK_MASK) - offset) for t, b in enumerate(self.bias)
        )
        return Scored(logits, rows, value)

    def order(self, win: int, other: int) -> int:
        """Where a row holds the sort key of how much it favours task `win` over task `other`."""
        return KEYS + win * (len(self.tasks) - 1) + other - (other > win)

    def top_features(self, scored: Scored, win: int, other: int, k: int) -> list[tuple[str, float]]:
        """The reason labels of the `k` features that most favour task `win` over task `other`, with
        that margin, strongest first (ties: the first by name); one C-level sort of ints."""
        keys = sorted(map(itemgetter(self.order(win, other)), scored.rows), reverse=True)[:k]
        shift = _rank_bits(len(self.ranked))
        mask, ranked, value = (1 << shift) - 1, self.ranked, scored.value
        return [(ranked[key & mask][LABEL], (key >> shift) * value) for key in keys if key >> shift > 0]


def knows_nothing(scored: Scored) -> bool:
    """True when no feature but the length bucket (which every text has) is known to the model."""
    rows = scored.rows
    return not rows or (len(rows) == 1 and rows[0][NAME].startswith(LENGTH))


def parse_model(data: dict[str, Any]) -> LinearModel:
    try:
        tasks = tuple(str(t) for t in data["tasks"])
        scale = float(data["scale"])
        bias = tuple(float(b) for b in data["bias"])
        weights = {str(f): [int(x) for x in w] for f, w in data["weights"].items()}
        idf = {str(f): float(x) for f, x in data["idf"].items()}
        rare_idf = float(data["rare_idf"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"task model file is malformed: {exc!r}") from None
    if len(bias) != len(tasks) or any(len(w) != len(tasks) for w in weights.values()):
        raise ModelFileError("task model file is malformed: weight rows do not match the task list")
    if any(abs(x) >= PACK_OFFSET for w in weights.values() for x in w):
        raise ModelFileError(f"task model file is malformed: a weight is outside ±{PACK_OFFSET - 1}")
    shift = _rank_bits(len(weights))
    ranked = [_row(f, weights[f], len(weights) - 1 - rank, shift) for rank, f in enumerate(sorted(weights))]
    ranked.reverse()
    tables: tuple[dict[Any, Row], ...] = tuple({} for _ in Parts._fields)
    for row in ranked:
        group, member = part_of(row[NAME])
        tables[group][member] = row
    lookups = tuple(table.get for table in tables)
    return LinearModel(tasks, bias, scale, lookups, tuple(ranked), idf, rare_idf)


def _row(feature: str, weights: list[int], rank: int, shift: int) -> Row:
    packed = sum((x + PACK_OFFSET) << (PACK_BITS * t) for t, x in enumerate(weights))
    keys = [(w - o) << shift | rank for i, w in enumerate(weights) for j, o in enumerate(weights) if i != j]
    return (packed, feature, label(feature), *keys)


def _rank_bits(count: int) -> int:
    return max(count, 1).bit_length()


@cache
def shipped_model() -> LinearModel:
    """The model in the package, read once per process (about 0.1 s)."""
    try:
        raw = resources.files("lmwatch.routing").joinpath(MODEL_FILE).read_bytes()
        data = json.loads(gzip.decompress(raw))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read the task model {MODEL_FILE}: {exc}") from None
    return parse_model(data)
