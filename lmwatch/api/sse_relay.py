"""The SSE relay: a streamed request walked to a backend whose events are passed on as they come.

Whole events only, so a cut never leaves half an event before lmwatch's error event. Until the
first real event nothing has reached the client and the walk may still fail over (an error event,
an answer from another model, a stream that ends early); after it, a failure ends the stream with
an error event in the request's API and a proper end. The meter (lmwatch/api/sse.py) takes
the usage chunk, the time to first token and the speed from the events on the way.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from lmwatch.api.attempts import Answer, Failure, Result, Streamed, Verdict, connection_failure, count, describe
from lmwatch.api.calls import Reply, Stream
from lmwatch.api.errors import error_event
from lmwatch.api.exchange import Exchange
from lmwatch.api.json_call import judge_json
from lmwatch.api.judging import answered_by, upstream_error
from lmwatch.api.rewrite import client_model, renames
from lmwatch.api.sse import EventSplitter, Meter, StreamMeter
from lmwatch.api.translate.chat import ChatStream
from lmwatch.backends.base import error_message
from lmwatch.failures import FailureReason
from lmwatch.http_client import Response, ShuttingDown, UpstreamError
from lmwatch.routing.context import learn
from lmwatch.routing.select import Target

_STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

RouteHeaders = Callable[[Exchange], dict[str, str]]


async def stream(ex: Exchange, reply: Reply, headers: RouteHeaders) -> Streamed | Answer:
    """Walk the plan relaying a stream (or the JSON error a backend answered instead)."""
    result = await ex.walk(lambda target: call_stream(ex, target, reply, headers))
    assert not isinstance(result, Failure)  # the walk returns no failure
    return result


async def open_stream(reply: Reply, headers: dict[str, str]) -> Stream:
    """Start an SSE answer to the client (a relayed stream, or one replayed from the cache)."""
    return await reply.open({**_STREAM_HEADERS, **headers})


async def call_stream(ex: Exchange, target: Target, reply: Reply, headers: RouteHeaders) -> Result:
    """A streamed attempt: relay events as they come; fail over only while nothing was sent."""
    sent = time.perf_counter()
    resp = await ex.post(target, stream=True)
    if isinstance(resp, Failure):
        ex.waited += time.perf_counter() - sent
        return resp
    if resp.status != 200 or "text/event-stream" not in resp.headers.get("content-type", ""):
        try:
            raw = await resp.read(ex.routing.max_answer_bytes)
        except (UpstreamError, TimeoutError) as exc:
            return connection_failure(exc)
        finally:
            ex.waited += time.perf_counter() - sent
            resp.close()
        return judge_json(ex, target, resp.status, raw)
    try:
        return await _relay(ex, target, resp, sent, reply, headers)
    finally:
        resp.close()  # read to the end it goes back to the pool; otherwise it is cut (LM Studio stops)


async def _relay(
    ex: Exchange, target: Target, resp: Response, sent: float, reply: Reply, headers: RouteHeaders
) -> Result:
    splitter = EventSplitter()
    native = ex.native(target)
    dialect = ex.dialect
    meter: Meter
    translator: ChatStream | None = None
    if dialect is not None and native:
        meter = dialect.meter()
    else:
        meter = StreamMeter(strip_usage=not native or not ex.req.wants_usage)
    if dialect is not None:
        dialect.translated = not native
        if not native:
            translator = dialect.stream(target.model, lambda: _stream_tokens(meter))
    rename: list[tuple[bytes, bytes]] | None = None
    out: Stream | None = None
    failure: str | None = None
    shutdown = False
    try:
        async for chunk in resp.chunks():
            now = time.perf_counter()
            events = splitter.feed(chunk)
            kept = [e for e in events if meter.keep(e, now)]
            if out is None:
                if meter.first_at is None and not meter.done:
                    continue  # nothing but comments yet: keep the chance to fail over
                ex.waited += now - sent
                early = _early_failure(ex, meter, target)
                if early is not None:
                    return early
                rename = renames(meter.first, client_model(ex.req, target))
                ex.ttft = now - sent
                out = await open_stream(reply, headers(ex))
            if translator is not None:
                data = translator.translate(kept)
            else:
                data = b"".join(kept) if len(kept) > 1 else kept[0] if kept else b""
            for old, new in rename or ():
                data = data.replace(old, new)
            if data and not await _write(out, data):
                return Streamed(out, Verdict.CLIENT_GONE)
            if data and ex.capture is not None:
                ex.capture += data
            if meter.error is not None:
                failure = error_message(meter.error) or "the backend reported an error"
                break
    except (UpstreamError, TimeoutError) as exc:
        if out is None:
            return connection_failure(exc)
        failure = describe(exc)
        shutdown = isinstance(exc, ShuttingDown)
    if out is None:
        return Failure(FailureReason.STREAM_CUT, "the stream ended before any event", transient=True)
    if failure is None and not meter.done:
        failure = "the backend closed the stream before it was complete"
    _account(ex, target, meter)
    if failure is not None:
        message, code = f"upstream {target.backend} failed mid-stream: {failure}", "upstream_failed"
        if shutdown:
            message, code = failure, "shutting_down"
        if translator is not None:
            await _write(out, translator.error(ex.redactor.redact(message), code))
        elif dialect is not None:
            await _write(out, dialect.stream_error(ex.redactor.redact(message), code))
        else:
            await _write(out, error_event(message, ex.redactor, code))
        return Streamed(out, Verdict.UPSTREAM_FAILED)
    if dialect is not None:
        dialect.served(target, str((meter.first or {}).get("id") or "") or None)
    try:
        await out.write_eof()
    except ConnectionResetError:  # the client left just before the end: not lmwatch's error (no 500)
        return Streamed(out, Verdict.CLIENT_GONE)
    return Streamed(out, Verdict.SUCCESS)


def _early_failure(ex: Exchange, meter: Meter, target: Target) -> Answer | Failure | None:
    """A stream whose first event is an error, or comes from another model, can still fail over."""
    if meter.error is not None:
        message = ex.redactor.redact(error_message(meter.error) or "error event")
        return upstream_error(ex.upstream.outcomes, target, 200, message, meter.error)
    if meter.first is None and meter.first_at is not None and not meter.done:
        return Failure(FailureReason.BAD_RESPONSE, "the stream's first event is not a JSON object")
    if target.substitutes_model and meter.first is not None and not answered_by(meter.first, target):
        return ex.upstream.substituted(target, meter.first.get("model"))
    return None


def _account(ex: Exchange, target: Target, meter: Meter) -> None:
    """The stream's tokens, context calibration and speed (time to first token, tokens/s)."""
    if meter.usage is not None:
        ex.usage.add(meter.usage)
        if ex.usage.prompt:
            learn(ex.req, target, ex.upstream.outcomes, ex.usage.prompt)
    else:  # no usage chunk (llama-cpp-python ignores stream_options): one token per text chunk
        ex.usage.completion += meter.text_chunks
    if ex.ttft is not None and meter.first_at is not None:
        generating = time.perf_counter() - meter.first_at
        tps = ex.usage.completion / generating if generating > 0 and ex.usage.completion else None
        if not target.is_cloud:
            ex.upstream.outcomes.record_speed(target.backend, target.model, ex.ttft, tps)


def _stream_tokens(meter: Meter) -> tuple[int, int]:
    """(prompt, completion) tokens of a stream so far: its usage, else one token per text chunk."""
    usage = meter.usage or {}
    return count(usage.get("prompt_tokens")), count(usage.get("completion_tokens")) or meter.text_chunks


async def _write(out: Stream, data: bytes) -> bool:
    """Write to the client; False when it has gone away."""
    try:
        await out.write(data)
    except ConnectionResetError:  # aiohttp's ClientConnectionResetError is one too
        return False
    return True
