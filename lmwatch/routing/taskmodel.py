"""The learned linear task model: weights shipped in the package, scored in pure Python.

`task_model.json.gz` (written by train/classifier/train.py) holds, per feature string of
lmwatch/routing/textfeatures.py, one integer weight per task (times `scale`) and a bias per task.
A text's feature values are 1/sqrt(number of its features), so the score of task t is
`bias[t] + scale * sum(w[f][t]) / sqrt(n)`: one dict lookup per feature and no numpy.

The model keeps one dict per group of `textfeatures.Parts`, keyed as the group is (a word pair is a
tuple of two words), so a request builds no feature string. A known feature's value there is one
int, its code: its integer weights packed (`PACK_BITS` bits per task, offset by `PACK_OFFSET` so
each part is positive) above its rank (`RANK_FIELD` bits), so the weights summed over all of a
text's features are one C-level `sum` of the codes, unpacked per task afterwards, and the rank
says which feature a code is for the reasons. Nothing but the dicts and the codes is touched per
feature: a tuple per feature cost a cache miss more each, and cache misses were the larger part of
the time on a busy machine. The reasons sort the known features by an int per ordered pair of tasks,
read from one array per pair (contiguous, indexed by rank).
"""

from __future__ import annotations

import gzip
import json
import math
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from itertools import chain, repeat
from operator import and_
from typing import Any, NamedTuple

from lmwatch.routing.textfeatures import LENGTH, Parts, label, part_of, parts

MODEL_FILE = "task_model.json.gz"
PACK_BITS = 24
PACK_OFFSET = 128
"""Weights are integers in [-127, 127]; a part holds the sum of up to 2**24 / 255 (65,000) features."""
_PACK_MASK = (1 << PACK_BITS) - 1
RANK_FIELD = 32
"""Low bits of a code that hold the feature's rank; the sum of a text's ranks stays below
2**32 (it has at most a few thousand features), so it never reaches the weights."""
_RANK_MASK = (1 << RANK_FIELD) - 1


class ModelFileError(ValueError):
    """The shipped model file is missing or malformed (a packaging bug, not a user error)."""


class Scored(NamedTuple):
    """The model's view of one text (a named tuple: made on every request, and faster to make than
    a frozen dataclass)."""

    logits: tuple[float, ...]
    """Per task, in `LinearModel.tasks` order."""
    codes: list[int]
    """The codes of the known features of the text."""
    value: float
    """What one unit of weight adds to a logit for this text: scale/sqrt(its number of features)."""


@dataclass(frozen=True)
class LinearModel:
    tasks: tuple[str, ...]
    bias: tuple[float, ...]
    scale: float
    lookups: tuple[Callable[[Any], int | None], ...]
    """Per group of `textfeatures.Parts`, in its order: the `get` of its dict, member -> code."""
    names: tuple[str, ...]
    """The feature strings by rank: the first by name has the highest rank."""
    labels: tuple[str, ...]
    """Their reason labels (`textfeatures.label`), by rank."""
    margins: tuple[tuple[array[int], ...], ...]
    """`margins[win][other]`, by rank: `margin << rank_bits | rank`, where the margin is the feature's
    weight for task `win` minus task `other`'s, so ints sort features by margin, ties by name, and
    still say which feature they are."""
    rank_bits: int
    idf: dict[str, float]
    """Inverse document frequency over the training texts (features not listed: `rare_idf`), so
    similarity to configured examples is not made of "the" and "is"."""
    rare_idf: float

    def score(self, text: str) -> Scored:
        """Every step is a C-level map or filter: no Python loop per feature on the request path."""
        found: tuple[set[Any], ...] = parts(text)
        codes: list[int] = list(filter(None, chain.from_iterable(map(map, self.lookups, found))))
        if not codes:
            return Scored(self.bias, [], 0.0)
        value = self.scale / math.sqrt(sum(map(len, found)))
        total = sum(codes) >> RANK_FIELD
        offset = PACK_OFFSET * len(codes)
        logits = tuple(
            [b + value * (((total >> (PACK_BITS * t)) & _PACK_MASK) - offset) for t, b in enumerate(self.bias)]
        )
        return Scored(logits, codes, value)

    def knows_nothing(self, scored: Scored) -> bool:
        """True when no feature but the length bucket (which every text has) is known to the model."""
        codes = scored.codes
        return not codes or (len(codes) == 1 and self.names[codes[0] & _RANK_MASK].startswith(LENGTH))

    def top_features(self, scored: Scored, win: int, other: int, k: int) -> list[tuple[str, float]]:
        """The reason labels of the `k` features that most favour task `win` over task `other`, with
        that margin, strongest first (ties: the first by name); one C-level sort of ints."""
        ranks = map(and_, scored.codes, repeat(_RANK_MASK))
        keys = sorted(map(self.margins[win][other].__getitem__, ranks), reverse=True)[:k]
        shift, labels, value = self.rank_bits, self.labels, scored.value
        mask = (1 << shift) - 1
        return [(labels[key & mask], (key >> shift) * value) for key in keys if key >> shift > 0]


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
    names = sorted(weights, reverse=True)  # rank = index: the first by name ranks highest
    shift = _rank_bits(len(names))
    tables: tuple[dict[Any, int], ...] = tuple({} for _ in Parts._fields)
    for rank, name in enumerate(names):
        group, member = part_of(name)
        packed = sum((x + PACK_OFFSET) << (PACK_BITS * t) for t, x in enumerate(weights[name]))
        tables[group][member] = packed << RANK_FIELD | rank
    margins = tuple(
        tuple(
            array("i", [(weights[f][win] - weights[f][other]) << shift | rank for rank, f in enumerate(names)])
            for other in range(len(tasks))
        )
        for win in range(len(tasks))
    )
    lookups = tuple(table.get for table in tables)
    labels = tuple(map(label, names))
    return LinearModel(tasks, bias, scale, lookups, tuple(names), labels, margins, shift, idf, rare_idf)


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
