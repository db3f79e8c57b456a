"""Request parsing at the edge: bad input becomes OpenAI-style 400s."""

from __future__ import annotations

import base64
import json

import pytest

from lmwatch.api.errors import ApiError, api_error
from lmwatch.errors import DomainError
from lmwatch.routing.request import Endpoint, parse_request

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
