"""Model ids as LM Studio writes them, and family matching.

LM Studio names one model several ways: `publisher/name` (v1 keys, some /v1 lists), bare `name`
(older lists), `name@q4_k_m` (a quantization variant) and `name:2` (the second loaded instance of
the same model). A request may use any form; `ModelId` splits them so they can be compared.

Family patterns (`deepseek-coder`, `llama-3-70b`) match an id at word boundaries, ignoring case and
separators: `deepseek-coder` matches `deepseek-coder-v2-lite-instruct@q4_k_m`, `code-llama` matches
`codellama-7b`, `llama-3-70b` matches `meta-llama-3-70b-instruct`, but `llama-3` does not match
`llama-30b` and `llama` does not match `codellama`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_INSTANCE = re.compile(r"^(.*):(\d+)$")
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class ModelId:
    publisher: str | None
    name: str
    variant: str | None
    instance: int | None


@lru_cache(maxsize=4096)
def parse(model_id: str) -> ModelId:
    """`publisher/name@variant:2` -> its parts (each optional but the name), lower-cased."""
    text = model_id.strip().lower()
    instance = None
    if match := _INSTANCE.match(text):
        text, instance = match.group(1), int(match.group(2))
    variant = None
    if "@" in text:
        text, variant = text.rsplit("@", 1)
    publisher = None
    if "/" in text:
        publisher, text = text.rsplit("/", 1)
    return ModelId(publisher=publisher, name=text, variant=variant, instance=instance)


def same_model(requested: str, known: str, quantization: str | None = None) -> bool:
    """Does `requested` name the model a backend lists as `known`?

    Publisher and variant only have to agree when both sides give them; a requested variant also
    matches a model whose reported quantization is that variant. Instances are compared separately.
    """
    want, have = parse(requested), parse(known)
    if want.name != have.name:
        return False
    if want.publisher and have.publisher and want.publisher != have.publisher:
        return False
    if want.variant:
        have_variant = have.variant or (quantization or "").lower() or None
        if have_variant and have_variant != want.variant:
            return False
    return True


@lru_cache(maxsize=4096)
def _words(text: str) -> tuple[str, frozenset[int], frozenset[int]]:
    """Lower-case alphanumerics joined, with the offsets where words start and end."""
    joined, starts, ends = "", set(), set()
    for word in _WORD.findall(text.lower()):
        starts.add(len(joined))
        joined += word
        ends.add(len(joined))
    return joined, frozenset(starts), frozenset(ends)


@lru_cache(maxsize=16384)
def family_matches(pattern: str, model_id: str) -> bool:
    """True when `pattern` occurs in `model_id` starting and ending at word boundaries."""
    needle = _words(pattern)[0]
    if not needle:
        return False
    joined, starts, ends = _words(model_id.split("@", 1)[0] if "@" not in pattern else model_id)
    index = joined.find(needle)
    while index != -1:
        if index in starts and index + len(needle) in ends:
            return True
        index = joined.find(needle, index + 1)
    return False
