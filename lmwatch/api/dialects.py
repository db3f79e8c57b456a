"""How a request in an agent API reaches one target: as it came, or through chat completions.

A backend whose flavour and version speak the API (`Target.apis`, from lmwatch/backends) gets the
request unchanged and its answer is relayed; any other target (llama.cpp, older LM Studio, cloud
providers) gets the chat-completions translation, and its answer, whole or streamed, is translated
back (lmwatch/api/translate). The proxy asks the request's dialect at every attempt, so one request
can fail over from a backend that speaks the API to one that does not.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from lmwatch.api.errors import ApiError
from lmwatch.api.response_store import MAX_RESPONSES, ResponseStore, Stored
from lmwatch.api.sse import TypedStreamMeter
from lmwatch.api.translate import messages, responses
from lmwatch.api.translate.chat import ChatStream, Reply, Tokens, new_id, reply_of
from lmwatch.routing.request import Endpoint
from lmwatch.routing.select import Plan, Target


class Dialect(ABC):
    endpoint: ClassVar[Endpoint]
    last_events: ClassVar[frozenset[str]]
    """The event types that end a complete stream of this API."""

    translated: bool = False
    """Set at each attempt: it went through chat completions (the X-LMWatch-Translated header)."""
    untranslatable: str | None = None
    """Why the request cannot be translated (a tool only the API itself has): native targets only."""

    def native(self, target: Target) -> bool:
        return self.endpoint.value in target.apis

    def restrict(self, plan: Plan) -> Plan:
        """The plan for this request (a continued response must go where its state is)."""
        return plan

    def served(self, target: Target, response_id: str | None) -> None:  # noqa: B027 (most dialects keep nothing)
        """An attempt answered in full; `response_id` is the id a native answer carried."""

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


class ResponsesDialect(Dialect):
    """OpenAI's Responses API, with `previous_response_id` followed to where the state is."""

    endpoint = Endpoint.RESPONSES
    last_events = frozenset({"response.completed", "response.incomplete"})

    def __init__(self, store: ResponseStore) -> None:
        self.store = store
        self.response_id = new_id("resp")
        self.body: dict[str, Any] = {}
        self.turns: list[dict[str, Any]] = []
        self.held = False
        """The conversation so far is lmwatch's (translated): every attempt is translated."""
        self.holder: Stored | None = None
        """Where the previous response is held (it was answered natively)."""
        self._reply: Reply | None = None
        self._stream: responses.ResponsesStream | None = None

    def translate(self, body: dict[str, Any]) -> dict[str, Any]:
        self.body = body
        history = self._history(body.get("previous_response_id"))
        try:
            chat = responses.to_chat(body, history)
        except responses.Untranslatable as exc:
            if self.held:
                raise ApiError(
                    400, f"{exc}; this conversation was translated, so it cannot", code="invalid_request"
                ) from None
            self.untranslatable = str(exc)
            text = body.get("input") if isinstance(body.get("input"), str) else ""
            return {"model": body.get("model"), "messages": [{"role": "user", "content": text}]}
        instructions = 1 if isinstance(body.get("instructions"), str) and body["instructions"] else 0
        self.turns = chat["messages"][instructions:]  # instructions do not carry over to the next response
        return chat

    def _history(self, previous: Any) -> list[dict[str, Any]] | None:
        if previous is None:
            return None
        if not isinstance(previous, str):
            raise ApiError(400, "`previous_response_id` must be a string", param="previous_response_id")
        stored = self.store.get(previous)
        if stored is None:
            raise ApiError(
                400,
                f"lmwatch knows no response {previous!r}: it remembers the last {MAX_RESPONSES} responses it "
                "served, until it restarts; send the whole conversation as `input` instead",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if stored.turns is None:
            self.holder = stored
            return None
        self.held = True
        return stored.turns

    def native(self, target: Target) -> bool:
        return not self.held and super().native(target)

    def restrict(self, plan: Plan) -> Plan:
        holder = self.holder
        if holder is None:
            return plan
        tiers = []
        for tier in plan.tiers:
            kept = tuple(t for t in tier.targets if t.backend == holder.backend and self.native(t))
            if kept:
                tiers.append(dataclasses.replace(tier, targets=kept))
        same = tuple(dict.fromkeys(t for tier in tiers for t in tier.targets if t.model == holder.model))
        if same:  # the model that answered first, then the backend's others
            rest = [dataclasses.replace(r, targets=tuple(t for t in r.targets if t not in same)) for r in tiers]
            tiers = [dataclasses.replace(tiers[0], targets=same), *(r for r in rest if r.targets)]
        if not tiers:
            raise ApiError(
                503,
                f"the previous response {self.body.get('previous_response_id')!r} is held by backend "
                f"{holder.backend!r}, which cannot serve this request now (down, draining, or without the model); "
                "send the whole conversation as `input` instead",
                param="previous_response_id",
                code="previous_response_unavailable",
            )
        return dataclasses.replace(plan, tiers=tuple(tiers))

    def answer(self, chat: dict[str, Any], model: str) -> dict[str, Any]:
        self._reply = reply_of(chat, model)
        return responses.response_object(self._reply, self.body, self.response_id)

    def stream(self, model: str, tokens: Tokens) -> ChatStream:
        self._stream = responses.ResponsesStream(model, tokens, self.body, self.response_id)
        self._reply = self._stream.reply
        return self._stream

    def stream_error(self, message: str, code: str | None) -> bytes:
        return responses.stream_error(message, code)

    def served(self, target: Target, response_id: str | None) -> None:
        if self.body.get("store") is False:
            return
        if self.translated and self._reply is not None:
            turns = [*self.turns, responses.assistant_message(self._reply)]
            self.store.put(self.response_id, Stored(target.backend, target.model, turns))
        elif not self.translated and response_id:
            self.store.put(response_id, Stored(target.backend, target.model))
