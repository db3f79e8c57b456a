"""How a request in an agent API reaches one target: as it came, or through chat completions.

A backend whose flavour and version speak the API (`Target.apis`, from lmwatch/backends) gets the
request unchanged and its answer is relayed; any other target (llama.cpp, older LM Studio, cloud
providers) gets the chat-completions translation, and its answer, whole or streamed, is translated
back (lmwatch/translate). The proxy asks the request's dialect at every attempt, so one request
can fail over from a backend that speaks the API to one that does not.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from lmwatch.routing.request import Endpoint
from lmwatch.routing.select import Target
from lmwatch.routing.sse import TypedStreamMeter
from lmwatch.translate import messages
from lmwatch.translate.chat import ChatStream, Tokens, reply_of


class Dialect(ABC):
    endpoint: ClassVar[Endpoint]
    last_events: ClassVar[frozenset[str]]
    """The event types that end a complete stream of this API."""

    translated: bool = False
    """Set once an attempt went through chat completions (for metrics and the response's state)."""

    def native(self, target: Target) -> bool:
        return self.endpoint.value in target.apis

    def meter(self) -> TypedStreamMeter:
        return TypedStreamMeter(self.last_events)

    @abstractmethod
    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat-completions body for the request (raises ApiError for what cannot be asked)."""

    @abstractmethod
    def answer(self, chat: dict[str, Any], model: str) -> dict[str, Any]:
        """The client's answer for a chat-completions answer."""

    @abstractmethod
    def stream(self, model: str, tokens: Tokens) -> ChatStream:
        """A translator of a chat-completions stream into this API's stream."""

    @abstractmethod
    def stream_error(self, message: str, code: str | None) -> bytes:
        """The event that ends a natively relayed stream which failed after it started."""


class MessagesDialect(Dialect):
    endpoint = Endpoint.MESSAGES
    last_events = frozenset({"message_stop"})

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        return messages.to_chat(body)

    def answer(self, chat: dict[str, Any], model: str) -> dict[str, Any]:
        return messages.from_chat(reply_of(chat, model))

    def stream(self, model: str, tokens: Tokens) -> ChatStream:
        return messages.MessagesStream(model, tokens)

    def stream_error(self, message: str, code: str | None) -> bytes:
        return messages.stream_error(message)
