"""A plain OpenAI-compatible server (llama.cpp's `llama-server`, vLLM): `/v1` and `/health` only,
OpenAI-shaped errors, one model that answers whatever name a request gives."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar

from lmwatch.simulator import shapes
from lmwatch.simulator.errors import SimError, openai_error
from lmwatch.simulator.flavours.base import Route, SimFlavour, openai_routes

if TYPE_CHECKING:
    from lmwatch.simulator.app import Handlers
    from lmwatch.simulator.catalogue import Catalogue


class OpenAIServer(SimFlavour):
    default_version = "0.4.12"
    lmstudio = False
    native_apis: ClassVar[Mapping[str, str]] = {}
    serves_any_name = True
    json_object = True

    def routes(self, h: Handlers) -> list[Route]:
        return [*openai_routes(h), Route("GET", "/health", h.health)]

    def model_list(self, catalogue: Catalogue) -> dict[str, object]:
        return shapes.plain_openai_models(catalogue)

    def plain(self, status: int, message: str) -> SimError:
        return openai_error(status, message, "invalid_request_error", None, None)

    def unknown_model(self, name: str, examples: Iterable[str]) -> SimError:
        message = f"The model `{name}` does not exist."
        return openai_error(404, message, "invalid_request_error", "model", "model_not_found")

    def no_models_loaded(self) -> SimError:
        return openai_error(503, "No models loaded.", "unavailable_error", "model", None)

    def unauthorized(self, token_given: bool) -> SimError:
        return openai_error(401, "Invalid API Key", "authentication_error", None, "invalid_api_key")

    def injected_crash(self) -> SimError:
        return openai_error(500, "Internal server error (simulated)", "server_error", None, None)

    def unknown_route(self, method: str, path: str) -> SimError:
        return SimError(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
