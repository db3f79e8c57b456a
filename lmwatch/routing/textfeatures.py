"""Text features of the task classifier, shared by inference and by the training script.

Features are short strings, so the model file can say what each weight means and reasons can name
them: words (but function words), word pairs, the first and last characters of longer words
(character n-grams that survive inflection and compounds), the opening and closing words (where the instruction or the
question usually stands when a passage is quoted), symbol runs (code), a length bucket, and a few
marks (code fence, stack trace, table, any programming word, any form of creative writing). Pairs
and affixes come only from the head and tail of a long text, so a quoted passage costs one lookup
per word, not three. Looking them up in the model's dict is the hashing trick with the exact string
as its own hash: no collisions, and unknown features cost one failed lookup. Everything is pure
Python and bounded by `HEAD_CHARS + TAIL_CHARS` characters and `MAX_WORDS` words.
"""

from __future__ import annotations

import itertools
import re
import string
from collections.abc import Callable
from operator import itemgetter
from typing import Any, NamedTuple

HEAD_CHARS = 1000
TAIL_CHARS = 300
"""A longer text is read as its first `HEAD_CHARS` and last `TAIL_CHARS` characters (the words
between only count towards the length bucket), so a quoted passage costs no more than this."""
MAX_WORDS = 120
"""Words read per text: the first `MAX_WORDS - TAIL_WORDS` and the last `TAIL_WORDS`."""
TAIL_WORDS = 30
FOCUS_HEAD = 40
FOCUS_TAIL = 20
"""Word pairs and affixes come from the first `FOCUS_HEAD` and last `FOCUS_TAIL` words read, where
the instruction stands; a quoted passage between them adds its words only (each feature is a lookup)."""
EDGE_WORDS = 6
"""Opening and closing words that get a feature of their own (`^word`, `$word`)."""
AFFIX_MIN = 6
"""Words at least this long add their first and last four characters (`word<`, `>word`)."""

_FIRST3 = itemgetter(slice(3))
_FIRST4 = itemgetter(slice(4))
_LAST4 = itemgetter(slice(-4, None))
"""Slicers as C callables, so building the features runs no Python-level loop."""
_WORD_CHARS = string.ascii_lowercase + string.digits + "+#"
_PROSE = " \t\n\r.,!?:;'\"-"
_WORD_BYTES = bytes(
    c + 32 if chr(c).isascii() and chr(c).isupper() else c if c >= 128 or chr(c) in _WORD_CHARS else 32
    for c in range(256)
)
"""bytes.translate table: word characters (and UTF-8 bytes) stay, A-Z become a-z, the rest a space
(fast C): an ASCII text is lower-cased by it, without a pass of str.lower()."""
_SYMBOL_BYTES = bytes(32 if c >= 128 or chr(c).isalnum() or chr(c) in _PROSE else c for c in range(256))
"""The complement: symbol runs such as `();` or `=>` stay (code), letters and prose punctuation go."""
_TRACE = re.compile(
    r"Traceback \(most recent call last\)|^\s+at [\w$.<>]+\(.*:\d+\)|Exception in thread|^panic: |"
    r"error\[E\d{4}\]|File \"[^\"]+\", line \d+|Segmentation fault|^\s*\w*(?:Error|Exception): ",
    re.MULTILINE,
)
_TABLE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*\|", re.MULTILINE)

