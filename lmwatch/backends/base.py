"""What every backend flavour shares: the probe HTTP client and the flavour interface.

The client turns every way a server can answer badly into one `ProbeError` with a bounded reason:
refused connections, timeouts (including a slow drip), auth failures, HTML or garbage, oversized
bodies, and LM Studio's HTTP 200 carrying an `error` body (its answer to unknown routes).
"""

from __future__ import annotations

import asyncio
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar, cast

from lmwatch.config import BackendConfig, backend_secrets
from lmwatch.failures import FailureReason
from lmwatch.http_client import AnswerTooLarge, ConnectError, ConnectionLost, Pool, UpstreamError
from lmwatch.jsondecode import loads
from lmwatch.redaction import Redactor, strip_userinfo
from lmwatch.registry import ModelInfo
from lmwatch.versions import version_tuple

MAX_PROBE_BODY_BYTES = 8 * 1024 * 1024
"""A model list is a few KiB; anything near this is not a model list."""

_MESSAGE_LIMIT = 300
T = TypeVar("T")


class ProbeError(Exception):
    """A probe that failed. Backends echo credentials in their errors: `BackendClient` redacts its
    own (URL password, token) from `text` before the error leaves it."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        self.reason = reason
        self.text = strip_userinfo(message)
        """The whole message (redacted before it is cut, so no secret is cut in half)."""
        self.message = self.text[:_MESSAGE_LIMIT]
        super().__init__(f"{reason.value}: {self.message}")

    @property
    def not_this_api(self) -> bool:
        """True when the server answered but does not speak the API asked for (try another flavour)."""
        return self.reason in (FailureReason.ERROR_BODY, FailureReason.BAD_RESPONSE, FailureReason.HTTP_STATUS)


def error_message(body: Any) -> str | None:
    """The message of an error body in any of LM Studio's shapes: `{"error": "..."}` or
    `{"error": {"message": ...}}` (bodies drifted between versions); None when it is not an error."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"]
    if isinstance(error, str):
        return error
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or error.get("code") or error)
    return str(error)


