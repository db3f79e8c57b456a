"""Error answers: OpenAI-shaped bodies and stream error events, with secrets redacted."""

from __future__ import annotations

import pytest

from lmwatch.api.errors import ApiError, error_event


def test_error_bodies_are_openai_shaped_and_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from lmwatch.logs import RedactingFilter

    monkeypatch.setattr(RedactingFilter, "secrets", {"sk-secret-token-1"})
    body = ApiError(502, "upstream said sk-secret-token-1 is bad", code="upstream_failed").body()
    assert body == {
        "error": {
            "message": "upstream said *** is bad",
            "type": "server_error",
            "param": None,
            "code": "upstream_failed",
        }
    }
    event = error_event("cut sk-secret-token-1")
    assert event.startswith(b"data: {") and event.endswith(b"\n\n") and b"sk-secret" not in event
