"""Request parsing at the edge (bad input becomes OpenAI-style 400s) and SSE framing/metering."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from lmwatch.api.errors import ApiError, api_error, error_event
from lmwatch.errors import DomainError
from lmwatch.routing.request import Endpoint, parse_request
from lmwatch.routing.sse import EventSplitter, StreamMeter, event_data

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
WEBP = base64.b64encode(b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 8).decode()


def image_body(url: str) -> bytes:
    return json.dumps(
        {
            "model": "auto",
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "what is it?"},
                        {"type": "image_url", "image_url": {"url": url}},
                    ],
                }
            ],
        }
    ).encode()


def error_of(endpoint: Endpoint, raw: bytes) -> ApiError:
    with pytest.raises(DomainError) as caught:
        parse_request(endpoint, raw, "auto")
    return api_error(caught.value)


def test_good_request_keeps_its_bytes_and_facts() -> None:
    raw = json.dumps(
        {
            "model": "m",
            "stream": True,
            "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "hi"}],
            "tools": [{"type": "function"}],
        }
    ).encode()
    req = parse_request(Endpoint.CHAT, raw, "auto")
    assert req.raw is raw
    assert (req.model, req.stream, req.wants_usage, req.has_tools, req.needs_vision) == ("m", True, True, True, False)
    assert parse_request(Endpoint.CHAT, b'{"messages": [{"role": "user", "content": "x"}]}', "auto").model == "auto"


@pytest.mark.parametrize(
    ("endpoint", "raw", "code", "needle"),
    [
        (Endpoint.CHAT, b"{not json", "invalid_json", "not valid JSON"),
        (Endpoint.CHAT, b"\xff\xfe", "invalid_json", "not valid JSON"),
        (Endpoint.CHAT, b"[1, 2]", "invalid_json", "JSON object"),
        (Endpoint.CHAT, b'{"model": 5, "messages": []}', "invalid_type", "`model`"),
        (Endpoint.CHAT, b'{"stream": "yes", "messages": [{}]}', "invalid_type", "`stream`"),
        (Endpoint.CHAT, b'{"model": "m"}', "missing_required_parameter", "`messages`"),
        (Endpoint.CHAT, b'{"messages": {"role": "user"}}', "invalid_type", "must be a list"),
        (Endpoint.COMPLETIONS, b'{"model": "m"}', "missing_required_parameter", "`prompt`"),
        (Endpoint.EMBEDDINGS, b'{"model": "m", "input": []}', "missing_required_parameter", "`input`"),
    ],
)
def test_bad_bodies_are_400(endpoint: Endpoint, raw: bytes, code: str, needle: str) -> None:
    error = error_of(endpoint, raw)
    assert (error.status, error.code, error.type) == (400, code, "invalid_request_error")
    assert needle in error.message


@pytest.mark.parametrize(
    ("url", "code", "needle"),
    [
        ("https://example.com/cat.png", "image_url_not_supported", "base64 data URLs"),
        ("HTTP://example.com/cat.png", "image_url_not_supported", "LM Studio"),
        ("data:image/png," + PNG, "invalid_image_url", "base64 data URL"),
        ("file:///tmp/cat.png", "invalid_image_url", "base64 data URL"),
        ("data:image/svg+xml;base64," + PNG, "invalid_image_type", "unsupported image type"),
        ("data:;base64," + PNG, "invalid_image_type", "(none)"),
        ("data:image/png;base64,@@@not-base64@@@", "invalid_base64", "not valid base64"),
        ("data:image/png;base64,iVBORw0KGgo", "invalid_base64", "not valid base64"),  # bad padding
        ("data:image/png;base64," + base64.b64encode(b"%PDF-1.7 hello").decode(), "invalid_image_type", "PNG, JPEG"),
        ("", "invalid_image", "needs an image_url"),
    ],
)
def test_bad_images_are_400_with_a_reason(url: str, code: str, needle: str) -> None:
    error = error_of(Endpoint.CHAT, image_body(url))
    assert (error.status, error.code) == (400, code)
    assert needle in error.message
    assert error.param == "messages[0].content[1].image_url"


@pytest.mark.parametrize("url", ["data:image/png;base64," + PNG, "data:image/webp;base64," + WEBP])
def test_good_images_mark_the_request_as_vision(url: str) -> None:
    assert parse_request(Endpoint.CHAT, image_body(url), "auto").needs_vision


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


# --- SSE -----------------------------------------------------------------------------------------


def chunk(**fields: Any) -> bytes:
    return b"data: " + json.dumps(fields).encode() + b"\n\n"


def test_splitter_rebuilds_events_across_reads() -> None:
    stream = chunk(a=1) + b": keep-alive\n\n" + chunk(b=2) + b"data: [DONE]\r\n\r\n"
    splitter = EventSplitter()
    events: list[bytes] = []
    for i in range(0, len(stream), 7):
        events += splitter.feed(stream[i : i + 7])
    assert b"".join(events) == stream and splitter.pending == b""
    assert [event_data(e) for e in events] == [b'{"a": 1}', None, b'{"b": 2}', b"[DONE]"]
    assert splitter.feed(b'data: {"half') == [] and splitter.pending == b'data: {"half'


def test_meter_counts_first_event_usage_done_and_strips_the_usage_chunk() -> None:
    meter = StreamMeter(strip_usage=True)
    first = chunk(model="m", choices=[{"delta": {"content": "hi"}}])
    usage_only = chunk(choices=[], usage={"prompt_tokens": 3, "completion_tokens": 2})
    assert meter.keep(b": comment\n\n", 1.0) and meter.first_at is None
    assert (
        meter.keep(first, 2.0)
        and meter.first_at == 2.0
        and meter.first == {"model": "m", "choices": [{"delta": {"content": "hi"}}]}
    )
    assert meter.keep(chunk(choices=[{"delta": {"content": "usage"}}]), 3.0)  # the word, not the field
    assert not meter.keep(usage_only, 4.0)
    assert meter.keep(chunk(choices=[{"delta": {"content": ""}, "finish_reason": "stop"}]), 4.5)
    assert meter.keep(b"data: [DONE]\n\n", 5.0) and meter.done
    assert meter.usage == {"prompt_tokens": 3, "completion_tokens": 2} and meter.text_chunks == 2
    kept = StreamMeter(strip_usage=False)
    assert kept.keep(usage_only, 1.0) and kept.text_chunks == 0
    assert kept.keep(chunk(choices=[{"text": "x"}]), 2.0) and kept.text_chunks == 1


def test_meter_takes_error_events_out_of_the_stream() -> None:
    meter = StreamMeter(strip_usage=True)
    assert not meter.keep(chunk(error={"message": "model crashed"}), 1.0)
    assert meter.error == {"error": {"message": "model crashed"}}
    assert meter.keep(chunk(choices=[{"delta": {"content": '{"error": 1}'}}]), 2.0)
