"""The aiohttp application: routes per flavour, auth, and one small handler per endpoint.

Routes exist only where the simulated server has them ("0.3" has no `/api/v1`, "openai" has only
`/v1` and `/health`); everything else reaches `unknown`, which answers like the real server would
(LM Studio: HTTP 200 with an error body; plain OpenAI servers: 404). `/__sim/*` routes are the
simulator's own introspection and control surface: LM Studio has nothing like them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from aiohttp import web

from lmwatch.simulator import agent_apis, errors, inference, shapes
from lmwatch.simulator.catalogue import Instance, LoadFailed, Purpose
from lmwatch.simulator.errors import SimError
from lmwatch.simulator.flavours.base import LMSTUDIO, Handler, Route
from lmwatch.simulator.inference import Answer, Prompt
from lmwatch.simulator.slots import InstanceUnloaded
from lmwatch.simulator.state import SimState
from lmwatch.simulator.streaming import SSE_HEADERS, Frames, Pacing, completion_frames, named_event, write_frames

Api = Literal["v1", "v0"]
STATE_KEY = web.AppKey("lmwatch_simulator_state", SimState)
UNLOADED_MESSAGE = "The model was unloaded while generating. Generation stopped."


def json_response(payload: object, status: int = 200) -> web.Response:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def error_response(error: SimError) -> web.Response:
    return json_response(error.body, error.status)


def build_app(state: SimState) -> web.Application:
    """An application serving `state`; its flavour (`state.settings.dialect`) names the routes."""
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE_KEY] = state
    h = Handlers(state)
    own = [
        Route("GET", "/__sim/stats", h.sim_stats),
        Route("GET", "/__sim/config", h.sim_config),
        Route("POST", "/__sim/config", h.sim_config),
        Route("POST", "/__sim/reset-stats", h.sim_reset_stats),
        Route("*", "/{tail:.*}", h.unknown),
    ]
    for route in [*state.settings.dialect.routes(h), *own]:
        app.router.add_route(route.method, route.path, h.guard(route.handler, auth=route.auth))
    return app


class Handlers:
    def __init__(self, state: SimState) -> None:
        self.state = state
        self.settings = state.settings
        self.stats = state.stats
        self.catalogue = state.catalogue
        self.conversations: dict[str, list[dict[str, object]]] = {}
        """`/v1/responses` state: the turns of each stored response, by id (LM Studio keeps them too)."""

    # --- plumbing ------------------------------------------------------------------------------

    def guard(self, handler: Handler, *, auth: bool) -> Handler:
        """Count the request, check the bearer token, turn a raised `SimError` into its answer."""
        settings, stats = self.settings, self.stats

        async def guarded(request: web.Request) -> web.StreamResponse:
            stats.count_request(request.path)
            token = settings.api_token
            if auth and token is not None:
                given = request.headers.get("Authorization", "")
                if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                    return error_response(settings.dialect.unauthorized(bool(given)))
            try:
                return await handler(request)
            except SimError as error:
                return error_response(error)

        return guarded

    async def _body(self, request: web.Request) -> dict[str, object]:
        return inference.parse_json(await request.read(), self.settings.dialect)

    async def _admit(self, name: str, purpose: Purpose, *, ignore_name: bool, ttl: float | None) -> Instance:
        """Resolve the model (maybe JIT-loading it), inject a 500 if due, then wait for a slot."""
        inst = await self.catalogue.resolve(name, purpose, ignore_name_if_single=ignore_name, ttl=ttl)
        if self.state.roll(self.settings.error_rate):
            self.stats.errors_injected_total += 1
            raise self.settings.dialect.injected_crash()
        gate = inst.gate
        try:
            if not gate.try_acquire():
                self.stats.enqueue()
                try:
                    await gate.acquire()
                finally:
                    self.stats.queued -= 1
        except InstanceUnloaded:
            raise self.settings.dialect.plain(500, UNLOADED_MESSAGE) from None
        return inst

    async def _serve(
        self,
        name: str,
        purpose: Purpose,
        answer: Callable[[Instance], Awaitable[web.StreamResponse]],
        *,
        ignore_name: bool,
        ttl: float | None,
        shape_error: Callable[[SimError], SimError] = lambda error: error,
    ) -> web.StreamResponse:
        """Admit one inference request to an instance, let `answer` answer it, and keep the counters,
        the slot and the instance's idle clock right however it ends (refused, answered, cancelled)."""
        stats = self.stats
        stats.enter()
        try:
            try:
                inst = await self._admit(name, purpose, ignore_name=ignore_name, ttl=ttl)
            except SimError as error:
                stats.errors_total += 1
                return error_response(shape_error(error))
            try:
                return await answer(inst)
            finally:
                inst.gate.release()
                inst.last_used = time.monotonic()
        except asyncio.CancelledError:
            stats.cancelled_total += 1  # the client went away: LM Studio stops generating too
            raise
        finally:
            stats.inflight -= 1

    def _generation_delay(self, answer: Answer) -> float:
        """Seconds a non-streamed answer takes: time to the first token, then the rest at the set speed."""
        settings = self.settings
        delay = settings.first_token_delay(answer.prompt_tokens)
        if settings.tokens_per_second > 0:
            delay += max(answer.completion_tokens - 1, 0) / settings.tokens_per_second
        return delay

    # --- inference -----------------------------------------------------------------------------

    async def v1_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat", "v1")

    async def v1_text(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "text", "v1")

    async def v0_chat(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "chat", "v0")

    async def v0_text(self, request: web.Request) -> web.StreamResponse:
        return await self._generate(request, "text", "v0")

    async def _generate(self, request: web.Request, kind: inference.Kind, api: Api) -> web.StreamResponse:
        stats, settings = self.stats, self.settings
        try:
            body = await self._body(request)
            prompt = inference.parse_prompt(body, kind, settings.dialect)
        except SimError as error:
            stats.errors_total += 1
            return error_response(error)

        async def answer(inst: Instance) -> web.StreamResponse:
            if prompt.has_images and inst.model.type != "vlm":
                stats.errors_total += 1
                return error_response(settings.dialect.plain(400, inference.NOT_VISION))
            planned = self._plan(prompt, body, inst)
            if prompt.stream:
                frames = completion_frames(prompt, planned, inst.id, fingerprint=settings.dialect.lmstudio)
                return await self._stream(request, planned, inst, frames)
            return await self._complete(prompt, planned, inst, api)

        # LM Studio's quirk: on /v1, with exactly one LLM loaded the requested name is ignored.
        ignore = api == "v1" or settings.dialect.serves_any_name
        return await self._serve(prompt.model, "llm", answer, ignore_name=ignore, ttl=prompt.ttl)

    def _plan(self, prompt: Prompt, body: Mapping[str, object], inst: Instance) -> Answer:
        """The answer to `prompt` on `inst`, with a serial of its own for its ids."""
        settings = self.settings
        return inference.plan_answer(
            prompt, body, settings.max_tokens_default, inst.context_length, settings.answer_tokens, self.state.ids.new()
        )

    async def _generation(self, answer: Answer, inst: Instance) -> SimError | None:
        """Wait as long as a non-streamed answer takes; the error when the model went away meanwhile."""
        delay = self._generation_delay(answer)
        if delay > 0:
            await asyncio.sleep(delay)
        if inst.unloaded:
            self.stats.errors_total += 1
            return self.settings.dialect.plain(500, UNLOADED_MESSAGE)
        return None

    async def _complete(self, prompt: Prompt, answer: Answer, inst: Instance, api: Api) -> web.Response:
        settings = self.settings
        started = time.perf_counter()
        failed = await self._generation(answer, inst)
        if failed is not None:
            return error_response(failed)
        body = inference.completion_body(prompt, answer, inst.id, fingerprint=settings.dialect.lmstudio)
        if api == "v0":
            elapsed = time.perf_counter() - started
            ttft = min(settings.first_token_delay(answer.prompt_tokens), elapsed)
            body["stats"] = inference.v0_stats(answer, ttft, max(elapsed - ttft, 1e-4))
            body["model_info"] = shapes.model_info(inst)
            body["runtime"] = shapes.RUNTIME
        self.stats.complete(answer.completion_tokens)
        return json_response(body)

    async def _stream(self, request: web.Request, answer: Answer, inst: Instance, frames: Frames) -> web.StreamResponse:
        settings, stats = self.settings, self.stats
        stall = settings.stall_seconds if self.state.roll(settings.stall_rate) else None
        drop = stall is None and self.state.roll(settings.drop_rate)
        if stall is not None or drop:
            stats.errors_injected_total += 1
        tps = settings.tokens_per_second
        pacing = Pacing(settings.first_token_delay(answer.prompt_tokens), 1 / tps if tps > 0 else 0.0, stall, drop)
        resp = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await resp.prepare(request)
            outcome = await write_frames(resp, frames, pacing, lambda: _cut(request), lambda: inst.unloaded)
        except ConnectionResetError:
            stats.cancelled_total += 1
            return resp
        if outcome == "done":
            stats.complete(answer.completion_tokens)
        elif outcome == "unloaded":
            stats.errors_total += 1
        return resp

    async def v1_messages(self, request: web.Request) -> web.StreamResponse:
        """Anthropic's Messages API, on the LM Studio versions that have it (else the unknown route)."""

        def render(answer: Answer, inst: Instance) -> tuple[dict[str, object], Frames]:
            return agent_apis.message_body(answer, inst.id), agent_apis.message_frames(answer, inst.id)

        return await self._agent_api(
            request, "messages", agent_apis.messages_as_chat, render, agent_apis.anthropic_error
        )

    async def v1_responses(self, request: web.Request) -> web.StreamResponse:
        """OpenAI's Responses API, on the LM Studio versions that have it; stateful by `previous_response_id`."""
        previous: object = None
        conversation: list[dict[str, object]] = []

        def to_chat(body: dict[str, object]) -> dict[str, object]:
            nonlocal previous
            previous = body.get("previous_response_id")
            history = self.conversations.get(previous) if isinstance(previous, str) else []
            if history is None:
                message = f"Response with id '{previous}' not found."
                raise errors.SimError(
                    400, {"error": {"message": message, "type": "invalid_request_error",
                                    "param": "previous_response_id", "code": "previous_response_not_found"}},
                )  # fmt: skip
            chat = agent_apis.responses_as_chat(body, history)
            if body.get("store") is not False:
                conversation.extend(m for m in chat["messages"] if m.get("role") != "system")  # type: ignore[attr-defined]
            return chat

        def render(answer: Answer, inst: Instance) -> tuple[dict[str, object], Frames]:
            response_id = f"resp_{answer.serial}"
            whole = agent_apis.response_body(answer, inst.id, response_id, previous)
            if conversation:
                self.conversations[response_id] = [*conversation, {"role": "assistant", "content": answer.content}]
            return whole, agent_apis.response_frames(whole)

        return await self._agent_api(request, "responses", to_chat, render, lambda error: error)

    async def _agent_api(
        self,
        request: web.Request,
        api: str,
        to_chat: Callable[[dict[str, object]], dict[str, object]],
        render: Callable[[Answer, Instance], tuple[dict[str, object], Frames]],
        shape_error: Callable[[SimError], SimError],
    ) -> web.StreamResponse:
        settings = self.settings
        if not settings.dialect.serves(api, settings.version):
            return await self.unknown(request)
        try:
            chat = to_chat(await self._body(request))
            prompt = inference.parse_prompt(chat, "chat", settings.dialect)
        except SimError as error:
            self.stats.errors_total += 1
            return error_response(shape_error(error))

        async def answer(inst: Instance) -> web.StreamResponse:
            planned = self._plan(prompt, chat, inst)
            whole, frames = render(planned, inst)
            if prompt.stream:
                return await self._stream(request, planned, inst, frames)
            failed = await self._generation(planned, inst)
            if failed is not None:
                return error_response(shape_error(failed))
            self.stats.complete(planned.completion_tokens)
            return json_response(whole)

        return await self._serve(prompt.model, "llm", answer, ignore_name=True, ttl=None, shape_error=shape_error)

    async def v1_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embed(request)

    async def v0_embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._embed(request)

    async def _embed(self, request: web.Request) -> web.StreamResponse:
        stats, settings = self.stats, self.settings
        try:
            body = await self._body(request)
            inputs = inference.embedding_inputs(body, settings.dialect)
        except SimError as error:
            stats.errors_total += 1
            return error_response(error)
        model = body.get("model")

        async def answer(inst: Instance) -> web.StreamResponse:
            payload = inference.embeddings_body(inputs, inst.id, body.get("encoding_format"))
            delay = settings.first_token_delay(int(payload["usage"]["prompt_tokens"]))  # type: ignore[index]
            if delay > 0:
                await asyncio.sleep(delay)
            stats.complete()
            stats.embedded_inputs_total += len(inputs)
            return json_response(payload)

        name = model if isinstance(model, str) else ""
        return await self._serve(name, "embeddings", answer, ignore_name=settings.dialect.serves_any_name, ttl=None)

    # --- model lists ---------------------------------------------------------------------------

    async def v1_models(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.settings.dialect.model_list(self.catalogue))

    async def v0_models(self, request: web.Request) -> web.StreamResponse:
        return json_response(shapes.v0_models(self.catalogue))

    async def v0_model(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["model"]
        inst = self.catalogue.instances.get(name)
        model = inst.model if inst is not None else self.catalogue.find_model(name)
        if model is None:
            error = self.settings.dialect.unknown_model(name, [m.id for m in self.catalogue.listed_models()])
            return json_response(error.body, 404)
        return json_response(shapes.v0_model(self.catalogue, model))

    async def api_v1_models(self, request: web.Request) -> web.StreamResponse:
        return json_response(shapes.v1_models(self.catalogue))

    # --- native v1 load / unload / chat (LM Studio 0.4) ----------------------------------------

    async def _v1_body(self, request: web.Request) -> dict[str, object]:
        try:
            return await self._body(request)
        except SimError:
            raise errors.v1_error(400, "invalid_request", "Request body must be a JSON object.") from None

    async def api_v1_load(self, request: web.Request) -> web.StreamResponse:
        body = await self._v1_body(request)
        name, context = body.get("model"), body.get("context_length")
        if not isinstance(name, str) or not name:
            raise errors.v1_error(400, "invalid_request", '"model" is required')
        if context is not None and (not isinstance(context, int) or isinstance(context, bool)):
            raise errors.v1_error(400, "invalid_request", '"context_length" must be an integer')
        try:
            inst = await self.catalogue.load(name, context_length=context)
        except KeyError:
            raise errors.v1_error(404, "model_not_found", f'Model "{name}" not found.') from None
        except ValueError as exc:
            raise errors.v1_error(400, "invalid_request", str(exc)) from None
        except LoadFailed as exc:  # the shape of LM Studio's `model_load_failed` is unconfirmed: v1's, with a code
            raise errors.SimError(
                500, {"error": {"type": "internal_error", "code": "model_load_failed", "message": exc.message}}
            ) from None
        answer: dict[str, object] = {
            "type": "embedding" if inst.model.is_embedding else "llm",
            "instance_id": inst.id,
            "load_time_seconds": inst.load_time_seconds,
            "status": "loaded",
        }
        if body.get("echo_load_config") is True:
            answer["load_config"] = shapes.instance_config(inst)
        return json_response(answer)

    async def api_v1_unload(self, request: web.Request) -> web.StreamResponse:
        body = await self._v1_body(request)
        instance_id = body.get("instance_id")
        if not isinstance(instance_id, str) or not instance_id:
            raise errors.v1_error(400, "invalid_request", '"instance_id" is required')
        try:
            self.catalogue.unload(instance_id)
        except KeyError:
            message = f'No loaded model instance with id "{instance_id}".'
            raise errors.v1_error(404, "model_not_found", message) from None
        return json_response({"instance_id": instance_id})

    async def api_v1_chat(self, request: web.Request) -> web.StreamResponse:
        """A minimal `/api/v1/chat`: text in, one `message` out; streamed as named SSE events."""
        body = await self._v1_body(request)
        name, text = body.get("model"), _v1_input_text(body.get("input"))
        if not isinstance(name, str) or not name:
            raise errors.v1_error(400, "invalid_request", '"model" is required')
        if text is None:
            raise errors.v1_error(400, "invalid_request", '"input" must be a string or an array of input items')
        max_out = body.get("max_output_tokens")
        prompt = inference.Prompt(
            "chat", name, text, text, False, max_out if isinstance(max_out, int) and max_out > 0 else None,
            None, body.get("stream") is True, False, None,
        )  # fmt: skip
        loads_before = self.stats.loads_total
        store = body.get("store") is not False

        async def answer(inst: Instance) -> web.StreamResponse:
            return await self._v1_chat_answer(request, prompt, inst, loads_before, store)

        return await self._serve(name, "llm", answer, ignore_name=False, ttl=None, shape_error=_as_v1_error)

    async def _v1_chat_answer(
        self, request: web.Request, prompt: Prompt, inst: Instance, loads_before: int, store: bool
    ) -> web.StreamResponse:
        settings = self.settings
        answer = self._plan(prompt, {}, inst)
        started = time.perf_counter()
        delay = self._generation_delay(answer)
        if delay > 0:
            await asyncio.sleep(delay)
        elapsed = max(time.perf_counter() - started, 1e-4)
        stats: dict[str, object] = {
            "input_tokens": answer.prompt_tokens,
            "total_output_tokens": answer.completion_tokens,
            "reasoning_output_tokens": 0,
            "tokens_per_second": round(answer.completion_tokens / elapsed, 3),
            "time_to_first_token_seconds": round(min(settings.first_token_delay(answer.prompt_tokens), elapsed), 3),
        }
        if inst.jit and self.stats.loads_total != loads_before:
            stats["model_load_time_seconds"] = inst.load_time_seconds  # only when this request loaded it
        result: dict[str, object] = {
            "model_instance_id": inst.id,
            "output": [{"type": "message", "content": answer.content}],
            "stats": stats,
        }
        if store:
            result["response_id"] = f"resp_{answer.serial}"
        if not prompt.stream:
            self.stats.complete(answer.completion_tokens)
            return json_response(result)
        frames = [named_event("chat.start", {"model_instance_id": inst.id}), named_event("message.start", {})]
        frames += [named_event("message.delta", {"content": piece}) for piece in answer.pieces]
        frames += [named_event("message.end", {}), named_event("chat.end", {"result": result})]
        resp = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await resp.prepare(request)
            await resp.write(b"".join(frames))
        except ConnectionResetError:
            self.stats.cancelled_total += 1
            return resp
        self.stats.complete(answer.completion_tokens)
        return resp

    # --- status and simulator control ----------------------------------------------------------

    async def greeting(self, request: web.Request) -> web.StreamResponse:
        return json_response({"lmstudio": True})

    async def lms_status(self, request: web.Request) -> web.StreamResponse:
        return json_response({"package": "llmster", "version": self.settings.version})

    async def health(self, request: web.Request) -> web.StreamResponse:
        return json_response({"status": "ok"})

    async def sim_stats(self, request: web.Request) -> web.StreamResponse:
        """Simulator-only: counters (`SimStats`) and per-instance slots. Not an LM Studio route."""
        return json_response(self.state.snapshot())

    async def sim_config(self, request: web.Request) -> web.StreamResponse:
        """Simulator-only: GET shows the live knobs; POST a JSON object of changes to apply them."""
        if request.method == "POST":
            try:
                body = inference.parse_json(await request.read(), LMSTUDIO)
                self.state.configure(body)
            except SimError as error:
                return json_response({"error": error.body["error"]}, 400)
            except ValueError as exc:
                return json_response({"error": str(exc)}, 400)
        return json_response({"config": self.settings.public_view()})

    async def sim_reset_stats(self, request: web.Request) -> web.StreamResponse:
        """Simulator-only: zero the counters (live gauges such as `inflight` are kept)."""
        self.stats.reset()
        return json_response({"ok": True})

    async def unknown(self, request: web.Request) -> web.StreamResponse:
        return error_response(self.settings.dialect.unknown_route(request.method, request.path))


def _as_v1_error(error: SimError) -> SimError:
    """Re-shape an OpenAI-style or string error into the native v1 `{"error": {type, message}}`."""
    detail = error.body.get("error")
    if isinstance(detail, dict):
        message, code = str(detail.get("message", "")), detail.get("code")
    else:
        message, code = str(detail), None
    if error.status >= 500:
        type_ = "internal_error"
    elif code == "model_not_found" or message.startswith("No models loaded"):
        type_ = "model_not_found"
    else:
        type_ = "invalid_request"
    return errors.v1_error(error.status, type_, message)


def _v1_input_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [
            str(item.get("content", item.get("text", "")))
            for item in value
            if isinstance(item, dict) and item.get("type") in ("message", "text")
        ]
        return "\n".join(parts)
    return None


def _cut(request: web.Request) -> None:
    """Close the connection abruptly: the chunked body stays unterminated, no `[DONE]`."""
    transport = request.transport
    if transport is not None:
        transport.abort()
