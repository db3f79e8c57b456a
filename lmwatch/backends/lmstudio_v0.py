"""LM Studio 0.3.6+ native REST API (`/api/v0`): loaded state, type (`vlm` = vision), context."""

from __future__ import annotations

from typing import Any

from lmwatch.backends.base import (
    BackendClient,
    as_int,
    as_list,
    as_str,
    parse_entries,
    shape_error,
)
from lmwatch.backends.lmstudio import LMStudio
from lmwatch.registry import ModelInfo, ModelType

PATH = "/api/v0/models"
_TYPES = {"llm": ModelType.LLM, "vlm": ModelType.VLM, "embeddings": ModelType.EMBEDDINGS}


class LMStudioV0(LMStudio):
    oldest_version = "0.3.6"

    async def list_models(self, client: BackendClient) -> tuple[list[ModelInfo], list[str]]:
        return await client.get_parsed(PATH, _models)


def _models(body: Any) -> tuple[list[ModelInfo], list[str]]:
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise shape_error(PATH, "no `data` list")
    if entries and not any(isinstance(e, dict) and "state" in e for e in entries):
        raise shape_error(PATH, "entries carry no `state`: not LM Studio's v0 API")
    return parse_entries(PATH, entries, _model, "id")


def _model(entry: Any) -> ModelInfo | None:
    if not isinstance(entry, dict) or not as_str(entry.get("id")):
        return None
    model_type = _TYPES.get(str(entry.get("type")), ModelType.LLM)
    capabilities = as_list(entry.get("capabilities"))
    loaded = entry.get("state") == "loaded"
    return ModelInfo(
        id=entry["id"],
        model_type=model_type,
        loaded=loaded,
        instance_ids=(entry["id"],) if loaded else (),
        publisher=as_str(entry.get("publisher")),
        arch=as_str(entry.get("arch")),
        quantization=as_str(entry.get("quantization")),
        format=as_str(entry.get("compatibility_type")),
        max_context_length=as_int(entry.get("max_context_length")),
        loaded_context_length=as_int(entry.get("loaded_context_length")),
        tool_use="tool_use" in capabilities,
        vision=model_type is ModelType.VLM or "vision" in capabilities,
    )
