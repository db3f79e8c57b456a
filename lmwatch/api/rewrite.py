"""Body rewrite: the bytes a target gets, and the model id the client sees in the answer.

The original request bytes are forwarded unless something must change: the model id (`auto`, an
alias, an instance), the usage chunk lmwatch asks a chat stream for (`stream_options.include_usage`,
stripped again from the relay when the client did not ask), a flavour's quirk (LM Studio's
`json_object`), or a translation (Responses, Messages). The first two are spliced into the
client's bytes when that is unambiguous, so a long conversation is not re-encoded per request;
anything else is encoded once per model and flavour.
"""

from __future__ import annotations

import json
import re
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from lmwatch.routing.request import ParsedRequest
from lmwatch.routing.select import AUTO, TASK_PREFIX, Target

_MODEL_KEY = b'"model"'
_KEY_TO_VALUE = re.compile(rb'"model"[ \t\r\n]*:[ \t\r\n]*')
"""From the key to where its value starts."""
_USAGE_OPTION = b'"stream_options":{"include_usage":true},'


class Bodies:
    """The bodies one request sends, made once per (model, usage chunk, API, flavour rewrite)."""

    def __init__(self, req: ParsedRequest) -> None:
        self.req = req
        self._made: dict[tuple[object, ...], bytes] = {}

    def body_for(self, target: Target, stream: bool, native: bool, chat: bool) -> bytes:
        """The bytes for `target`. `native`: it gets the request's own API (else the chat body of a
        translated one); `chat`: that body is chat completions' (which can ask for the usage chunk)."""
        req = self.req
        source = req.body if native else req.as_chat
        inject = chat and stream and (not native or not req.wants_usage)
        rewrite = target.flavour.rewrite(source) if target.flavour is not None else None
        raw_fits = native and rewrite is None and bool(req.raw)
        if raw_fits and not inject and source.get("model") == target.model:
            return req.raw
        key = (target.model, inject, native, target.flavour.name if rewrite is not None and target.flavour else None)
        made = self._made.get(key)
        if made is None:
            spliced = _splice(req.raw, source, target.model, inject) if raw_fits else None
            made = self._made[key] = (
                spliced if spliced is not None else _encode(rewrite or source, target.model, inject)
            )
        return made


def _encode(source: dict[str, Any], model: str, inject: bool) -> bytes:
    body = dict(source, model=model)
    if inject:
        options = source.get("stream_options")
        body["stream_options"] = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _splice(raw: bytes, body: dict[str, Any], model: str, inject: bool) -> bytes | None:
    """`raw` with the top-level model id replaced (and the usage option added), or None when that
    cannot be done for certain on the bytes alone.

    In valid JSON a `"model"` token with unescaped quotes is a whole string (a key or a value), so
    when it occurs once, the body has a top-level `model` and no key spells it with `\\u006_`
    escapes, that one occurrence is the top-level key."""
    if inject and "stream_options" in body:
        return None  # merging into the client's options: encode
    old = body.get("model")
    if not isinstance(old, str):
        return None
    at = raw.find(_MODEL_KEY)
    if at < 0 or raw.find(_MODEL_KEY, at + 1) >= 0 or b"\\u006" in raw:
        return None
    start = at + len(_MODEL_KEY) + 1
    if raw[start - 1 : start] != b":":  # the compact form (what SDKs send) needs no regex
        key = _KEY_TO_VALUE.match(raw, at)
        if key is None:
            return None
        start = key.end()
    value = _json_string(old)
    if not raw.startswith(value, start):
        return None  # the client escaped the id differently: encode
    out = b"".join((raw[:start], encode_basestring(model).encode(), raw[start + len(value) :]))
    if inject:  # the body is an object with at least `model`: insert as its first member
        brace = out.find(b"{") + 1
        out = out[:brace] + _USAGE_OPTION + out[brace:]
    return out


def _json_string(text: str) -> bytes:
    """`json.dumps(text).encode()`, without json.dumps' encoder object (this is what it returns for a str)."""
    return encode_basestring_ascii(text).encode()


def client_model(req: ParsedRequest, target: Target) -> str | None:
    """The model id a local answer carries: the id the client asked for (an alias too), or the
    served model without its instance suffix for `auto` and `task:`; None for cloud answers."""
    if target.is_cloud:
        return None
    if req.model == AUTO or req.model.startswith(TASK_PREFIX):
        return target.model_key
    return req.model


def renames(first: dict[str, Any] | None, wanted: str | None) -> list[tuple[bytes, bytes]] | None:
    """Byte replacements that give each stream event the client's model id (None when it has it)."""
    served = first.get("model") if first is not None else None
    if wanted is None or not isinstance(served, str) or served == wanted:
        return None
    old, new = _json_string(served), _json_string(wanted)
    return [(b'"model":' + old, b'"model":' + new), (b'"model": ' + old, b'"model": ' + new)]
