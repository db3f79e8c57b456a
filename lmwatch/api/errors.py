"""OpenAI-style error bodies, made in one place for every HTTP surface of lmwatch.

Clients (the openai SDKs, editors, agents) parse `{"error": {"message", "type", "param", "code"}}`;
streams end with the same object as an SSE `data:` event. Every message passes through the log
redaction, so a backend token or cloud key can never reach a client through an error.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from lmwatch.logs import redact

MESSAGE_LIMIT = 1000

_TYPES = {401: "authentication_error", 403: "permission_error", 429: "rate_limit_error"}


def error_type(status: int) -> str:
    return _TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")


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

    def body(self) -> dict[str, Any]:
        return error_body(self.message, self.type, self.code, self.param)

    def response(self, headers: Mapping[str, str] | None = None) -> web.Response:
        response = web.json_response(self.body(), status=self.status)
        response.headers.update(self.headers)
        if headers:
            response.headers.update(headers)
        return response


def error_body(message: str, type: str, code: str | None = None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": redact(message)[:MESSAGE_LIMIT], "type": type, "param": param, "code": code}}


def error_event(message: str, code: str | None = None) -> bytes:
    """The SSE event that ends a stream which failed after it started (never a silent clean end)."""
    body = error_body(message, "server_error", code)
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"
