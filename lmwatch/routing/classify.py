"""The task classifier: a learned linear model over text features, plus configured keywords and
example prompts, into coding, research, creative, analysis (or tasks the config adds).

Order of decision: configured keywords (whole words; most hits wins), then configured example
prompts (cosine similarity to a task's examples at or above `example_threshold`), then the learned
model (lmwatch/routing/taskmodel.py) with a few request-shape nudges (`tools` to coding,
`response_format` to analysis, a high temperature to creative). Reasons name the features that
moved the decision most, as `feature(task+points)`. Only the system prompt and the latest user
turn are read, each capped at `classifier.scan_chars`, so the cost is bounded whatever the
conversation length. A text the model knows nothing of means `classifier.default_task`.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from lmwatch.config import RoutingConfig
from lmwatch.routing.taskmodel import LinearModel, Scored, shipped_model
from lmwatch.routing.textfeatures import LENGTH, features

KEYWORD_CAP = 4
"""Keywords count once each and at most this many per task, so a long prompt cannot run away."""
REASONS = 4
"""Features named in `reasons` (the header shows the first three)."""
REMEMBERED = 1024
"""Answers kept per classifier, by the text read and the request's shape: an agent's tool loop
sends the same system prompt and last user turn again and again, and each is classified once."""
SHAPE_NUDGES = {"tools": ("coding", 3.0), "response_format": ("analysis", 1.5), "temperature": ("creative", 1.0)}
"""Request shape -> (task, logit added): signals the text-trained model cannot see."""
_SHAPE_KEYS = frozenset({*SHAPE_NUDGES, "functions"})
"""Body keys `_has_shape` reads: a body with none of them has no nudge (the common case)."""
_WORDS = re.compile(r"[a-z0-9]+(?:[+#]+|'[a-z]+)?")


@dataclass(frozen=True)
class Classification:
    task: str
    scores: Mapping[str, float]
    """The model's probability per task (rounded), plus keyword hits or example similarity of
    configured tasks when those decided."""
    reasons: tuple[str, ...]
    """Notes such as `keyword:poem(creative+0.41)`, strongest first."""


class Probabilities(Mapping[str, float]):
    """The softmax of the model's logits (rounded), worked out when first read: the `/v1` path reads
    only the task and the reasons, `/admin/route/explain` the scores too."""

    def __init__(self, tasks: tuple[str, ...], logits: list[float], top: float) -> None:
        self._tasks, self._logits, self._top = tasks, logits, top
        self._values: dict[str, float] | None = None

    def _dict(self) -> dict[str, float]:
        if self._values is None:
            exp = [math.exp(x - self._top) for x in self._logits]
            total = sum(exp)
            self._values = {t: round(e / total, 3) for t, e in zip(self._tasks, exp, strict=True)}
        return self._values

    def __getitem__(self, task: str) -> float:
        return self._dict()[task]

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return len(self._tasks)

    def __repr__(self) -> str:
        return repr(self._dict())


class Classifier:
    """The compiled classifier for one config."""

    def __init__(self, routing: RoutingConfig) -> None:
        cfg = routing.classifier
        self.default_task = cfg.default_task
        self.scan_chars = cfg.scan_chars
        self.tasks = routing.task_names()
        self.model = shipped_model()
        self._keywords = {
            task: frozenset(" ".join(_WORDS.findall(w.lower())) for w in words if _WORDS.search(w.lower()))
            for task, words in cfg.keywords.items()
        }
        self._examples = ExampleIndex(cfg.examples, self.model)
        self.example_threshold = cfg.example_threshold
        self._answers: OrderedDict[tuple[str, tuple[str, ...]], Classification] = OrderedDict()

    def classify(self, body: Mapping[str, Any]) -> Classification:
        """The task of a request: what the text read and the request's shape decide, remembered."""
        text = request_text(body, self.scan_chars)
        shape = () if body.keys().isdisjoint(_SHAPE_KEYS) else tuple(n for n in SHAPE_NUDGES if _has_shape(body, n))
        key = (text, shape)
        found = self._answers.get(key)
        if found is None:
            if len(self._answers) >= REMEMBERED:
                self._answers.popitem(last=False)  # the oldest (a dict would scan its holes)
            found = self._answers[key] = self._decide(text, shape)
        return found

    def _decide(self, text: str, shape: tuple[str, ...]) -> Classification:
        decided = self.by_keywords(text)
        if decided:
            return decided
        if self._examples.tasks:
            decided = self._by_examples(text)
            if decided:
                return decided
        return self._by_model(text, shape)

    def by_keywords(self, text: str) -> Classification | None:
        """The task configured keywords decide (most whole-word hits), or None when none hits."""
        if not self._keywords:
            return None
        padded = " " + " ".join(_WORDS.findall(text.lower())) + " "
        hits = {t: sorted(k for k in ks if f" {k} " in padded)[:KEYWORD_CAP] for t, ks in self._keywords.items()}
        best = max(hits, key=lambda t: len(hits[t]))
        if not hits[best]:
            return None
        scores = {t: float(len(h)) for t, h in hits.items() if h}
        reasons = tuple(f"keyword:{k}({best}+1)" for k in hits[best])
        return Classification(best, scores, reasons)

    def _by_examples(self, text: str) -> Classification | None:
        sims = self._examples.similarity(text)
        best = max(sims, key=lambda t: sims[t])
        if sims[best] < self.example_threshold:
            return None
        scores = {t: round(s, 3) for t, s in sims.items()}
        return Classification(best, scores, (f"examples:{best}({best}+{sims[best]:.2f})",))

    def _by_model(self, text: str, shape: tuple[str, ...]) -> Classification:
        model = self.model
        scored = model.score(text)
        if model.knows_nothing(scored):
            if not shape:
                return Classification(self.default_task, {}, ("default",))
            scored = Scored((0.0,) * len(model.tasks), [], 0.0)  # no prior: the shape alone decides
        logits = list(scored.logits)
        for name in shape:
            task, points = SHAPE_NUDGES[name]
            logits[model.tasks.index(task)] += points
        win, runner = sorted(range(len(logits)), key=logits.__getitem__, reverse=True)[:2]
        scores = Probabilities(model.tasks, logits, logits[win])
        task = model.tasks[win]
        top = model.top_features(scored, win, runner, REASONS)
        if not shape:  # top_features answers strongest first already
            return Classification(task, scores, tuple([f"{label}({task}+{m:.2f})" for label, m in top]))
        features = [(m, f"{label}({task}+{m:.2f})") for label, m in top]
        notes = [(p, f"{n}({t}+{p:g})") for n, (t, p) in SHAPE_NUDGES.items() if n in shape and t == task] + features
        notes.sort(key=lambda n: -n[0])
        return Classification(task, scores, tuple(note for _, note in notes[:REASONS]))


