"""What LM Studio's two native APIs share: its version route, its model-gone messages and JIT loading."""

from __future__ import annotations

from typing import ClassVar

from lmwatch.backends.base import MODEL_GONE, BackendClient, Flavour, ProbeError, as_str

LM_STUDIO_MODEL_GONE: tuple[str, ...] = (
    r"no models? (?:is |are )?loaded",
    r"invalid model identifier",
    r"failed to load model",
    r"unloaded",
)


class LMStudio(Flavour):
    """Base of the LM Studio flavours (not itself in the table)."""

    substitutes_model: ClassVar[bool] = True
    model_gone: ClassVar[tuple[str, ...]] = (*MODEL_GONE, *LM_STUDIO_MODEL_GONE)

    async def version(self, client: BackendClient) -> str | None:
        """LM Studio's version from `/lms-status` (what its own CLI reads); None where it is absent."""
        try:
            body = await client.get_json("/lms-status")
        except ProbeError:
            return None
        return as_str(body.get("version")) if isinstance(body, dict) else None
