"""What LM Studio's two native flavours share: its version probe and the quirks of its `/v1` API."""

from __future__ import annotations

from lmwatch.backends.base import BackendClient, Flavour, lms_status_version


class LMStudio(Flavour):
    """LM Studio: serves `/v1/responses` since 0.3.29 and `/v1/messages` since 0.4.1, refuses
    `response_format: json_object` (`'response_format.type' must be 'json_schema' or 'text'`)."""

    native_apis = {"responses": "0.3.29", "messages": "0.4.1"}
    rejects_json_object = True

    async def version(self, client: BackendClient) -> str | None:
        return await lms_status_version(client)
