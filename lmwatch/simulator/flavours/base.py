"""What a simulated server flavour decides: its routes, its error wording, its quirks.

The defaults are LM Studio's (two of the simulated servers are LM Studio); a flavour overrides what its
server does differently. The simulator states these facts itself rather than reading lmwatch's own
flavour table, so tests against the simulator check lmwatch's knowledge instead of echoing it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from aiohttp import web

from lmwatch.simulator import shapes
from lmwatch.simulator.errors import SimError, openai_error
from lmwatch.versions import version_tuple

if TYPE_CHECKING:
    from lmwatch.simulator.app import Handlers
    from lmwatch.simulator.catalogue import Catalogue

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NO_MODELS_MESSAGE = "No models loaded. Please load a model in the developer page or use the `lms load` command."
AUTH_MESSAGE = (
    "An LM Studio API token is required to make requests to this server. Provide a valid token in the "
    "'Authorization: Bearer $LM_API_TOKEN' header."
)
CRASH_MESSAGE = "The model has crashed without additional information. (Exit code: 18446744072635812000)"


class Route(NamedTuple):
    method: str
    path: str
    handler: Handler
    auth: bool = True


def openai_routes(h: Handlers) -> list[Route]:
    """The OpenAI-compatible routes every simulated server has."""
    return [
        Route("GET", "/v1/models", h.v1_models),
        Route("POST", "/v1/chat/completions", h.v1_chat),
        Route("POST", "/v1/completions", h.v1_text),
        Route("POST", "/v1/embeddings", h.v1_embeddings),
    ]


class SimFlavour:
    """One simulated server (LM Studio's behaviour unless overridden). Holds no state."""

    default_version: ClassVar[str]
    lmstudio: ClassVar[bool] = True
    """LM Studio's own surfaces: JIT loading, `/api/v0`, `system_fingerprint`, the version banner."""
    native_apis: ClassVar[Mapping[str, str]] = {"responses": "0.3.29", "messages": "0.4.1"}
    """Agent APIs on `/v1` and the first version that serves each (LM Studio's release notes)."""
    model_error_status: ClassVar[int] = 400
    """Status of a wrong-type or failed-load answer (LM Studio 0.3 said 404)."""
    serves_any_name: ClassVar[bool] = False
    """Answers whatever model a request names (a one-model server such as llama.cpp's)."""
    json_object: ClassVar[bool] = False
    """Accepts `response_format: json_object` (LM Studio refuses it)."""

    def routes(self, h: Handlers) -> list[Route]:
        return [
            *openai_routes(h),
            Route("GET", "/lmstudio-greeting", h.greeting, auth=False),
            Route("GET", "/lms-status", h.lms_status),
            Route("GET", "/api/v0/models", h.v0_models),
            Route("GET", "/api/v0/models/{model:.+}", h.v0_model),
            Route("POST", "/api/v0/chat/completions", h.v0_chat),
            Route("POST", "/api/v0/completions", h.v0_text),
            Route("POST", "/api/v0/embeddings", h.v0_embeddings),
            Route("POST", "/v1/messages", h.v1_messages),
            Route("POST", "/v1/responses", h.v1_responses),
        ]

    def serves(self, api: str, version: str) -> bool:
        """Does a server of `version` have the agent API `api`?"""
        since = self.native_apis.get(api)
        return since is not None and version_tuple(version) >= version_tuple(since)

    def model_list(self, catalogue: Catalogue) -> dict[str, object]:
        """The `/v1/models` body."""
        return shapes.openai_models(catalogue)

    # --- error answers ---------------------------------------------------------------------------

    def plain(self, status: int, message: str) -> SimError:
        """LM Studio's most common error: `{"error": "<message>"}`."""
        return SimError(status, {"error": message})

    def unknown_model(self, name: str, examples: Iterable[str]) -> SimError:
        """A model name nothing matches: 400 "Invalid model identifier" naming a few that would do."""
        shown = ", ".join(list(examples)[:5])
        message = f'Invalid model identifier "{name}". Please specify a valid downloaded model (e.g., {shown}).'
        return openai_error(400, message, "invalid_request_error", "model", "model_not_found")

    def no_models_loaded(self) -> SimError:
        """Nothing usable is loaded and JIT cannot help."""
        return openai_error(400, NO_MODELS_MESSAGE, "invalid_request_error", "model", None)

    def wrong_model_type(self, name: str, wanted: str) -> SimError:
        """An embedding request to an LLM or a chat request to an embedding model (LM Studio wording)."""
        message = f'Failed to load model "{name}". Error: Model is not {wanted}.'
        return openai_error(self.model_error_status, message, "invalid_request_error", "model", "model_not_found")

    def load_failed(self, message: str) -> SimError:
        """A JIT load that failed (out of memory), as an error object."""
        return openai_error(self.model_error_status, message, "invalid_request_error", "model", "model_load_failed")

    def unauthorized(self, token_given: bool) -> SimError:
        """401 for a missing or wrong bearer token (LM Studio 0.4 auth)."""
        message = AUTH_MESSAGE if not token_given else "The provided LM Studio API token is invalid. " + AUTH_MESSAGE
        return SimError(401, {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}})

    def injected_crash(self) -> SimError:
        """The 500 that `error_rate` injects: what a crashed engine looks like from the outside."""
        return SimError(500, {"error": CRASH_MESSAGE})

    def unknown_route(self, method: str, path: str) -> SimError:
        """LM Studio answers unknown routes with HTTP 200 (!) and an error body."""
        return SimError(200, {"error": f"Unexpected endpoint or method. ({method} {path})"})


LMSTUDIO = SimFlavour()
"""LM Studio's shared wording, for the simulator's own routes (`/__sim/config`), which no flavour has."""
