"""JSON shapes of model lists and per-response extras, one function per API surface.

Kept apart from the handlers so each shape can be compared with LM Studio's documented examples
(`docs/reference` fact sheet sections 2.1, 3.1, 3.2, 4) in one place.
"""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lmwatch.simulator.catalogue import Catalogue, Instance
    from lmwatch.simulator.settings import SimModel

CREATED = int(time.time())
RUNTIME = {"name": "llama.cpp-linux-x86_64-avx2", "version": "1.52.1", "supported_formats": ["gguf"]}
_PARAMS = re.compile(r"(?<![a-z0-9.])(\d+(?:\.\d+)?)b(?![a-z])", re.IGNORECASE)
_BITS = re.compile(r"(?:^|[^0-9])(\d{1,2})")


def openai_models(catalogue: Catalogue) -> dict[str, object]:
    """`GET /v1/models` on LM Studio: minimal entries; extra instances (`key:2`) listed by id too."""
    data: list[dict[str, object]] = []
    for model in catalogue.listed_models():
        data.append({"id": model.id, "object": "model", "owned_by": "organization_owner"})
        for inst in catalogue.instances_of(model.id):
            if inst.id != model.id:
                data.append({"id": inst.id, "object": "model", "owned_by": "organization_owner"})
    return {"object": "list", "data": data}


def plain_openai_models(catalogue: Catalogue) -> dict[str, object]:
    """`GET /v1/models` on a plain OpenAI-compatible server (llama.cpp-like): loaded instances only."""
    data = [
        {"id": inst.id, "object": "model", "owned_by": "llamacpp", "created": CREATED}
        for inst in catalogue.instances.values()
    ]
    return {"object": "list", "data": data}


def v0_model(catalogue: Catalogue, model: SimModel) -> dict[str, object]:
    """One `/api/v0/models` entry; `loaded_context_length` only when loaded, `capabilities` only
    when the model has tool use (the key is absent otherwise, as in real 0.3.17+ dumps)."""
    instances = catalogue.instances_of(model.id)
    entry: dict[str, object] = {
        "id": model.id,
        "object": "model",
        "type": model.type,
        "publisher": model.publisher,
        "arch": model.arch,
        "compatibility_type": model.format,
        "quantization": model.quantization,
        "state": "loaded" if instances else "not-loaded",
        "max_context_length": model.max_context_length,
    }
    if instances:
        entry["loaded_context_length"] = instances[0].context_length
    if model.tool_use:
        entry["capabilities"] = ["tool_use"]
    return entry


def v0_models(catalogue: Catalogue) -> dict[str, object]:
    return {"object": "list", "data": [v0_model(catalogue, m) for m in catalogue.listed_models()]}


def v1_models(catalogue: Catalogue) -> dict[str, object]:
    """`GET /api/v1/models` (LM Studio 0.4): every downloaded model, loaded or not."""
    return {"models": [v1_model(catalogue, m) for m in catalogue.models.values()]}


def v1_model(catalogue: Catalogue, model: SimModel) -> dict[str, object]:
    embedding = model.is_embedding
    entry: dict[str, object] = {
        "type": "embedding" if embedding else "llm",
        "publisher": model.publisher,
        "key": model.id,
        "display_name": display_name(model.id),
    }
    if not embedding:
        entry["architecture"] = model.arch
    entry.update(
        {
            "quantization": {"name": model.quantization, "bits_per_weight": bits_per_weight(model.quantization)},
            "size_bytes": model.size_bytes,
            "params_string": None if embedding else params_string(model.id),
            "loaded_instances": [
                {"id": inst.id, "config": instance_config(inst)} for inst in catalogue.instances_of(model.id)
            ],
            "max_context_length": model.max_context_length,
            "format": model.format,
        }
    )
    if not embedding:
        entry["capabilities"] = {"vision": model.type == "vlm", "trained_for_tool_use": model.tool_use}
    entry["description"] = None
    return entry


def instance_config(inst: Instance) -> dict[str, object]:
    """`loaded_instances[].config`: embeddings carry only `context_length`."""
    if inst.model.is_embedding:
        return {"context_length": inst.context_length}
    return {
        "context_length": inst.context_length,
        "eval_batch_size": 512,
        "parallel": inst.parallel,
        "flash_attention": True,
        "offload_kv_cache_to_gpu": True,
    }


def model_info(inst: Instance) -> dict[str, object]:
    """The `model_info` block of `/api/v0` responses."""
    m = inst.model
    return {"arch": m.arch, "quant": m.quantization, "format": m.format, "context_length": inst.context_length}


def display_name(key: str) -> str:
    """`google/gemma-3-4b` -> `Gemma 3 4B`: LM Studio-ish display names from keys."""
    words = key.rsplit("/", 1)[-1].replace("_", "-").split("-")
    out = []
    for word in words:
        if _PARAMS.fullmatch(word) or word.lower() in {"v1.5", "v0.3"}:
            out.append(word.upper() if not word.lower().startswith("v") else word)
        else:
            out.append(word[:1].upper() + word[1:])
    return " ".join(out)


def params_string(key: str) -> str | None:
    match = _PARAMS.search(key.rsplit("/", 1)[-1])
    return f"{match.group(1)}B" if match else None


def bits_per_weight(quantization: str) -> int:
    match = _BITS.search(quantization.upper().replace("BF", "F"))
    return int(match.group(1)) if match else 4
