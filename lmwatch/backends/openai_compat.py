"""Any OpenAI-compatible server (llama.cpp, vLLM, Ollama's /v1): `/v1/models` only.

Such servers list what they serve, so every listed model counts as loaded. Context length is read
from the extensions the common engines add (vLLM `max_model_len`, llama.cpp `meta.n_ctx_train`).
"""

from __future__ import annotations

from typing import Any

from lmwatch.backends.base import (
    MODEL_GONE,
    BackendClient,
    Flavour,
    as_dict,
    as_int,
    as_str,
    parse_entries,
    shape_error,
)
from lmwatch.backends.lmstudio import LM_STUDIO_MODEL_GONE
from lmwatch.registry import ModelInfo, ModelType

PATH = "/v1/models"
_EMBEDDING_HINTS = ("embed", "bge-", "gte-", "e5-", "minilm")


class OpenAICompat(Flavour):
    model_gone = (*MODEL_GONE, *LM_STUDIO_MODEL_GONE)
    """It may front any engine, LM Studio's `/v1` included (`kind: openai` on an LM Studio server)."""

    async def list_models(self, client: BackendClient) -> tuple[list[ModelInfo], list[str]]:
        return await client.get_parsed(PATH, _models)


def _models(body: Any) -> tuple[list[ModelInfo], list[str]]:
    entries = body.get("data") if isinstance(body, dict) else None
    if not isinstance(entries, list):
        raise shape_error(PATH, "no `data` list: not an OpenAI-compatible server")
    return parse_entries(PATH, entries, _model, "id")


def _model(entry: Any) -> ModelInfo | None:
    if not isinstance(entry, dict) or not as_str(entry.get("id")):
        return None
    model_id: str = entry["id"]
    meta = as_dict(entry.get("meta"))
    embedding = any(hint in model_id.lower() for hint in _EMBEDDING_HINTS)
    return ModelInfo(
        id=model_id,
        model_type=ModelType.EMBEDDINGS if embedding else ModelType.LLM,
        loaded=True,
        instance_ids=(model_id,),
        publisher=as_str(entry.get("owned_by")),
        max_context_length=as_int(entry.get("max_model_len")) or as_int(meta.get("n_ctx_train")),
        loaded_context_length=as_int(meta.get("n_ctx")),
        capabilities_reported=False,
    )
