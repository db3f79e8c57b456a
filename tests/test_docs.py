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
    present = set(re.findall(r"^[\s#-]*([A-Za-z_]+):", text, flags=re.MULTILINE))
    present |= set(re.findall(r"[{,]\s*([A-Za-z_]+):", text))
    missing = sorted(key for key in schema_keys(Config) if key.rsplit(".", 1)[-1] not in present)
    assert not missing, f"config.yaml does not mention: {missing}"
