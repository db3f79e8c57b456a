"""SSE framing and metering: events rebuilt across reads, the first event, usage and [DONE] seen,
the usage-only chunk and error events taken out of the relayed stream."""

from __future__ import annotations

import json
from typing import Any

from lmwatch.api.sse import EventSplitter, StreamMeter, event_data


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