_TECH_WORDS = (
    "python javascript typescript java kotlin scala golang rust c++ c# php ruby perl lua haskell elixir erlang "
    "clojure swift objective-c dart julia matlab fortran cobol assembly bash shell zsh powershell sql mysql "
    "postgresql postgres sqlite mongodb redis html css scss sass json yaml toml xml regex regexp api apis sdk cli "
    "git github gitlab docker dockerfile kubernetes kubectl helm terraform ansible nginx apache linux unix npm "
    "pip conda maven gradle webpack node nodejs deno react vue angular svelte django flask fastapi spring laravel "
    "rails express jquery pandas numpy pytorch tensorflow sklearn jupyter compiler debugger runtime stacktrace "
    "traceback segfault exception function functions method methods class classes struct enum interface variable "
    "variables array arrays dict dictionary hashmap tuple boolean integer int float string strings substring "
    "recursion recursive loop loops iterator async await callback lambda regex snippet refactor refactoring debug "
    "debugging compile compiling syntax bug bugs codebase repo repository frontend backend endpoint endpoints "
    "query queries schema database json csv parse parsing algorithm algorithms leetcode unittest pytest jest "
    "junit makefile cmake gcc clang jvm llvm wasm"
)
TECH = frozenset(_TECH_WORDS.split())
"""Programming words: any of them adds `#tech`, so a rare one (`helm`, `svelte`) still counts for coding."""
_FORMS_WORDS = (
    "poem poems poetry haiku haikus sonnet sonnets limerick limericks verse verses lyrics song songs ballad ode "
    "rap story stories tale tales fable fables fairytale novel novella screenplay sitcom monologue dialogue "
    "fiction letter letters email eulogy toast speech slogan slogans tagline taglines jingle riddle riddles joke "
    "jokes pun puns tweet caption captions essay anecdote parody bedtime rhyme rhymes acrostic"
)
FORMS = frozenset(_FORMS_WORDS.split())
"""Forms of creative writing: any of them adds `#form`."""
_FUNCTION_WORDS = (
    "i me my we our you your he she it its they them their this that these those is are was were be been am a an "
    "the and or but if of to in on at for with as by from so not no do does did have has had can could would "
    "should will just s t"
)
FUNCTION_WORDS = frozenset(_FUNCTION_WORDS.split())
"""Words that are no feature alone (they still are in pairs and as opening or closing words): alone
they say more about how a collection was written (reviews in the first person, questions with "or")
than about the task, and the model learnt them as such. Dropping them raised every held-out score."""
FENCE = "#fence"
TRACE = "#trace"
TABLE = "#table"
TECH_MARK = "#tech"
FORM_MARK = "#form"
QUESTION = "?"
"""Prefix of the question-form feature: a text that ends in "?" adds `?` plus the first word of its
last sentence (`?why`, `?what`, `?can`), so a long question about a given topic reads as a question
rather than as work on material (its words alone look like a passage)."""
_SENTENCE_ENDS = ".!?\n:"
LENGTH = "len:"
"""Prefix of the length bucket (log2 of the word count); alone it means the text said nothing known."""


class Parts(NamedTuple):
    """A text's features in groups that cannot share a member, each keyed without its mark, so the
    request path builds no feature string: the count of distinct features is the sum of the sizes,
    and the model looks each group up in a dict of its own (`Parts` order, `render` spells a member)."""

    words: set[str]
    """Words (but function words), the marks, the length bucket and the question form."""
    pairs: set[tuple[str, str]]
    prefixes: set[str]
    suffixes: set[str]
    starts: set[str]
    ends: set[str]
    symbols: set[str]


def parts(text: str) -> Parts:
    """The distinct features of `text` by group (lower-cased inside; the structural marks read the
    original case, of the same head and tail)."""
    if not text:
        return Parts(set(), set(), set(), set(), set(), set(), set())
    size = len(text)
    skipped = 0
    if size > HEAD_CHARS + TAIL_CHARS:
        skipped = text.count(" ", HEAD_CHARS, size - TAIL_CHARS)
        text = text[:HEAD_CHARS] + "\n" + text[size - TAIL_CHARS :]
    raw = text.encode() if text.isascii() else text.lower().encode()  # isascii() is O(1)
    words = raw.translate(_WORD_BYTES).decode().split()
    n = len(words) + skipped
    if len(words) > MAX_WORDS:
        words = words[: MAX_WORDS - TAIL_WORDS] + words[-TAIL_WORDS:]
    alone = set(words)
    alone -= FUNCTION_WORDS
    if "```" in text:
        alone.add(FENCE)
    if _may_trace(text) and _TRACE.search(text):
        alone.add(TRACE)
    if "--" in text and "|" in text and _TABLE.search(text):
        alone.add(TABLE)
    if not TECH.isdisjoint(alone):  # the distinct words: no programming word is a function word
        alone.add(TECH_MARK)
    if not FORMS.isdisjoint(alone):
        alone.add(FORM_MARK)
    alone.add(LENGTH + str(n.bit_length()))
    ask = _question(text)
    if ask:
        alone.add(QUESTION)
        alone.add(ask)
    if len(words) > FOCUS_HEAD + FOCUS_TAIL:
        words = words[:FOCUS_HEAD] + words[len(words) - FOCUS_TAIL :]
    long = [w for w in words if len(w) >= AFFIX_MIN]  # faster than compress() of maps here
    return Parts(
        alone,
        set(itertools.pairwise(words)),
        set(map(_FIRST4, long)),
        set(map(_LAST4, long)),
        set(words[:EDGE_WORDS]),
        set(words[-EDGE_WORDS:]),
        set(map(_FIRST3, raw.translate(_SYMBOL_BYTES).decode(errors="ignore").split())),
    )


