"""Error bodies, made in one place for every HTTP surface of lmwatch, in each API's own shape.

OpenAI clients (the openai SDKs, editors, agents) parse `{"error": {"message", "type", "param",
"code"}}`; streams end with the same object as an SSE `data:` event. Anthropic clients (the
anthropic SDKs, Claude Code) on `/v1/messages` parse `{"type": "error", "error": {"type",
"message"}}` and an `error` event. Both carry the request's id as `request_id`. Every message
passes through the daemon's Redactor (an ApiError's at `body()`, an upstream's where lmwatch reads
it), so a backend token or cloud key never reaches a client.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

from aiohttp import web

from lmwatch.errors import Conflict, DomainError, Forbidden, InvalidRequest, NotFound, Unavailable, UpstreamFailed
from lmwatch.redaction import Redactor

MESSAGE_LIMIT = 1000

_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}
_ANTHROPIC_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class Shape(StrEnum):
    OPENAI = "openai"
    ANTHROPIC = "anthropic"


def shape_of(path: str) -> Shape:
    """Anthropic's shape on `/v1/messages` (and below it), OpenAI's everywhere else."""
    return Shape.ANTHROPIC if path == "/v1/messages" or path.startswith("/v1/messages/") else Shape.OPENAI


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


def anthropic_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "invalid_request_error" if status < 500 else "api_error")


class ApiError(Exception):
    """An error answer: raised anywhere on a request path, turned into a response at the edge."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.type = type or error_type(status)
        self.headers = dict(headers or {})

    def body(self, redactor: Redactor, shape: Shape = Shape.OPENAI, request_id: str | None = None) -> dict[str, Any]:
        """The answer's body, its message without any secret `redactor` (the daemon's) knows."""
        message = redactor.redact(self.message)
        if shape is Shape.ANTHROPIC:
            return anthropic_body(self.status, message, request_id)
        body = error_body(message, self.type, self.code, self.param)
        if request_id is not None:
            body["request_id"] = request_id
        return body

    def response(
        self,
        redactor: Redactor,
        headers: Mapping[str, str] | None = None,
        shape: Shape = Shape.OPENAI,
        request_id: str | None = None,
    ) -> web.Response:
        response = web.json_response(self.body(redactor, shape, request_id), status=self.status)
        response.headers.update(self.headers)
        if headers:
            response.headers.update(headers)
        return response


class ProblemsError(ApiError):
    """An ApiError that also lists `path: message` problems (invalid config, invalid backend)."""

    def __init__(self, status: int, message: str, problems: list[str], code: str = "invalid_config") -> None:
        super().__init__(status, f"{message}: {'; '.join(problems)}", code=code)
        self.problems = problems

    def body(self, redactor: Redactor, shape: Shape = Shape.OPENAI, request_id: str | None = None) -> dict[str, Any]:
        return {**super().body(redactor, shape, request_id), "problems": [redactor.redact(p) for p in self.problems]}


STATUSES: Final = (
    (InvalidRequest, 400),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (UpstreamFailed, 502),
    (Unavailable, 503),
)
"""Each domain error's HTTP status (a bare DomainError is a 400)."""


def api_error(error: ApiError | DomainError) -> ApiError:
    """The HTTP answer to `error`: the one place a domain error gets a status."""
    if isinstance(error, ApiError):
        return error
    status = next((s for kind, s in STATUSES if isinstance(error, kind)), 400)
    if error.problems:
        return ProblemsError(status, error.message, list(error.problems), code=error.code or "invalid_config")
    return ApiError(status, error.message, code=error.code, param=error.param)


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    """OpenAI's error body; `message` was redacted by the caller (`Redactor.redact`)."""
    return {"error": {"message": message[:MESSAGE_LIMIT], "type": type, "param": param, "code": code}}


def error_event(message: str, redactor: Redactor, code: str | None = None) -> bytes:
    """The SSE event that ends a stream which failed after it started (never a silent clean end)."""
    body = error_body(redactor.redact(message), "server_error", code)
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


def anthropic_body(status: int, message: str, request_id: str | None = None) -> dict[str, Any]:
    """Anthropic's error body; `message` was redacted by the caller."""
    body: dict[str, Any] = {
        "type": "error",
        "error": {"type": anthropic_type(status), "message": message[:MESSAGE_LIMIT]},
    }
    if request_id is not None:
        body["request_id"] = request_id
    return body
