"""Why talking to a backend failed: one bounded vocabulary for the watcher's probes and the proxy's
attempts, str-valued because each value is a metric label (`reason`) and a word in `/status`."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class FailureReason(StrEnum):
    # probes and attempts alike
    CONNECT = "connect"  # refused, reset, DNS: nothing answered (a connection lost before the answer)
    TIMEOUT = "timeout"  # no complete answer in time (includes a slow drip, and an HTTP 408)
    AUTH = "auth"  # 401/403: the token is missing or wrong
    ERROR_BODY = "error_body"  # LM Studio's HTTP 200 with an `error` body
    BAD_RESPONSE = "bad_response"  # not JSON, not the expected shape (an HTML page, garbage)
    # probes
    HTTP_STATUS = "http_status"  # an HTTP error status
    TOO_LARGE = "too_large"  # a body over the probes' size limit
    # attempts: from the backend
    HTTP_5XX = "http_5xx"
    HTTP_429 = "http_429"
    MODEL_UNAVAILABLE = "model_unavailable"  # a 404, or the flavour's words for a model that is gone
    CONTEXT_LENGTH = "context_length"  # the prompt is over the loaded context (another instance may hold it)
    STREAM_CUT = "stream_cut"  # the stream ended before its first event
    ANSWER_TOO_LARGE = "answer_too_large"
    # attempts: lmwatch's side, the backend did nothing wrong
    BAD_CONFIG = "bad_config"  # the backend's token file cannot be read
    BREAKER_OPEN = "breaker_open"
    QUEUE_TIMEOUT = "queue_timeout"
    QUEUE_FULL = "queue_full"
    LOAD_FAILED = "load_failed"  # the model could not be loaded for the request
    UNSUPPORTED_API = "unsupported_api"  # the request cannot be translated for this backend
    LOCAL_RESOURCES = "local_resources"  # this host is out of descriptors or memory
    SHUTTING_DOWN = "shutting_down"


PROBE_REASONS: Final = (
    FailureReason.CONNECT,
    FailureReason.TIMEOUT,
    FailureReason.HTTP_STATUS,
    FailureReason.AUTH,
    FailureReason.ERROR_BODY,
    FailureReason.BAD_RESPONSE,
    FailureReason.TOO_LARGE,
)
"""What a probe can fail with: the rows of `lmwatch_backend_probe_failures_total`, each backend's
counts from 0."""
