"""What LM Studio's two native flavours share: its version probe, its model-gone wording, JIT
loading and the quirks of its `/v1` API."""

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
    """LM Studio (a base, not itself in the table): serves `/v1/responses` since 0.3.29 and
    `/v1/messages` since 0.4.1, refuses `response_format: json_object` (`'response_format.type' must
    be 'json_schema' or 'text'`), and loads a model just in time when asked for one."""

    native_apis = {"responses": "0.3.29", "messages": "0.4.1"}
    rejects_json_object = True
    default_concurrency: ClassVar[int | None] = 4
    """LM Studio runs 4 parallel predictions per model unless told otherwise; more requests queue
    inside it, where lmwatch can neither see nor fail them over."""
    substitutes_model: ClassVar[bool] = True
    model_gone: ClassVar[tuple[str, ...]] = (*MODEL_GONE, *LM_STUDIO_MODEL_GONE)
    wrong_model_type: ClassVar[str | None] = r"model is not (?:an? )?(llm|embedding)"

    async def version(self, client: BackendClient) -> str | None:
        """LM Studio's version from `/lms-status` (what its own CLI reads); None where it is absent."""
        try:
            body = await client.get_json("/lms-status")
        except ProbeError:
            return None
        return as_str(body.get("version")) if isinstance(body, dict) else None
