"""The task classifier: each feature moves the task it should, says so, and stays cheap."""

from __future__ import annotations

import time
from typing import Any

import pytest

from lmwatch.config import ClassifierConfig, RoutingConfig
from lmwatch.routing.classify import Classifier, request_text


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(RoutingConfig())


@pytest.mark.parametrize(
    ("body", "task", "reason"),
    [
        (chat("Why is this slow?\n```python\nfor i in range(10):\n    x += i\n```"), "coding", "code_fence"),
        (
            chat('Traceback (most recent call last):\n  File "app.py", line 3, in <module>\nKeyError: 1'),
            "coding",
            "stack_trace",
        ),
        (chat("panic: runtime error: index out of range"), "coding", "stack_trace"),
        (chat("def add(a, b):\n    return a + b"), "coding", "code_syntax"),
        (chat("How do I refactor this in Rust?"), "coding", "language:rust"),
        (chat("Write a haiku about autumn rain"), "creative", "keyword:haiku"),
        (chat("Summarize the trend in this dataset and compare quarterly revenue"), "analysis", "keyword:compare"),
        (chat("| q | revenue |\n|---|---|\n| 1 | 10 |"), "analysis", "table"),
        (chat("Explain the history of the printing press and cite sources"), "research", "keyword:cite"),
        (
            chat("Extract the fields", response_format={"type": "json_schema", "json_schema": {}}),
            "analysis",
            "response_format",
        ),
        (chat("hi", tools=[{"type": "function", "function": {"name": "f"}}]), "coding", "tools"),
        (chat("hi", temperature=1.3), "creative", "temperature"),
    ],
)
def test_features_point_at_their_task(classifier: Classifier, body: dict[str, Any], task: str, reason: str) -> None:
    result = classifier.classify(body)
    assert result.task == task
    assert any(r.startswith(reason) for r in result.reasons), result.reasons


def test_no_feature_means_the_default_task(classifier: Classifier) -> None:
    result = classifier.classify(chat("hello there"))
    assert (result.task, result.reasons) == ("research", ("default",))


def test_reasons_carry_points_strongest_first(classifier: Classifier) -> None:
    result = classifier.classify(chat("```js\nconst x = 1;\n```\nwrite a poem too"))
    assert result.task == "coding"
    assert result.reasons[0] == "code_fence(coding+3)"
    assert result.scores["creative"] == 1


def test_equal_scores_resolve_in_tie_order(classifier: Classifier) -> None:
    assert classifier.classify(chat("a poem to analyze")).task == "analysis"  # analysis = creative = 1
    assert classifier.classify(chat("the poem about the research")).task == "research"  # research = creative = 1


def test_configured_keywords_add_a_task_type() -> None:
    routing = RoutingConfig(classifier=ClassifierConfig(keywords={"legal": ["contract", "liability clause"]}))
    classifier = Classifier(routing)
    assert "legal" in routing.task_names()
    result = classifier.classify(chat("Review the liability clause of this contract"))
    assert result.task == "legal"
    assert result.reasons[0] == "keyword:contract(legal+2)"


def test_default_task_must_be_a_task() -> None:
    with pytest.raises(ValueError, match="not a task"):
        RoutingConfig(classifier=ClassifierConfig(default_task="gardening"))


def test_only_system_prompt_and_latest_user_turn_are_read() -> None:
    body = {
        "messages": [
            {"role": "system", "content": "You are a poet."},
            {"role": "user", "content": "```python\nprint(1)\n```"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "now a story"}, {"type": "image_url"}]},
        ]
    }
    assert request_text(body, 1000) == "You are a poet.\nnow a story"
    assert Classifier(RoutingConfig()).classify(body).task == "creative"


def test_completions_prompt_is_classified(classifier: Classifier) -> None:
    assert classifier.classify({"prompt": ["def main():\n    pass"]}).task == "coding"


def test_text_beyond_scan_chars_is_ignored() -> None:
    classifier = Classifier(RoutingConfig(classifier=ClassifierConfig(scan_chars=100)))
    assert classifier.classify(chat("x " * 100 + "write a poem")).task == "research"


def test_cost_is_bounded_for_huge_prompts(classifier: Classifier) -> None:
    body = chat("word " * 200_000 + "```python\n")
    started = time.perf_counter()
    for _ in range(10):
        classifier.classify(body)
    assert (time.perf_counter() - started) / 10 < 0.02  # the default 4000-character cap holds
