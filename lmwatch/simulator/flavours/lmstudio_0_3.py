"""LM Studio 0.3: no `/api/v1`, and 404s where 0.4 says 400 (with other wording)."""

from __future__ import annotations

from collections.abc import Iterable

from lmwatch.simulator.errors import SimError, openai_error
from lmwatch.simulator.flavours.base import NO_MODELS_MESSAGE, SimFlavour


class LMStudio03(SimFlavour):
    default_version = "0.3.31"
    model_error_status = 404

    def unknown_model(self, name: str, examples: Iterable[str]) -> SimError:
        message = f'Model "{name}" not found. Please specify a valid model.'
        return openai_error(404, message, "invalid_request_error", "model", "model_not_found")

    def no_models_loaded(self) -> SimError:
        return SimError(404, {"error": NO_MODELS_MESSAGE})  # a string body, unlike 0.4's object
