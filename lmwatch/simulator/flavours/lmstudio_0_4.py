"""LM Studio 0.4: the shared LM Studio behaviour plus the native `/api/v1` (load, unload, chat)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lmwatch.simulator.flavours.base import Route, SimFlavour

if TYPE_CHECKING:
    from lmwatch.simulator.app import Handlers


class LMStudio04(SimFlavour):
    default_version = "0.4.12"

    def routes(self, h: Handlers) -> list[Route]:
        return [
            *super().routes(h),
            Route("GET", "/api/v1/models", h.api_v1_models),
            Route("POST", "/api/v1/models/load", h.api_v1_load),
            Route("POST", "/api/v1/models/unload", h.api_v1_unload),
            Route("POST", "/api/v1/chat", h.api_v1_chat),
        ]
