"""The docs stay true: config.yaml names every schema key; the README lists every metric."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args, get_origin

from pydantic import BaseModel

from lmwatch.config import Config

REPO = Path(__file__).resolve().parent.parent


def schema_keys(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, field in model.model_fields.items():
        yield f"{prefix}{name}"
        for inner in _models_in(field.annotation):
            yield from schema_keys(inner, f"{prefix}{name}.")


def _models_in(annotation: Any) -> Iterator[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    elif get_origin(annotation) is not None:
        for arg in get_args(annotation):
            yield from _models_in(arg)


def test_config_example_mentions_every_key() -> None:
    """Each key appears in config.yaml as `key:` (set or commented out), so the example is complete."""
    text = (REPO / "config.yaml").read_text()
    present = set(re.findall(r"^[\s#-]*([A-Za-z_][A-Za-z0-9_]*):", text, flags=re.MULTILINE))
    present |= set(re.findall(r"[{,]\s*([A-Za-z_][A-Za-z0-9_]*):", text))
    missing = sorted(key for key in schema_keys(Config) if key.rsplit(".", 1)[-1] not in present)
    assert not missing, f"config.yaml does not mention: {missing}"


# --- docs/configuration.md: generated from the schema, checked against it ---------------------------

REFERENCE = REPO / "docs" / "configuration.md"
_KEY_LINE = re.compile(r"^(?P<lead>\s*(?:#\s*)?(?:-\s+)?)(?P<key>[A-Za-z_]+):(?P<rest>.*)$")


def example_comments() -> dict[str, str]:
    """`path -> comment` from config.yaml, for set and commented-out keys (list items drop their index)."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in (REPO / "config.yaml").read_text().splitlines():
        match = _KEY_LINE.match(line)
        if not match:
            continue
        column = len(match["lead"]) - (2 if "#" in match["lead"] else 0)  # `# key:` aligns with `key:`
        while stack and stack[-1][0] >= column:
            stack.pop()
        stack.append((column, match["key"]))
        comment = match["rest"].split(" # ", 1)[1].strip() if " # " in match["rest"] else ""
        found.setdefault(".".join(k for _, k in stack), comment)
    return found


def _type_name(annotation: Any) -> str:
    text = getattr(annotation, "__name__", None) if get_origin(annotation) is None else None
    return text or str(annotation).replace("typing.", "").replace("lmwatch.config.", "").replace("pathlib.", "")


def reference_rows(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    comments = example_comments()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        inner = list(_models_in(field.annotation))
        default = "" if field.is_required() else repr(field.get_default(call_default_factory=True))
        if inner:
            default = ""
        description = (field.description or comments.get(path, "")).replace("\n", " ").replace("|", "\\|")
        kind = _type_name(field.annotation).replace("|", "\\|")
        yield path, kind, default.replace("|", "\\|"), " ".join(description.split())
        for sub in inner:
            yield from reference_rows(sub, f"{path}.")


def render_reference() -> str:
    rows = "\n".join(f"| `{p}` | `{t}` | {f'`{d}`' if d else ''} | {m} |" for p, t, d, m in reference_rows(Config))
    return (
        "# Configuration reference\n\n"
        "Every key lmwatch accepts, generated from its schema (`lmwatch/config.py`); `tests/test_docs.py` fails\n"
        "when this file and the schema differ (regenerate with `LMWATCH_UPDATE_DOCS=1 .venv/bin/pytest\n"
        "tests/test_docs.py`). `config.yaml` is the same reference as a commented example. Unknown keys are\n"
        "errors; `${VAR}` and `LMWATCH_<SECTION>__<KEY>` work for every scalar (see the README).\n\n"
        "| key | type | default | meaning |\n|---|---|---|---|\n" + rows + "\n"
    )


def test_configuration_reference_matches_the_schema() -> None:
    import os

    rendered = render_reference()
    undocumented = [p for p, _, _, m in reference_rows(Config) if not m]
    assert not undocumented, f"keys with neither a docstring nor a config.yaml comment: {undocumented}"
    if os.environ.get("LMWATCH_UPDATE_DOCS"):
        REFERENCE.write_text(rendered)
    assert REFERENCE.read_text() == rendered, "docs/configuration.md is stale: regenerate it (see its header)"
