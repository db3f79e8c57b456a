"""Judging a backend's answer: which errors fail over to the next target, which the client must
see as they are (its own request is wrong), and whether the answer came from the model asked for."""

from __future__ import annotations

import json
from typing import Any

from lmwatch.api.attempts import Answer, Failure
from lmwatch.api.errors import error_body, error_type
from lmwatch.backends import is_context_exceeded, is_model_gone, model_type_refused
from lmwatch.failures import FailureReason
from lmwatch.outcomes import RequestOutcomes
from lmwatch.routing.context import context_in_error
from lmwatch.routing.ids import same_model
from lmwatch.routing.select import Target


def answered_by(obj: dict[str, Any], target: Target) -> bool:
    """Whether an answer (or a stream's first event) names the target's model, or none."""
    model = obj.get("model")
    if model == target.model or not isinstance(model, str) or not model:  # the first: most answers
        return True
    return same_model(model, target.model) or same_model(target.model, model)


def upstream_error(outcomes: RequestOutcomes, target: Target, status: int, message: str, obj: Any) -> Answer | Failure:
    """A context-length error fails over (another instance may hold more) and teaches lmwatch the
    backend's context; every other error is judged by `error_outcome`."""
    if status < 500 and (
        _error_field(obj, "code") == "context_length_exceeded" or is_context_exceeded(target.flavour, message)
    ):
        context = context_in_error(message)
        if context is not None and not target.is_cloud:
            outcomes.record_context(target.backend, target.model_key, context)
        return Failure(FailureReason.CONTEXT_LENGTH, message, breaker=False)
    return error_outcome(target, status, message, obj)


def error_outcome(target: Target, status: int, message: str, obj: Any) -> Answer | Failure:
    """Which upstream errors fail over, and which the client must see (its own request is wrong)."""
    code = _error_field(obj, "code")
    wrong_type = model_type_refused(target.flavour, message)
    if wrong_type is not None and status < 500:
        wanted = "a text (llm)" if wrong_type == "llm" else "an embedding"
        body = error_body(
            f"{message} (this endpoint needs {wanted} model)", error_type(400), "model_type_mismatch", "model"
        )
        return Answer(400, json.dumps(body).encode(), body)
    if status == 404 or code == "model_not_found" or is_model_gone(target.flavour, message):
        return Failure(FailureReason.MODEL_UNAVAILABLE, message, breaker=False)
    if status in (401, 403):
        return Failure(FailureReason.AUTH, f"the backend refused lmwatch's credentials (HTTP {status})")
    if status == 429:
        return Failure(FailureReason.HTTP_429, message, breaker=False)
    if status == 408:
        return Failure(FailureReason.TIMEOUT, message)
    if status in (502, 503, 504):
        return Failure(FailureReason.HTTP_5XX, f"HTTP {status}: {message}", transient=True)
    if status >= 500:
        return Failure(FailureReason.HTTP_5XX, f"HTTP {status}: {message}")
    if status == 200:
        return Failure(FailureReason.ERROR_BODY, message)
    param = _error_field(obj, "param")
    body = error_body(
        message, error_type(status), code if isinstance(code, str) else None, param if isinstance(param, str) else None
    )
    return Answer(status, json.dumps(body).encode(), body)


def _error_field(obj: Any, name: str) -> Any:
    """`obj["error"][name]` of an OpenAI-style error body, else None."""
    error = obj.get("error") if isinstance(obj, dict) else None
    return error.get(name) if isinstance(error, dict) else None