class ExampleIndex:
    """Per-task centroids of configured example prompts, over the model's features weighted by
    their inverse document frequency (binary tf-idf, unit length).

    One dict maps a feature to its weight in each task's centroid, so a request costs one lookup
    per feature whatever the number of examples.
    """

    def __init__(self, examples: Mapping[str, list[str]], model: LinearModel) -> None:
        self.tasks = tuple(t for t, texts in examples.items() if any(x.strip() for x in texts))
        self._model = model
        sums: dict[str, list[float]] = {}
        for i, task in enumerate(self.tasks):
            for text in examples[task]:
                vector = self._vector(text)
                for f, x in vector.items():
                    sums.setdefault(f, [0.0] * len(self.tasks))[i] += x
        norms = [math.sqrt(sum(v[i] ** 2 for v in sums.values())) or 1.0 for i in range(len(self.tasks))]
        self._index = {f: tuple(x / n for x, n in zip(v, norms, strict=True)) for f, v in sums.items()}

    def _vector(self, text: str) -> dict[str, float]:
        idf, rare = self._model.idf, self._model.rare_idf
        weights = {f: idf.get(f, rare) for f in features(text) if not f.startswith(LENGTH)}
        norm = math.sqrt(sum(x * x for x in weights.values())) or 1.0
        return {f: x / norm for f, x in weights.items()}

    def similarity(self, text: str) -> dict[str, float]:
        """Cosine similarity of `text` to each task's centroid."""
        get = self._index.get
        sims = [0.0] * len(self.tasks)
        for f, x in self._vector(text).items():
            row = get(f)
            if row is not None:
                for i, w in enumerate(row):
                    sims[i] += x * w
        return dict(zip(self.tasks, sims, strict=True))


def _has_shape(body: Mapping[str, Any], name: str) -> bool:
    if name == "tools":
        return bool(body.get("tools") or body.get("functions"))
    if name == "response_format":
        rf = body.get("response_format")
        return isinstance(rf, dict) and rf.get("type") in ("json_schema", "json_object")
    temperature = body.get("temperature")
    return isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature >= 1.0


def request_text(body: Mapping[str, Any], limit: int) -> str:
    """The system prompt and the latest user turn (chat), or the prompt (completions), capped."""
    messages = body.get("messages")
    if isinstance(messages, list):
        system = user = None
        for m in messages:  # plain loops: this runs on every request
            if isinstance(m, dict) and m.get("role") in ("system", "developer"):
                system = m
                break
        for m in reversed(messages):
            if isinstance(m, dict) and m.get("role") == "user":
                user = m
                break
        first = _content_text(system.get("content"), limit) if system is not None else ""
        last = _content_text(user.get("content"), limit) if user is not None else ""
        return f"{first}\n{last}" if first and last else first or last
    prompt = body.get("prompt")
    if isinstance(prompt, list):
        prompt = next((p for p in prompt if isinstance(p, str)), "")
    return prompt[:limit] if isinstance(prompt, str) else ""


def _content_text(content: Any, limit: int) -> str:
    if isinstance(content, str):
        return content[:limit]
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return "\n".join(t for t in texts if isinstance(t, str))[:limit]
    return ""
