"""Reading a `--models` YAML file into `SimModel`s, with errors that name the offending key.

    models:
      - id: qwen2.5-coder-7b-instruct
        type: llm            # llm | vlm | embeddings
        arch: qwen2
        tool_use: true

Every problem is reported at once as `models[1].type: ...`, and unknown keys are errors, so a typo
is never silently ignored (the same policy as lmwatch's own config).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lmwatch.simulator.settings import SimModel


class ModelsFileError(ValueError):
    """A models file that cannot be used; the message names the file and every bad key."""


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    type: Literal["llm", "vlm", "embeddings"] = "llm"
    publisher: str = ""
    arch: str = "llama"
    quantization: str = "Q4_K_M"
    max_context_length: int = Field(32768, ge=1)
    context_length: int = Field(4096, ge=1)
    loaded: bool = True
    tool_use: bool = False
    size_bytes: int = Field(4_683_073_184, ge=0)
    format: Literal["gguf", "mlx"] = "gguf"
    load_seconds: float | None = Field(None, ge=0)


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[_Entry] = Field(min_length=1)


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


def load_models_file(path: Path) -> list[SimModel]:
    """Parse and validate `path`; raises `ModelsFileError` listing every problem."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelsFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ModelsFileError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ModelsFileError(f"{path}: expected a mapping with a `models:` list at the top level")
    try:
        parsed = _File.model_validate(raw)
    except ValidationError as exc:
        problems = [f"{_where(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        raise ModelsFileError(f"{path}: " + "; ".join(problems)) from None
    models: list[SimModel] = []
    problems = []
    seen: set[str] = set()
    for i, entry in enumerate(parsed.models):
        if entry.id in seen:
            problems.append(f"models[{i}].id: duplicate id {entry.id!r}")
            continue
        seen.add(entry.id)
        try:
            models.append(SimModel(**entry.model_dump()))
        except ValueError as exc:
            problems.append(f"models[{i}]: {exc}")
    if problems:
        raise ModelsFileError(f"{path}: " + "; ".join(problems))
    return models
