"""The task classifier: the shipped model decides the four tasks, says why, and configured keywords
and example prompts add or steer tasks without retraining."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from lmwatch.config import ClassifierConfig, RoutingConfig
from lmwatch.routing.classify import Classifier, request_text
from lmwatch.routing.taskmodel import ModelFileError, parse_model, shipped_model
from lmwatch.routing.textfeatures import MAX_WORDS, features, part_of, parts, render

DEV = Path(__file__).resolve().parents[2] / "train" / "classifier" / "data" / "dev.jsonl"
REASON = re.compile(r"^[^()]+\((coding|research|creative|analysis)\+\d+(\.\d+)?\)$")


def chat(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "auto", "messages": [{"role": "user", "content": text}], **extra}


@pytest.fixture
def classifier() -> Classifier:
    return Classifier(RoutingConfig())


@pytest.mark.parametrize(
    ("text", "task"),
    [
        ("Why is this slow?\n```python\nfor i in range(10):\n    x += i\n```", "coding"),
        ('Traceback (most recent call last):\n  File "app.py", line 3, in <module>\nKeyError: 1', "coding"),
        ("Write a function that returns the sum of the squares of a list", "coding"),
        ("How do I refactor this in Rust?", "coding"),
        ("Write a haiku about autumn rain", "creative"),
        ("Give me a list of ideas for a birthday party", "creative"),
        ("Who was the first emperor of Rome?", "research"),
        ("Why is the sky blue?", "research"),
        ("Classify these as fruits or vegetables: apple, leek, plum", "analysis"),
        ("Summarize this passage in one sentence: The council voted to build a new bridge next year.", "analysis"),
    ],
)
def test_prompts_get_their_task(classifier: Classifier, text: str, task: str) -> None:
    assert classifier.classify(chat(text)).task == task


def test_reasons_name_the_strongest_features_first(classifier: Classifier) -> None:
    result = classifier.classify(chat("Write a poem about the sea"))
    assert result.task == "creative"
    assert result.reasons and all(REASON.match(r) for r in result.reasons), result.reasons
    points = [float(r.rsplit("+", 1)[1].rstrip(")")) for r in result.reasons]
    assert points == sorted(points, reverse=True)
    # "poem" is a form of creative writing: its own word or the writing-form mark it sets is named
    assert any(r.startswith(("word:poem(", "writing_form(")) for r in result.reasons)


def test_scores_are_probabilities_with_the_task_highest(classifier: Classifier) -> None:
    result = classifier.classify(chat("Extract the dates from this text: signed 4 May 1920, revised 2 June 1931."))
    assert set(result.scores) == {"coding", "research", "creative", "analysis"}
    assert sum(result.scores.values()) == pytest.approx(1.0, abs=0.01)
    assert max(result.scores, key=lambda t: result.scores[t]) == result.task == "analysis"


@pytest.mark.parametrize(
    ("extra", "task", "reason"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "coding", "tools(coding+3)"),
        ({"response_format": {"type": "json_schema", "json_schema": {}}}, "analysis", "response_format(analysis+1.5)"),
        ({"temperature": 1.3}, "creative", "temperature(creative+1)"),
    ],
)
def test_request_shape_nudges_the_task(classifier: Classifier, extra: dict[str, Any], task: str, reason: str) -> None:
    result = classifier.classify(chat("zqxv", **extra))
    assert result.task == task
    assert reason in result.reasons


def test_a_remembered_answer_is_per_text_and_shape(classifier: Classifier) -> None:
    """The same text asked again gets the same answer; another shape of request is decided anew."""
    plain = classifier.classify(chat("zqxv"))
    assert classifier.classify(chat("zqxv")) == plain
    with_tools = classifier.classify(chat("zqxv", tools=[{"type": "function", "function": {"name": "f"}}]))
    assert (plain.task, with_tools.task) == ("research", "coding")
    assert classifier.classify(chat("zqxv")).task == "research"


def test_text_the_model_knows_nothing_of_means_the_default_task(classifier: Classifier) -> None:
    for body in (chat("zqxv wkpj"), chat(""), {"messages": []}):
        result = classifier.classify(body)
        assert (result.task, result.reasons) == ("research", ("default",))


def test_configured_keywords_decide_first_and_add_a_task_type() -> None:
    routing = RoutingConfig(classifier=ClassifierConfig(keywords={"legal": ["contract", "liability clause"]}))
    classifier = Classifier(routing)
    assert "legal" in routing.task_names()
    result = classifier.classify(chat("Write a poem about the liability clause of this contract"))
    assert result.task == "legal"
    assert result.reasons == ("keyword:contract(legal+1)", "keyword:liability clause(legal+1)")
    assert classifier.classify(chat("The contractor wrote a poem")).task == "creative"  # whole words only


def test_configured_examples_add_a_task_without_retraining() -> None:
    examples = {
        "translation": [
            "Translate this sentence into French: the weather is nice today",
            "How do you say 'thank you very much' in Japanese?",
            "Translate the following paragraph from German to English",
            "What is the Spanish translation of 'where is the train station'?",
        ]
    }
    routing = RoutingConfig(classifier=ClassifierConfig(examples=examples))
    classifier = Classifier(routing)
    assert "translation" in routing.task_names()
    result = classifier.classify(chat("Translate this sentence into Italian: I would like a coffee"))
    assert result.task == "translation"
    assert result.reasons[0].startswith("examples:translation(translation+")
    assert result.scores["translation"] >= routing.classifier.example_threshold
    assert classifier.classify(chat("Write a poem about the sea")).task == "creative"


def test_a_higher_example_threshold_leaves_more_to_the_model() -> None:
    examples = {"translation": ["Translate this sentence into French: the weather is nice today"]}
    strict = Classifier(RoutingConfig(classifier=ClassifierConfig(examples=examples, example_threshold=0.99)))
    assert strict.classify(chat("Translate this sentence into Italian: I would like a coffee")).task != "translation"


@pytest.mark.parametrize("bad", [{"default_task": "gardening"}, {"example_threshold": 0}, {"example_threshold": 1.5}])
def test_invalid_classifier_config_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"default_task|example_threshold"):
        RoutingConfig(classifier=ClassifierConfig(**bad))


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
    text = "Why is the sky blue? " + "x " * 100 + "Write a function in Python that sorts a list"
    assert classifier.classify(chat(text)).task == "research"


def test_features_of_a_huge_text_are_bounded() -> None:
    huge = features(" ".join(f"w{i}" for i in range(100_000)))
    assert len({f for f in huge if re.fullmatch(r"w\d+", f)}) == MAX_WORDS
    assert "w0" in huge and "w99999" in huge and "w50000" not in huge  # the head and the tail are read


def test_a_closing_question_adds_its_opening_word() -> None:
    asked = features("Our boiler is twelve years old and makes a knocking noise. Why does it knock?")
    assert {f for f in asked if f.startswith("?")} == {"?", "?why"}
    assert not any(f.startswith("?") for f in features("Why it knocks: a short note on boilers."))
    assert "?" in features("?") and "?" in features("Really ?  ")


def test_feature_groups_share_no_feature_so_their_sizes_count_the_features() -> None:
    """The model counts a text's features as the sum of its groups' sizes and looks each group up in
    its own dict: that is the count and the lookup of the feature strings training used only if no
    two groups (nor two members of one) spell the same string."""
    texts = [json.loads(line)["text"] for line in DEV.read_text().splitlines() if line.strip()]
    texts += ["#tech #fence: a ```b``` | --- | c", "Error: x\n    at f (a.js:1:2)\nwhy?", "naïve café " * 50 + "and?"]
    for text in texts:
        groups = parts(text)
        spelled = [render(g, member) for g, members in enumerate(groups) for member in members]
        assert len(spelled) == len(set(spelled)) == len(features(text)), text
        assert set(spelled) == features(text)
        assert all(part_of(render(g, m)) == (g, m) for g, members in enumerate(groups) for m in members)


def test_reasons_break_ties_by_name() -> None:
    """Equal margins name the feature first by name, whatever order the text's sets iterate in."""
    weights = {"zebra": [5, 0], "apple": [5, 0], "mango": [5, 0], "kiwi": [1, 0]}
    model = parse_model({"tasks": ["a", "b"], "scale": 1, "bias": [0, 0], "weights": weights, "idf": {}, "rare_idf": 1})
    text = "zebra mango apple kiwi"
    scored = model.score(text)
    assert scored.logits == pytest.approx((16 / len(features(text)) ** 0.5, 0))  # 4 of its features known
    assert [name for name, _ in model.top_features(scored, 0, 1, 2)] == ["word:apple", "word:mango"]
    assert [name for name, _ in model.top_features(scored, 1, 0, 2)] == []  # nothing favours b


def test_malformed_model_file_is_a_clear_error() -> None:
    with pytest.raises(ModelFileError, match="malformed"):
        parse_model({"tasks": ["a", "b"], "scale": 1, "bias": [0, 0], "weights": {"x": [1]}})
    with pytest.raises(ModelFileError, match="malformed"):
        parse_model({"tasks": ["a"]})


def test_shipped_model_holds_on_the_held_out_dev_set() -> None:
    """The dev set was written separately from the training corpus (train/classifier/compose.py)."""
    model = shipped_model()
    rows = [json.loads(line) for line in DEV.read_text().splitlines() if line.strip()]
    right = 0
    for row in rows:
        logits = model.score(row["text"]).logits
        right += model.tasks[max(range(len(logits)), key=logits.__getitem__)] == row["task"]
    assert right / len(rows) >= 0.8
