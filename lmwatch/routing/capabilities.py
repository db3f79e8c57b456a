"""The capability table: model families, what each is good at, and which roles serve which task.

Used after a task's configured preferences: a request for coding tries coding families, then
general ones, then lightweight ones. Table order is rank within a role (bigger, stronger first).
`routing.capabilities` replaces a built-in family by name or adds new ones ahead of the built-ins;
`routing.task_roles` overrides the roles of a task.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lmwatch.config import CapabilityFamily, RoutingConfig
from lmwatch.registry import ModelInfo, ModelType
from lmwatch.routing.ids import family_matches

EMBEDDINGS = "embeddings"
VISION = "vision"


@dataclass(frozen=True)
class Family:
    """A model family: the id patterns that name it and the roles it serves (table order is rank)."""

    name: str
    match: tuple[str, ...]
    roles: tuple[str, ...]
    vision: bool = False
    tool_use: bool = False


BUILT_IN: tuple[Family, ...] = (
    # coding
    Family("qwen2.5-coder", ("qwen2.5-coder", "qwen3-coder"), ("coding",), tool_use=True),
    Family("deepseek-coder", ("deepseek-coder",), ("coding",)),
    Family("code-llama", ("codellama", "code-llama"), ("coding",)),
    Family("starcoder2", ("starcoder2",), ("coding",)),
    # general
    Family("llama-3-70b", ("llama-3-70b", "llama-3.1-70b", "llama-3.3-70b"), ("general",), tool_use=True),
    Family("mistral-large", ("mistral-large",), ("general",), tool_use=True),
    Family("mistral-22b", ("mistral-small", "mistral-22b"), ("general",), tool_use=True),
    Family("llama-3-8b", ("llama-3-8b", "llama-3.1-8b"), ("general",), tool_use=True),
    Family("mistral-7b", ("mistral-7b",), ("general",), tool_use=True),
    # analysis
    Family("glm-4", ("glm-4",), ("analysis", "general"), tool_use=True),
    # lightweight
    Family("phi-3-mini", ("phi-3-mini", "phi-3.5-mini"), ("lightweight",)),
    Family("smollm", ("smollm", "smollm2"), ("lightweight",)),
    # vision
    Family("gemma-3", ("gemma-3",), (VISION, "general"), vision=True),
    Family("qwen-vl", ("qwen-vl", "qwen2-vl", "qwen2.5-vl"), (VISION,), vision=True),
    Family("llava", ("llava",), (VISION,), vision=True),
    Family("pixtral", ("pixtral",), (VISION,), vision=True),
    Family("llama-3.2-vision", ("llama-3.2-11b-vision", "llama-3.2-90b-vision"), (VISION,), vision=True),
    Family("minicpm-v", ("minicpm-v",), (VISION,), vision=True),
    # embeddings
    Family("nomic-embed", ("nomic-embed",), (EMBEDDINGS,)),
    Family("bge", ("bge",), (EMBEDDINGS,)),
    Family("gte", ("gte",), (EMBEDDINGS,)),
    Family("e5", ("e5",), (EMBEDDINGS,)),
    Family("mxbai-embed", ("mxbai-embed",), (EMBEDDINGS,)),
    Family("all-minilm", ("all-minilm",), (EMBEDDINGS,)),
    Family("arctic-embed", ("arctic-embed",), (EMBEDDINGS,)),
    Family("text-embedding", ("text-embedding",), (EMBEDDINGS,)),
)

TASK_ROLES: dict[str, tuple[str, ...]] = {
    "coding": ("coding", "general", "lightweight"),
    "research": ("general", "analysis", "lightweight"),
    "creative": ("general", "lightweight"),
    "analysis": ("analysis", "general", "lightweight"),
    EMBEDDINGS: (EMBEDDINGS,),
}
DEFAULT_ROLES = ("general", "lightweight")
"""Roles of a task the config adds without saying which roles serve it."""


class Capabilities:
    """The table in force for one config, with a per-id memo (ids repeat on every request)."""

    def __init__(self, routing: RoutingConfig) -> None:
        overrides = tuple(_from_config(name, fam) for name, fam in routing.capabilities.items())
        replaced = {f.name for f in overrides}
        self.families = overrides + tuple(f for f in BUILT_IN if f.name not in replaced)
        # an id may match several families (`llava-v1.6-mistral-7b`): the specialised ones win
        self._lookup = sorted(self.families, key=lambda f: not (f.vision or EMBEDDINGS in f.roles))
        self._task_roles = {**TASK_ROLES, **{t: tuple(r) for t, r in routing.task_roles.items()}}
        self._memo: dict[str, Family | None] = {}

    def family(self, model_id: str) -> Family | None:
        if model_id not in self._memo:
            if len(self._memo) > 4096:
                self._memo.clear()
            self._memo[model_id] = next(
                (f for f in self._lookup if any(family_matches(p, model_id) for p in f.match)), None
            )
        return self._memo[model_id]

    def roles(self, task: str) -> tuple[str, ...]:
        return self._task_roles.get(task, DEFAULT_ROLES)

    def families_for(self, role: str) -> tuple[Family, ...]:
        return tuple(f for f in self.families if role in f.roles)

    def is_embedding(self, model: ModelInfo) -> bool:
        if model.model_type is ModelType.EMBEDDINGS:
            return True
        family = self.family(model.id)
        return family is not None and EMBEDDINGS in family.roles

    def is_vision(self, model: ModelInfo) -> bool:
        if model.vision or model.model_type is ModelType.VLM:
            return True
        family = self.family(model.id)
        return family is not None and family.vision

    def describe(self, model: ModelInfo) -> ModelInfo:
        """`model` with its type, vision and tool use from its family, for a server that lists models
        without saying (the registry applies this, so /status and the metrics agree with routing)."""
        family = self.family(model.id)
        if family is None:
            return model
        model_type = model.model_type
        if EMBEDDINGS in family.roles:
            model_type = ModelType.EMBEDDINGS
        elif family.vision and model_type is ModelType.LLM:
            model_type = ModelType.VLM
        vision, tool_use = model.vision or family.vision, model.tool_use or family.tool_use
        return dataclasses.replace(model, model_type=model_type, vision=vision, tool_use=tool_use)

    def tool_use(self, model: ModelInfo) -> bool:
        if model.tool_use:
            return True
        family = self.family(model.id)
        return family is not None and family.tool_use


def _from_config(name: str, fam: CapabilityFamily) -> Family:
    return Family(name, tuple(fam.match), tuple(fam.roles), fam.vision, fam.tool_use)
