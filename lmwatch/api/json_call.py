"""The JSON call: a non-streamed request walked to a complete answer, judged before it is sent on.

A success is passed through as the backend's bytes unless the client must see another model id
or a translated body; its usage feeds the token counts, the context calibration and the speed
estimate. Errors fail over or reach the client as lmwatch/api/judging.py decides.
"""

from __future__ import annotations

import json
import time

from lmwatch.api.attempts import Answer, Failure, connection_failure
from lmwatch.api.exchange import Exchange
from lmwatch.api.judging import answered_by, upstream_error
from lmwatch.api.rewrite import client_model
from lmwatch.backends.base import error_message
from lmwatch.http_client import UpstreamError
from lmwatch.jsondecode import loads
from lmwatch.routing.context import learn
from lmwatch.routing.select import Target


async def answer(ex: Exchange) -> Answer:
    """Walk the plan for a complete (non-streamed) answer."""
    result = await ex.walk(lambda target: call_json(ex, target))
    assert isinstance(result, Answer)  # call_json never streams
    return result


async def call_json(ex: Exchange, target: Target) -> Answer | Failure:
    """A non-streamed attempt: the whole answer, judged."""
    sent = time.perf_counter()
    resp = await ex.post(target, stream=False)
    if isinstance(resp, Failure):
        ex.waited += time.perf_counter() - sent
        return resp
    try:
        raw = await resp.read(ex.routing.max_answer_bytes)
    except (UpstreamError, TimeoutError) as exc:
        return connection_failure(exc)
    finally:
        elapsed = time.perf_counter() - sent
        ex.waited += elapsed
        resp.close()
    result = judge_json(ex, target, resp.status, raw)
    if isinstance(result, Answer) and result.status == 200 and ex.usage.completion and not target.is_cloud:
        # no first-token time without a stream; tokens/s here includes reading the prompt
        ex.upstream.outcomes.record_speed(target.backend, target.model, None, ex.usage.completion / elapsed)
    return result


def judge_json(ex: Exchange, target: Target, status: int, raw: bytes) -> Answer | Failure:
    """A complete answer (a stream's non-SSE answer too): the client's, or a failure to move on from."""
    try:
        obj = loads(raw)
    except ValueError:
        obj = None
    message = error_message(obj)
    if status == 200 and message is None and isinstance(obj, dict):
        if target.substitutes_model and not answered_by(obj, target):
            return ex.upstream.substituted(target, obj.get("model"))
        ex.usage.add(obj.get("usage"))
        if ex.usage.prompt:
            learn(ex.req, target, ex.upstream.outcomes, ex.usage.prompt)
        wanted = client_model(ex.req, target)
        changed = wanted is not None and isinstance(obj.get("model"), str) and obj["model"] != wanted
        if changed:
            obj["model"] = wanted
        if ex.dialect is not None:
            ex.dialect.translated = not ex.native(target)
            if ex.dialect.translated:
                obj, changed = ex.dialect.answer(obj, wanted or target.model), True
            ex.dialect.served(target, obj.get("id") if isinstance(obj.get("id"), str) else None)
        if changed:
            raw = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        return Answer(status, raw, obj)
    if message is None:  # redacted before the cut: no secret is cut in half
        message = ex.redactor.redact(raw[:1000].decode("utf-8", "replace"))[:300] or f"HTTP {status}"
    else:
        message = ex.redactor.redact(message)
    return upstream_error(ex.upstream.outcomes, target, status, message, obj)
