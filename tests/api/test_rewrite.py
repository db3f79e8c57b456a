"""The body a target gets: the client's bytes, spliced when only the model id or the usage option
changes, re-encoded when the bytes alone do not say for certain; always the JSON the target needs."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lmwatch.api.rewrite import Bodies
from lmwatch.routing.request import Endpoint, parse_request
from lmwatch.routing.select import Target

TARGET = Target(backend="b", model="qwen2.5-coder-7b-instruct", url="http://h/v1", cap=None)


def body_for(raw: bytes, stream: bool = False) -> bytes:
    req = parse_request(Endpoint.CHAT, raw, "auto")
    return Bodies(req).body_for(TARGET, stream, native=True, chat=True)


def sent(raw: bytes, stream: bool = False) -> dict[str, Any]:
    out = body_for(raw, stream)
    decoded: dict[str, Any] = json.loads(out)
    return decoded


def test_an_unchanged_body_is_the_clients_own_bytes() -> None:
    raw = b'{"model": "qwen2.5-coder-7b-instruct", "messages": [{"role": "user", "content": "hi"}]}'
    assert body_for(raw) == raw


@pytest.mark.parametrize(
    "raw",
    [
        b'{"model":"auto","messages":[{"role":"user","content":"hi"}]}',
        b'{ "messages" : [{"role":"user","content":"caf\\u00e9 \\"model\\": \\"auto\\""}],\n "model" :\t"auto" }',
        b'{"messages":[{"role":"user","content":"\xc3\xa9t\xc3\xa9"}],"model":"auto","temperature":0.2}',
    ],
)
def test_the_model_id_is_spliced_into_the_clients_bytes(raw: bytes) -> None:
    out = body_for(raw)
    assert out.replace(b'"qwen2.5-coder-7b-instruct"', b'"auto"') == raw  # nothing else moved
    assert json.loads(out) == {**json.loads(raw), "model": TARGET.model}


@pytest.mark.parametrize(
    "raw",
    [
        # "model" twice: a nested key (a tool's parameter) beside the top-level one
        b'{"model":"auto","tools":[{"type":"function","function":{"name":"f","parameters":'
        b'{"type":"object","properties":{"model":{"type":"string"}}}}}],"messages":[{"role":"user","content":"x"}]}',
        # the top-level key spelled with an escape, a nested literal one
        b'{"mod\\u0065l":"auto","metadata":{"model":"auto"},"messages":[{"role":"user","content":"x"}]}',
        # the id escaped differently than json.dumps would
        b'{"model":"\\u0061uto","messages":[{"role":"user","content":"x"}]}',
    ],
)
def test_ambiguous_bytes_are_re_encoded_never_mis_spliced(raw: bytes) -> None:
    expected = {**json.loads(raw), "model": TARGET.model}
    assert sent(raw) == expected


def test_the_usage_option_is_spliced_into_a_stream_or_merged_into_the_clients() -> None:
    raw = b'{"model":"auto","stream":true,"messages":[{"role":"user","content":"hi"}]}'
    out = sent(raw, stream=True)
    assert out == {**json.loads(raw), "model": TARGET.model, "stream_options": {"include_usage": True}}
    own = b'{"model":"auto","stream":true,"stream_options":{"x":1},"messages":[{"role":"user","content":"hi"}]}'
    assert sent(own, stream=True)["stream_options"] == {"x": 1, "include_usage": True}
