"""What one attempt at a target gives: a complete answer, a relayed stream, or a failure the walk
moves on from; and the tokens it used. Shared by the failover walk, the JSON call and the relay."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from lmwatch.api.calls import Stream
from lmwatch.failures import FailureReason
from lmwatch.http_client import (
    AnswerTooLarge,
    ConnectError,
    ConnectionLost,
    LocalResources,
    ShuttingDown,
    UpstreamError,
)


class Verdict(StrEnum):
    """What an attempt tells the breaker."""

    SUCCESS = "success"
    UPSTREAM_FAILED = "upstream_failed"  # after the first byte: counts, but cannot fail over
    CLIENT_GONE = "client_gone"  # no verdict on the backend


@dataclass(frozen=True)
class Failure:
    """An attempt that failed before anything reached the client (so the walk goes on)."""

    reason: FailureReason
    """A bounded label (lmwatch/failures.py)."""
    message: str
    transient: bool = False
    breaker: bool = True
    attempted: bool = True


@dataclass(slots=True)
class Answer:
    """A complete JSON answer (a success, or an error the client must see as it is)."""

    status: int
    raw: bytes
    obj: dict[str, Any]


@dataclass
class Streamed:
    response: Stream
    verdict: Verdict


Result = Streamed | Answer | Failure


@dataclass(slots=True)
class Usage:
    prompt: int = 0
    completion: int = 0

    def add(self, usage: Any) -> None:
        """Chat completions' `prompt_tokens`/`completion_tokens`, or the agent APIs' `input_`/`output_tokens`."""
        if isinstance(usage, dict):
            prompt = usage.get("prompt_tokens")
            completion = usage.get("completion_tokens")
            self.prompt += count(prompt if prompt is not None else usage.get("input_tokens"))
            self.completion += count(completion if completion is not None else usage.get("output_tokens"))


def count(value: Any) -> int:
    """A token count from a backend's JSON: a positive int, else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def connection_failure(exc: BaseException) -> Failure:
    """The failure of a connection, a timeout or an answer HTTP does not allow."""
    if isinstance(exc, LocalResources):  # this host's limits: the backend did nothing wrong
        return Failure(FailureReason.LOCAL_RESOURCES, describe(exc), breaker=False, attempted=False)
    if isinstance(exc, ShuttingDown):
        return Failure(FailureReason.SHUTTING_DOWN, describe(exc), breaker=False, attempted=False)
    if isinstance(exc, AnswerTooLarge):
        return Failure(FailureReason.ANSWER_TOO_LARGE, describe(exc), breaker=False)
    if isinstance(exc, TimeoutError):
        return Failure(FailureReason.TIMEOUT, describe(exc))
    if isinstance(exc, ConnectError):
        return Failure(FailureReason.CONNECT, describe(exc), transient=True)
    if isinstance(exc, ConnectionLost):
        return Failure(
            FailureReason.CONNECT if exc.before_answer else FailureReason.STREAM_CUT, describe(exc), transient=True
        )
    return Failure(FailureReason.BAD_RESPONSE, describe(exc))


def describe(exc: BaseException) -> str:
    if isinstance(exc, UpstreamError):
        return str(exc)
    if isinstance(exc, TimeoutError):
        return "no data within the idle timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
