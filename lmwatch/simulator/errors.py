"""Error answers, shaped the way each simulated server version really shapes them.

LM Studio's error bodies drifted between versions (a plain string `error` in some places, an
OpenAI-style object in others; 404 in 0.3, 400 in 0.4), and clients must cope with all of them.
Every builder here returns a `SimError`, which handlers raise and the app turns into a response.
"""

from __future__ import annotations

from collections.abc import Iterable

from lmwatch.simulator.settings import Flavour

NO_MODELS_MESSAGE = "No models loaded. Please load a model in the developer page or use the `lms load` command."
AUTH_MESSAGE = (
    "An LM Studio API token is required to make requests to this server. Provide a valid token in the "
    "'Authorization: Bearer $LM_API_TOKEN' header."
)
CRASH_MESSAGE = "The model has crashed without additional information. (Exit code: 18446744072635812000)"


class SimError(Exception):
    """An HTTP error answer: status and JSON body, ready to send."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def _openai_error(status: int, message: str, type_: str, param: str | None, code: str | None) -> SimError:
    return SimError(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


def plain(status: int, message: str, flavour: Flavour) -> SimError:
    """LM Studio's most common error: `{"error": "<message>"}`; OpenAI shape on the openai flavour."""
    if flavour == "openai":
        return _openai_error(status, message, "invalid_request_error", None, None)
    return SimError(status, {"error": message})


def unknown_model(name: str, examples: Iterable[str], flavour: Flavour) -> SimError:
    """A model name nothing matches: 404 "not found" in 0.3, 400 "Invalid model identifier" in 0.4."""
    if flavour == "0.3":
        message = f'Model "{name}" not found. Please specify a valid model.'
        return _openai_error(404, message, "invalid_request_error", "model", "model_not_found")
    if flavour == "openai":
        message = f"The model `{name}` does not exist."
        return _openai_error(404, message, "invalid_request_error", "model", "model_not_found")
    shown = ", ".join(list(examples)[:5])
    message = f'Invalid model identifier "{name}". Please specify a valid downloaded model (e.g., {shown}).'
    return _openai_error(400, message, "invalid_request_error", "model", "model_not_found")


def no_models_loaded(flavour: Flavour) -> SimError:
    """Nothing usable is loaded and JIT cannot help: a string body (404) in 0.3, an object (400) in 0.4."""
    if flavour == "0.3":
        return SimError(404, {"error": NO_MODELS_MESSAGE})
    if flavour == "openai":
        return _openai_error(503, "No models loaded.", "unavailable_error", "model", None)
    return _openai_error(400, NO_MODELS_MESSAGE, "invalid_request_error", "model", None)


def wrong_model_type(name: str, wanted: str, flavour: Flavour) -> SimError:
    """An embedding request to an LLM or a chat request to an embedding model (LM Studio wording)."""
    message = f'Failed to load model "{name}". Error: Model is not {wanted}.'
    status = 404 if flavour == "0.3" else 400
    return _openai_error(status, message, "invalid_request_error", "model", "model_not_found")


def load_failed(message: str, flavour: Flavour) -> SimError:
    """A JIT load that failed (out of memory): 404 in 0.3, 400 in 0.4, both as an error object."""
    status = 404 if flavour == "0.3" else 400
    return _openai_error(status, message, "invalid_request_error", "model", "model_load_failed")


def unauthorized(flavour: Flavour, token_given: bool) -> SimError:
    """401 for a missing or wrong bearer token (LM Studio 0.4 auth; llama.cpp-style on openai)."""
    if flavour == "openai":
        return _openai_error(401, "Invalid API Key", "authentication_error", None, "invalid_api_key")
    message = AUTH_MESSAGE if not token_given else "The provided LM Studio API token is invalid. " + AUTH_MESSAGE
    return SimError(401, {"error": {"type": "invalid_request", "code": "invalid_api_key", "message": message}})


def injected_crash(flavour: Flavour) -> SimError:
    """The 500 that `error_rate` injects: what a crashed engine looks like from the outside."""
    if flavour == "openai":
        return _openai_error(500, "Internal server error (simulated)", "server_error", None, None)
    return SimError(500, {"error": CRASH_MESSAGE})


def v1_error(status: int, type_: str, message: str) -> SimError:
    """The native `/api/v1` error shape: `{"error": {"type", "message"}}`."""
    return SimError(status, {"error": {"type": type_, "message": message}})


def unknown_route(method: str, path: str, flavour: Flavour) -> SimError:
    """LM Studio answers unknown routes with HTTP 200 (!) and an error body; plain servers with 404."""
    if flavour == "openai":
        return SimError(404, {"error": {"code": 404, "message": "File Not Found", "type": "not_found_error"}})
    return SimError(200, {"error": f"Unexpected endpoint or method. ({method} {path})"})