class BackendClient:
    """HTTP access to one backend for the watcher: short timeouts, a size cap, strict parsing."""

    def __init__(self, pool: Pool, config: BackendConfig) -> None:
        self.pool = pool
        self.config = config
        self.base_url = config.base_url
        self._token: str | None = None
        self._redactor = Redactor(backend_secrets([config]))
        """This backend's own secrets (its URL password, the token sent last and the one before)."""
        self._last: dict[str, tuple[bytes, object]] = {}
        """Per path: the last answer's bytes and what `get_parsed` made of them."""

    def headers(self) -> dict[str, str]:
        """The bearer header; an unreadable token file is the backend's auth failing, not a bug."""
        try:
            token = self.config.api_token()
        except OSError as exc:
            raise ProbeError(FailureReason.AUTH, f"the token file cannot be read: {exc.strerror or exc}") from None
        if token != self._token and token:  # rotated: the old one stays redacted one more generation
            self._token = token
            self._redactor.replace(backend_secrets([self.config]))
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _redacted(self, exc: ProbeError) -> ProbeError:
        """`exc` without this backend's secrets in its message (raised in its place)."""
        return ProbeError(exc.reason, self._redactor.redact(exc.text))

    async def get_json(self, path: str) -> Any:
        return await self.request_json("GET", path)

    async def get_parsed(self, path: str, parse: Callable[[Any], T]) -> T:
        """`parse(await get_json(path))`, or its last result again when the answer's bytes are the
        same as last time: an unchanged model list costs a byte compare, not a decode and a rebuild."""
        try:
            status, raw = await self._fetch("GET", path)
            last = self._last.get(path)
            if last is not None and status == 200 and last[0] == raw:
                return cast(T, last[1])
            result = parse(_parse(path, status, raw))
        except ProbeError as exc:
            raise self._redacted(exc) from None
        self._last[path] = (raw, result)
        return result

    async def post_json(self, path: str, body: dict[str, Any], timeout: float | None = None) -> Any:
        return await self.request_json("POST", path, body, timeout)

    async def request_json(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        try:
            status, raw = await self._fetch(method, path, body, timeout)
            return _parse(path, status, raw)
        except ProbeError as exc:
            raise self._redacted(exc) from None

    async def _fetch(
        self, method: str, path: str, body: dict[str, Any] | None = None, timeout: float | None = None
    ) -> tuple[int, bytes]:
        """The answer's status and bytes within `timeout` seconds in all (default `probe_timeout`)."""
        total = timeout or self.config.probe_timeout
        headers = self.headers()
        data = b""
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            async with asyncio.timeout(total):
                resp = await self.pool.post(self.base_url, path, data, headers, total, total, method=method)
                try:
                    declared = resp.headers.get("content-length", "")
                    if declared.isdigit() and int(declared) > MAX_PROBE_BODY_BYTES:
                        raise ProbeError(
                            FailureReason.TOO_LARGE, f"body of {declared} bytes is over {MAX_PROBE_BODY_BYTES}"
                        )
                    raw = await resp.read(MAX_PROBE_BODY_BYTES)
                finally:
                    resp.close()
        except TimeoutError:
            raise ProbeError(FailureReason.TIMEOUT, f"no complete answer from {path} within {total:g} s") from None
        except AnswerTooLarge:
            raise ProbeError(FailureReason.TOO_LARGE, f"body over {MAX_PROBE_BODY_BYTES} bytes") from None
        except (ConnectError, ConnectionLost) as exc:
            raise ProbeError(FailureReason.CONNECT, f"{path}: {exc}") from None
        except UpstreamError as exc:
            raise ProbeError(FailureReason.BAD_RESPONSE, f"{path}: {exc}") from None
        except ValueError:  # a token with a line break: never sent
            raise ProbeError(FailureReason.AUTH, "the API token cannot be sent: it holds a line break") from None
        return resp.status, raw


def _parse(path: str, status: int, raw: bytes) -> Any:
    try:
        body = loads(raw) if raw else None
    except ValueError:
        body = None
        parsed = False
    else:
        parsed = True
    message = error_message(body)
    if status in (401, 403):
        raise ProbeError(FailureReason.AUTH, f"{path}: HTTP {status}: {message or 'authentication required'}")
    if 300 <= status < 400:  # followed, a redirect would make lmwatch fetch (and show) any URL
        raise ProbeError(FailureReason.HTTP_STATUS, f"{path}: HTTP {status}: a redirect (probes follow none)")
    if status >= 400:
        raise ProbeError(FailureReason.HTTP_STATUS, f"{path}: HTTP {status}" + (f": {message}" if message else ""))
    if not parsed:
        start = raw[:40].decode("utf-8", "replace").strip().replace("\n", " ")
        raise ProbeError(FailureReason.BAD_RESPONSE, f"{path}: not JSON (starts with {start!r})")
    if message is not None:
        if "api token" in message.lower() or "invalid_api_key" in json.dumps(body):
            raise ProbeError(FailureReason.AUTH, f"{path}: {message}")
        raise ProbeError(FailureReason.ERROR_BODY, f"{path}: HTTP {status} with an error body: {message}")
    return body


def shape_error(path: str, what: str) -> ProbeError:
    return ProbeError(FailureReason.BAD_RESPONSE, f"{path}: {what}")


def as_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_entries(
    path: str, entries: list[Any], parse: Callable[[Any], ModelInfo | None], key: str
) -> tuple[list[ModelInfo], list[str]]:
    """Parse each model entry; one without its `key` is skipped with a warning (the backend is degraded)."""
    models, warnings = [], []
    for entry in entries:
        model = parse(entry)
        if model is None:
            warnings.append(f"{path}: skipped an entry with no `{key}`")
        else:
            models.append(model)
    return models, warnings


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def as_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


MODEL_GONE: tuple[str, ...] = (r"model_not_found", r"not found", r"not loaded", r"model loading")
"""What any OpenAI-style server says when the model asked for is not (or not yet) there."""

CONTEXT_EXCEEDED: tuple[str, ...] = (
    r"context[ _](?:length|window|size)",
    r"n_ctx",
    r"too many tokens",
    r"exceeds? the context",
)
"""How engines say a prompt does not fit (LM Studio, llama.cpp and vLLM word it differently)."""


JSON_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "json_object", "strict": False, "schema": {"type": "object"}},
}
"""What `json_object` asks for ("some JSON object"), said the way servers that refuse it accept."""


