"""LM Studio 0.4+ native REST API (`/api/v1`): the richest model view, and load/unload."""

from __future__ import annotations

from typing import Any

from lmwatch.backends.base import (
    BackendClient,
    as_dict,
    as_int,
    as_list,
    as_str,
    parse_entries,
    shape_error,
)
from lmwatch.backends.lmstudio import LMStudio
from lmwatch.registry import ModelInfo, ModelType

PATH = "/api/v1/models"


class LMStudioV1(LMStudio):
    oldest_version = "0.4.0"
    supports_load = True

    async def list_models(self, client: BackendClient) -> tuple[list[ModelInfo], list[str]]:
        return await client.get_parsed(PATH, _models)

    async def load(
        self,
        client: BackendClient,
        model: str,
        context_length: int | None = None,
        parallel: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        """`parallel` is not a documented field of LM Studio's load endpoint: sent only when asked for."""
        request: dict[str, Any] = {"model": model}
        if context_length:
            request["context_length"] = context_length
        if parallel:
            request["parallel"] = parallel
        result = await client.post_json("/api/v1/models/load", request, timeout=timeout or client.config.timeout * 10)
        return result if isinstance(result, dict) else {"result": result}

    async def unload(self, client: BackendClient, instance_id: str) -> dict[str, Any]:
        result = await client.post_json("/api/v1/models/unload", {"instance_id": instance_id})
        return result if isinstance(result, dict) else {"result": result}


def _models(body: Any) -> tuple[list[ModelInfo], list[str]]:
    entries = body.get("models") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise shape_error(PATH, "no `models` list")
    return parse_entries(PATH, entries, _model, "key")


def _model(entry: Any) -> ModelInfo | None:
    if not isinstance(entry, dict) or not as_str(entry.get("key")):
        return None
    capabilities = as_dict(entry.get("capabilities"))
    instances = [i for i in as_list(entry.get("loaded_instances")) if as_str(as_dict(i).get("id"))]
    first_config = as_dict(instances[0].get("config")) if instances else {}
    vision = bool(capabilities.get("vision"))
    if entry.get("type") == "embedding":
        model_type = ModelType.EMBEDDINGS
    else:
        model_type = ModelType.VLM if vision else ModelType.LLM
    quantization = entry.get("quantization")
    return ModelInfo(
        id=entry["key"],
        model_type=model_type,
        loaded=bool(instances),
        instance_ids=tuple(i["id"] for i in instances),
        publisher=as_str(entry.get("publisher")),
        arch=as_str(entry.get("architecture")),
        quantization=as_str(quantization.get("name")) if isinstance(quantization, dict) else as_str(quantization),
        format=as_str(entry.get("format")),
        max_context_length=as_int(entry.get("max_context_length")),
        loaded_context_length=as_int(first_config.get("context_length")),
        tool_use=bool(capabilities.get("trained_for_tool_use")),
        vision=vision,
        parallel=as_int(first_config.get("parallel")),
        size_bytes=as_int(entry.get("size_bytes")),
        instance_contexts=tuple(as_int(as_dict(i.get("config")).get("context_length")) for i in instances),
    )
