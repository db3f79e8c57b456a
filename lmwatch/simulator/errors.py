"""Error answers as the simulator raises them: a `SimError` carries a status and a ready JSON body.

How each server words and shapes its errors (LM Studio's drifted between versions: a plain string
`error` in some places, an OpenAI-style object in others; 404 in 0.3, 400 in 0.4) lives on its
flavour, in `lmwatch/simulator/flavours/`; here are the shapes they share.
"""

from __future__ import annotations


class SimError(Exception):
    """An HTTP error answer: status and JSON body, ready to send."""

    def __init__(self, status: int, body: dict[str, object]) -> None:
        super().__init__(status, body)
        self.status = status
        self.body = body


def openai_error(status: int, message: str, type_: str, param: str | None, code: str | None) -> SimError:
    """The OpenAI error object `{"error": {"message", "type", "param", "code"}}`."""
    return SimError(status, {"error": {"message": message, "type": type_, "param": param, "code": code}})


def v1_error(status: int, type_: str, message: str) -> SimError:
    """The native `/api/v1` error shape: `{"error": {"type", "message"}}`."""
    return SimError(status, {"error": {"type": type_, "message": message}})
