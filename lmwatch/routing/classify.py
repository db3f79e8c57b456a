"""The task classifier: fast, explainable scoring of a request into coding, research, creative,
analysis (or tasks the config adds).

Each feature adds points to one task and says so in `reasons`: code fences, stack traces, code
syntax and language names point to coding; keywords to their task; request shape too (`tools` to
coding agents, `response_format` and tables to analysis, a high temperature to creative). Only the
system prompt and the latest user turn are read, each capped at `classifier.scan_chars`, so the
cost is bounded whatever the conversation length. No score at all means `classifier.default_task`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lmwatch.config import RoutingConfig
from lmwatch.routing.memo import PerConfig

KEYWORD_CAP = 4
"""Keywords count once each and at most this many per task, so a long prompt cannot run away."""

KEYWORDS: dict[str, tuple[str, ...]] = {
    "coding": (
        "code",
        "function",
        "method",
        "bug",
        "debug",
        "compile",
        "compiler",
        "refactor",
        "implement",
        "unit test",
        "regex",
        "exception",
        "stack trace",
        "endpoint",
        "script",
        "variable",
        "algorithm",
        "repository",
        "git",
        "dockerfile",
        "segfault",
        "lint",
        "syntax error",
        "pull request",
    ),
    "research": (
        "research",
        "source",
        "sources",
        "cite",
        "citation",
        "references",
        "literature",
        "paper",
        "study",
        "studies",
        "history",
        "explain",
        "what is",
        "who was",
        "who is",
        "background",
        "overview",
        "evidence",
        "according to",
        "why do",
        "why does",
        "how does",
    ),
    "creative": (
        "story",
        "poem",
        "haiku",
        "lyrics",
        "song",
        "novel",
        "fiction",
        "character",
        "plot",
        "imagine",
        "creative",
        "screenplay",
        "limerick",
        "fairy tale",
        "rhyme",
        "brainstorm",
        "slogan",
        "fantasy",
    ),
    "analysis": (
        "analyze",
        "analyse",
        "analysis",
        "data",
        "dataset",
        "csv",
        "statistics",
        "statistical",
        "trend",
        "metrics",
        "evaluate",
        "compare",
        "comparison",
        "pros and cons",
        "calculate",
        "forecast",
        "correlation",
        "summarize",
        "summarise",
        "kpi",
        "revenue",
        "breakdown",
    ),
}
TIE_ORDER = ("coding", "analysis", "research", "creative")
"""Equal scores resolve in this order (more specific tasks first); configured tasks come after."""

_FENCE = re.compile(r"```([A-Za-z+#]*)")
_TRACE = re.compile(
    r"Traceback \(most recent call last\)|^\s+at [\w$.<>]+\(.*:\d+\)|Exception in thread|^panic: |"
    r"error\[E\d{4}\]|File \"[^\"]+\", line \d+|Segmentation fault|^\s*\w*(?:Error|Exception): ",
    re.MULTILINE,
)
_TRACE_HINTS = ("Traceback", "Error", "Exception", "panic: ", "error[E", "Segmentation", "    at ", "\tat ")
"""Cheap substring checks that gate the trace regex (most prompts have none of them)."""
_SYNTAX = re.compile(
    r"^\s*(?:def |class \w|import \w|from \w+ import|#include|fn \w|func \w|public |private |"
    r"const \w+ ?=|let \w+ ?=|var \w+ ?=|function \w|SELECT .+ FROM)|=>|;\s*$|\)\s*\{\s*$",
    re.MULTILINE,
)
_WORDS = re.compile(r"[a-z0-9]+(?:\+\+|#|\.js)?")
LANGUAGES = frozenset(
    (
        "python",
        "javascript",
        "typescript",
        "java",
        "rust",
        "golang",
        "kotlin",
        "swift",
        "ruby",
        "php",
        "sql",
        "bash",
        "haskell",
        "scala",
        "c++",
        "c#",
        "react",
        "django",
        "node.js",
        "numpy",
        "pandas",
    )
)
_TABLE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*\|", re.MULTILINE)


@dataclass(frozen=True)
class Classification:
    task: str
    scores: Mapping[str, float]
    reasons: tuple[str, ...]
    """Feature notes such as `code_fence(coding+3)`, strongest first."""


class Classifier:
    """The compiled classifier for one config."""

    def __init__(self, routing: RoutingConfig) -> None:
        self.default_task = routing.classifier.default_task
        self.scan_chars = routing.classifier.scan_chars
        self.tasks = routing.task_names()
        words: dict[str, set[str]] = {task: set(KEYWORDS.get(task, ())) for task in self.tasks}
        for task, extra in routing.classifier.keywords.items():
            words[task].update(" ".join(_WORDS.findall(w.lower())) for w in extra if w.strip())
        self._keywords = {task: frozenset(w for w in ws if " " not in w) for task, ws in words.items()}
        self._phrases = {task: tuple(w for w in ws if " " in w) for task, ws in words.items()}
        self._order = [t for t in TIE_ORDER if t in self.tasks] + sorted(self.tasks - set(TIE_ORDER))

    def classify(self, body: Mapping[str, Any]) -> Classification:
        text = request_text(body, self.scan_chars)
        notes: list[tuple[float, str, str]] = []
        self._text_features(text, notes)
        _shape_features(body, notes)
        scores: dict[str, float] = {}
        for points, task, _ in notes:
            if task in self.tasks:
                scores[task] = scores.get(task, 0.0) + points
        best = max(self._order, key=lambda t: scores.get(t, 0.0))  # max keeps the first of equals: TIE_ORDER
        task = best if scores.get(best, 0.0) > 0 else self.default_task
        reasons = tuple(f"{name}({t}+{p:g})" for p, t, name in sorted(notes, key=lambda n: -n[0]))
        return Classification(task=task, scores=scores, reasons=reasons or ("default",))

    def _text_features(self, text: str, notes: list[tuple[float, str, str]]) -> None:
        if not text:
            return
        fences = _FENCE.findall(text)
        if fences:
            notes.append((3.0, "coding", "code_fence"))
        if any(hint in text for hint in _TRACE_HINTS) and _TRACE.search(text):
            notes.append((3.0, "coding", "stack_trace"))
        syntax = len(_SYNTAX.findall(text))
        if syntax:
            notes.append((float(min(syntax, 3)), "coding", "code_syntax"))
        lower = text.lower()
        words = _WORDS.findall(lower)
        terms = set(words)
        languages = (terms & LANGUAGES) | {f.lower() for f in fences if f}
        if languages:
            notes.append((float(min(len(languages), 2)), "coding", "language:" + min(languages)))
        for task, keywords in self._keywords.items():
            hits = (terms & keywords) | {p for p in self._phrases[task] if p in lower}
            if hits:
                notes.append((float(min(len(hits), KEYWORD_CAP)), task, "keyword:" + min(hits)))
        if _TABLE.search(text):
            notes.append((2.0, "analysis", "table"))
        if sum(w[0].isdigit() for w in words) >= 12:
            notes.append((1.0, "analysis", "numbers"))


def _shape_features(body: Mapping[str, Any], notes: list[tuple[float, str, str]]) -> None:
    if body.get("tools") or body.get("functions"):
        notes.append((1.0, "coding", "tools"))
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object"):
        notes.append((2.0, "analysis", "response_format"))
    temperature = body.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool) and temperature >= 1.0:
        notes.append((1.0, "creative", "temperature"))


def request_text(body: Mapping[str, Any], limit: int) -> str:
    """The system prompt and the latest user turn (chat), or the prompt (completions), capped."""
    messages = body.get("messages")
    if isinstance(messages, list):
        system = next((m for m in messages if isinstance(m, dict) and m.get("role") in ("system", "developer")), None)
        user = next((m for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"), None)
        parts = [_content_text(m.get("content"), limit) for m in (system, user) if m is not None]
        return "\n".join(p for p in parts if p)
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


classifier_for = PerConfig(Classifier)
"""The Classifier of a RoutingConfig, recompiled when a reload swaps the config."""