_SPELLINGS: tuple[Callable[[Any], str], ...] = (
    str,
    " ".join,
    "{}<".format,
    ">".__add__,
    "^".__add__,
    "$".__add__,
    "%".__add__,
)
"""How each group of `Parts` spells a member as a feature string."""


def render(group: int, member: Any) -> str:
    """The feature string of `member` of `Parts` group `group`."""
    return _SPELLINGS[group](member)


def features(text: str) -> set[str]:
    """The distinct features of `text` as strings (what training and the model file use)."""
    groups: tuple[set[Any], ...] = parts(text)
    return set(itertools.chain.from_iterable(map(map, _SPELLINGS, groups)))


def part_of(feature: str) -> tuple[int, Any]:
    """The `Parts` group of a feature string and its member there (the inverse of `render`)."""
    mark = feature[0]
    if mark == "^":
        return 4, feature[1:]
    if mark == "$":
        return 5, feature[1:]
    if mark == "%":
        return 6, feature[1:]
    if mark == ">":
        return 3, feature[1:]
    if feature.endswith("<"):
        return 2, feature[:-1]
    if " " in feature:
        first, _, second = feature.partition(" ")
        return 1, (first, second)
    return 0, feature


def label(feature: str) -> str:
    """A reason's name for a feature: `word:…`, `start:…`, `end:…`, `chars:…`, `symbols:…`,
    `question:…` (the last sentence asks, opening with that word), `code_fence`…"""
    prefix = feature[0]
    if prefix == "#":
        marks = {FENCE: "code_fence", TRACE: "stack_trace", TECH_MARK: "programming_word", FORM_MARK: "writing_form"}
        return marks.get(feature, feature[1:])
    if prefix == "^":
        return "start:" + feature[1:]
    if prefix == "$":
        return "end:" + feature[1:]
    if prefix == "%":
        return "symbols:" + feature[1:]
    if prefix == "?":
        return "question:" + feature[1:]
    if prefix == ">" or feature.endswith("<"):
        return "chars:" + feature
    if feature.startswith(LENGTH):
        return "length:" + feature[len(LENGTH) :]
    return "word:" + feature


def _may_trace(text: str) -> bool:
    """Cheap substring checks that gate the trace regex (most prompts have none of them); an `or`
    of `in`s, which costs less than any() over a tuple."""
    return (
        "Error" in text
        or "Exception" in text
        or "Traceback" in text
        or "panic: " in text
        or "Segmentation" in text
        or "    at " in text
    )


def _question(text: str) -> str:
    """`?` and the first word of the last sentence when `text` ends in a question mark, else ""."""
    text = text.rstrip()
    if not text.endswith("?"):
        return ""
    end = len(text) - 1
    start = max(text.rfind(c, 0, end) for c in _SENTENCE_ENDS) + 1
    head = text[start : start + 40].lower().encode().translate(_WORD_BYTES).decode().split()
    return QUESTION + (head[0] if head else "")
