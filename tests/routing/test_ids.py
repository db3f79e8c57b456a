"""LM Studio's model id forms and family matching."""

from __future__ import annotations

import pytest

from lmwatch.routing.ids import ModelId, family_matches, parse, same_model


def test_parse_every_form() -> None:
    assert parse("lmstudio-community/Qwen2.5-7B@q4_k_m:2") == ModelId("lmstudio-community", "qwen2.5-7b", "q4_k_m", 2)
    assert parse("gemma-3-1b-it-qat:2") == ModelId(None, "gemma-3-1b-it-qat", None, 2)
    assert parse("qwen/qwen3-14b@q6_k") == ModelId("qwen", "qwen3-14b", "q6_k", None)
    assert parse("mistral-7b") == ModelId(None, "mistral-7b", None, None)


@pytest.mark.parametrize(
    ("requested", "known", "quantization", "same"),
    [
        ("qwen/qwen3-14b", "qwen3-14b", None, True),  # publisher on one side only
        ("qwen3-14b", "qwen/qwen3-14b", None, True),
        ("other/qwen3-14b", "qwen/qwen3-14b", None, False),  # publishers disagree
        ("qwen3-14b@q6_k", "qwen3-14b", "Q6_K", True),  # variant = the reported quantization
        ("qwen3-14b@q4_k_m", "qwen3-14b", "Q6_K", False),
        ("qwen3-14b@q4_k_m", "qwen3-14b@q4_k_m", None, True),
        ("qwen3-14b", "qwen3-14b@q8_0", None, True),  # no variant asked: any
        ("QWEN3-14B", "qwen3-14b", None, True),
        ("qwen3-8b", "qwen3-14b", None, False),
    ],
)
def test_same_model(requested: str, known: str, quantization: str | None, same: bool) -> None:
    assert same_model(requested, known, quantization) is same


@pytest.mark.parametrize(
    ("pattern", "model_id", "matches"),
    [
        ("deepseek-coder", "deepseek-coder-v2-lite-instruct@q4_k_m", True),
        ("deepseek-coder", "lmstudio-community/DeepSeek-Coder-V2-Lite-Instruct-GGUF", True),
        ("code-llama", "codellama-7b-instruct", True),
        ("codellama", "code-llama-13b", True),
        ("llama-3-70b", "meta-llama-3-70b-instruct", True),
        ("qwen-2.5-coder", "Qwen2.5-Coder-7B-Instruct", True),
        ("glm-4", "THUDM/glm-4-9b-chat", True),
        ("llama-3", "llama-30b", False),  # ends inside a word
        ("llama", "codellama-7b", False),  # starts inside a word
        ("llama-3-8b", "meta-llama-3.1-8b-instruct", False),
        ("mistral", "mistralai/codestral-22b", False),
        ("qwen3-14b@q6_k", "qwen3-14b@q6_k", True),  # a pattern with a variant compares it too
        ("qwen3-14b@q6_k", "qwen3-14b@q4_k_m", False),
        ("", "anything", False),
    ],
)
def test_family_matches_at_word_boundaries(pattern: str, model_id: str, matches: bool) -> None:
    assert family_matches(pattern, model_id) is matches
