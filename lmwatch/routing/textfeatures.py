"""Text features of the task classifier, shared by inference and by the training script.

Features are short strings, so the model file can say what each weight means and reasons can name
them: words, word pairs, the first and last characters of longer words (character n-grams that
survive inflection and compounds), the opening and closing words (where the instruction or the
question usually stands when a passage is quoted), symbol runs (code), a length bucket, and a few
structural marks (code fence, stack trace, table). Pairs and affixes come only from the head and
tail of a long text, so a quoted passage costs one lookup per word, not three. Looking them up in the model's
dict is the hashing trick with the exact string as its own hash: no collisions, and unknown
features cost one failed lookup. Everything is pure Python and bounded by `MAX_WORDS`.
"""

from __future__ import annotations

import itertools
import re
import string

MAX_WORDS = 160
"""Words read per text: the first `MAX_WORDS - TAIL_WORDS` and the last `TAIL_WORDS`."""
TAIL_WORDS = 40
FOCUS_HEAD = 40
FOCUS_TAIL = 20
"""Word pairs and affixes come from the first `FOCUS_HEAD` and last `FOCUS_TAIL` words read, where
the instruction stands; a quoted passage between them adds its words only (each feature is a lookup)."""
EDGE_WORDS = 6
"""Opening and closing words that get a feature of their own (`^word`, `$word`)."""
AFFIX_MIN = 6
"""Words at least this long add their first and last four characters (`word<`, `>word`)."""

_WORD_CHARS = string.ascii_lowercase + string.digits + "+#"
_PROSE = " \t\n\r.,!?:;'\"-"
_WORD_BYTES = bytes(c if c >= 128 or chr(c) in _WORD_CHARS else 32 for c in range(256))
"""bytes.translate table: word characters (and UTF-8 bytes) stay, the rest becomes a space (fast C)."""
_SYMBOL_BYTES = bytes(32 if c >= 128 or chr(c).isalnum() or chr(c) in _PROSE else c for c in range(256))
"""The complement: symbol runs such as `();` or `=>` stay (code), letters and prose punctuation go."""
_TRACE = re.compile(
    r"Traceback \(most recent call last\)|^\s+at [\w$.<>]+\(.*:\d+\)|Exception in thread|^panic: |"
    r"error\[E\d{4}\]|File \"[^\"]+\", line \d+|Segmentation fault|^\s*\w*(?:Error|Exception): ",
    re.MULTILINE,
)
_TRACE_HINTS = ("Traceback", "Error", "Exception", "panic: ", "Segmentation", "    at ")
"""Cheap substring checks that gate the trace regex (most prompts have none of them)."""
_TABLE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*\|", re.MULTILINE)

FENCE = "#fence"
TRACE = "#trace"
TABLE = "#table"
LENGTH = "len:"
"""Prefix of the length bucket (log2 of the word count); alone it means the text said nothing known."""


def features(text: str) -> set[str]:
    """The distinct features of `text` (lower-cased inside; the structural marks read the original)."""
    out: set[str] = set()
    if not text:
        return out
    if "```" in text:
        out.add(FENCE)
    if any(hint in text for hint in _TRACE_HINTS) and _TRACE.search(text):
        out.add(TRACE)
    if "--" in text and "|" in text and _TABLE.search(text):
        out.add(TABLE)
    raw = text.lower().encode()
    words = raw.translate(_WORD_BYTES).decode().split()
    n = len(words)
    if n > MAX_WORDS:
        words = words[: MAX_WORDS - TAIL_WORDS] + words[-TAIL_WORDS:]
    out.update(words)
    if len(words) > FOCUS_HEAD + FOCUS_TAIL:
        words = words[:FOCUS_HEAD] + words[len(words) - FOCUS_TAIL :]
    out.update(map(" ".join, itertools.pairwise(words)))
    long = [w for w in words if len(w) >= AFFIX_MIN]
    out.update(w[:4] + "<" for w in long)
    out.update(">" + w[-4:] for w in long)
    out.update("^" + w for w in words[:EDGE_WORDS])
    out.update("$" + w for w in words[-EDGE_WORDS:])
    out.update("%" + s[:3] for s in raw[:2000].translate(_SYMBOL_BYTES).decode(errors="ignore").split())
    out.add(LENGTH + str(n.bit_length()))
    return out
