"""`loads` decodes what `json.loads` decodes, and refuses the rest with a ValueError, fast path or not."""

from __future__ import annotations

import json

import pytest

from lmwatch.jsondecode import loads, loads_text

GOOD = [
    b'{"model": "m", "messages": [{"role": "user", "content": "h\\u00e9 \xc3\xa9"}], "n": 1.5e3}',
    b'{"a": {}}  \r\n\t',
    b"{}",
    b'  {"leading": "space"}',
    b'["a list", 1, null]',
    b'"a string"',
    b"12",
    '{"already": "text"}',
    '{"a": 1}'.encode("utf-16"),
    '{"a": 1}'.encode("utf-16-le"),
    '{"a": 1}'.encode("utf-32-le"),
    b'\xef\xbb\xbf{"bom": true}',
    b'{"same": 1, "same": 2}',
    b'{"big": 123456789012345678901234567890, "nan": NaN}',
]
BAD = [
    b"",
    b"{",
    b'{"a": 1}}',
    b'{"a": 1} trailing',
    b'{"a": 1}\x00',
    b"{'single': 'quotes'}",
    b'{"a": "\xff"}',
    b'{"a": [1,]}',
    b'{"x": ' * 100_000 + b"1" + b"}" * 100_000,
    b"[" * 100_000,
]


@pytest.mark.parametrize("raw", GOOD)
def test_what_json_loads_decodes_comes_back_the_same(raw: bytes | str) -> None:
    expected = json.loads(raw)
    got = loads(raw)
    assert json.dumps(got) == json.dumps(expected) and type(got) is type(expected)


@pytest.mark.parametrize("raw", BAD)
def test_what_is_not_json_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        loads(raw)


def test_a_lone_surrogate_is_refused_only_by_loads_text() -> None:
    raw = b'{"a": "\\ud800"}'
    assert loads(raw) == {"a": "\ud800"}
    with pytest.raises(ValueError, match="surrogate"):
        loads_text(raw)
    assert loads_text(b'{"a": "\\ud83d\\ude00"}') == {"a": "\U0001f600"}