class Flavour(ABC):
    """One server API dialect and its quirks, as data the watcher, router and proxy read.

    A new engine is a new module with a subclass, named in `lmwatch.flavours.FLAVOURS`.
    """

    supports_load: ClassVar[bool] = False
    """Whether the server loads and unloads models over HTTP (`load`/`unload` below)."""
    substitutes_model: ClassVar[bool] = False
    """Whether the server answers with whatever model is loaded when the one asked for is gone (LM
    Studio's just-in-time loading): the proxy then checks the answer's `model` and fails over."""
    model_gone: ClassVar[tuple[str, ...]] = MODEL_GONE
    """Regexes of the error messages that mean "this model is not here": fail over, breaker untouched."""
    context_exceeded: ClassVar[tuple[str, ...]] = CONTEXT_EXCEEDED
    """Regexes of the error messages that mean "the prompt does not fit": a client error, breaker untouched."""
    wrong_model_type: ClassVar[str | None] = None
    """A regex whose group 1 is `llm` or `embedding`, matching the error a model of the other type gives
    (chat sent to an embedding model): the client's request is wrong, nothing fails over."""

    native_apis: ClassVar[Mapping[str, str]] = {}
    """Client APIs beyond chat completions (`responses`, `messages`) the server speaks itself, each with
    the first server version that does; lmwatch translates the others to chat completions."""
    oldest_version: ClassVar[str] = "0"
    """The oldest version that has this flavour's API: assumed when the server does not say."""
    rejects_json_object: ClassVar[bool] = False
    """`response_format: {"type": "json_object"}` is refused: send the equivalent `json_schema` instead."""
    default_concurrency: ClassVar[int | None] = None
    """Requests in flight when neither the config (`max_concurrency`) nor the server (parallel slots)
    says: None = no cap, for servers that batch requests themselves (vLLM, llama.cpp's `-np`)."""

    def __init__(self, name: str) -> None:
        self.name = name
        """The `kind` this flavour has in the table (and the `flavour` the registry reports)."""

    def is_model_gone(self, message: str) -> bool:
        return re.search("|".join(self.model_gone), message, re.IGNORECASE) is not None

    def is_context_exceeded(self, message: str) -> bool:
        return re.search("|".join(self.context_exceeded), message, re.IGNORECASE) is not None

    def model_type_refused(self, message: str) -> str | None:
        """`llm` or `embedding`: the type of model the error says the request needs; None otherwise."""
        found = re.search(self.wrong_model_type, message, re.IGNORECASE) if self.wrong_model_type else None
        return found.group(1).lower() if found else None

    @abstractmethod
    async def list_models(self, client: BackendClient) -> tuple[list[ModelInfo], list[str]]:
        """The models and any warnings (skipped entries); raises ProbeError when this API is absent."""

    async def version(self, client: BackendClient) -> str | None:
        """The server version where the flavour can tell; asked once, at detection."""
        return None

    def apis(self, version: str | None) -> frozenset[str]:
        """The `native_apis` a server of `version` speaks."""
        have = version_tuple(version or self.oldest_version)
        return frozenset(api for api, since in self.native_apis.items() if have >= version_tuple(since))

    def rewrite(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The body this server needs instead of `body` (chat completions, or the Responses API's
        `text.format`), or None when it takes it as is."""
        if self.rejects_json_object:
            fmt = body.get("response_format")
            if isinstance(fmt, dict) and fmt.get("type") == "json_object":
                return {**body, "response_format": JSON_OBJECT_SCHEMA}
            text = body.get("text")
            fmt = text.get("format") if isinstance(text, dict) else None
            if isinstance(fmt, dict) and fmt.get("type") == "json_object":
                schema = {"type": "json_schema", **JSON_OBJECT_SCHEMA["json_schema"]}
                return {**body, "text": {**text, "format": schema}}  # type: ignore[dict-item]
        return None

    async def load(
        self,
        client: BackendClient,
        model: str,
        context_length: int | None = None,
        parallel: int | None = None,
        timeout: float | None = None,
    ) -> dict[str, Any]:
        raise ProbeError(FailureReason.HTTP_STATUS, f"{self.name} servers cannot load models over HTTP")

    async def unload(self, client: BackendClient, instance_id: str) -> dict[str, Any]:
        raise ProbeError(FailureReason.HTTP_STATUS, f"{self.name} servers cannot unload models over HTTP")
