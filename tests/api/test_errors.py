"""Error answers: OpenAI-shaped bodies and stream error events, with secrets redacted."""

from __future__ import annotations

from lmwatch.api.errors import ApiError, error_event
from lmwatch.redaction import Redactor


def test_error_bodies_are_openai_shaped_and_redacted() -> None:
    redactor = Redactor(["sk-secret-token-1"])
    body = ApiError(502, "upstream said sk-secret-token-1 is bad", code="upstream_failed").body(redactor)
    assert body == {
        "error": {
            "message": "upstream said *** is bad",
            "type": "server_error",
            "param": None,
            "code": "upstream_failed",
        }
    }
    event = error_event("cut sk-secret-token-1", redactor)
    assert event.startswith(b"data: {") and event.endswith(b"\n\n") and b"sk-secret" not in event
