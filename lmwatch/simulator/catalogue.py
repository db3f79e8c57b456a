"""Which models exist, which are loaded (as which instances), and how a request's `model` is resolved.

This is where LM Studio's model-handling behaviour lives: JIT loading, auto-evict of earlier JIT
loads only, `name:2` instance ids, `name@quant` variant ids, the "exactly one model loaded, so the
requested name is ignored" quirk, idle TTL of JIT loads, and the version-specific error answers.
The common case (the name is a loaded instance id) is one dict lookup.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Literal

from lmwatch.simulator import errors, memory
from lmwatch.simulator.settings import SimModel, SimSettings
from lmwatch.simulator.slots import SlotGate
from lmwatch.simulator.stats import SimStats

Purpose = Literal["llm", "embeddings"]
DEFAULT_JIT_TTL = 3600.0
"""LM Studio gives JIT-loaded models a 60 minute idle TTL unless the request sets `ttl`."""


@dataclass(eq=False)
class Instance:
    """One loaded copy of a model, addressable by `id` (`key`, then `key:2`, `key:3`, ...)."""

    id: str
    model: SimModel
    context_length: int
    jit: bool
    gate: SlotGate
    ttl: float | None = None
    load_time_seconds: float = 0.0
    last_used: float = field(default_factory=time.monotonic)
    unloaded: bool = False
    """Set on unload/eviction: streams still running on it are cut, as LM Studio cuts them."""

    @property
    def parallel(self) -> int:
        return self.gate.limit

    @property
    def memory_bytes(self) -> int:
        return memory.footprint(self.model.size_bytes, self.context_length)

    def idle(self) -> bool:
        return self.gate.active == 0 and self.gate.queued == 0


class LoadFailed(Exception):
    """A load the server refused or that crashed (out of memory); `message` is LM Studio's text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _serves(model: SimModel, purpose: Purpose) -> bool:
    """Whether `model` can answer a request of `purpose` (embedding models only embed, LLMs only chat)."""
    return model.is_embedding == (purpose == "embeddings")


class Catalogue:
    """Downloaded models (`models`) and loaded instances (`instances`), both in insertion order."""

    def __init__(self, settings: SimSettings, stats: SimStats) -> None:
        self.settings = settings
        self.stats = stats
        self.models: dict[str, SimModel] = {}
        self.instances: dict[str, Instance] = {}
        self._by_lower: dict[str, SimModel] = {}
        self._jit_tasks: dict[str, asyncio.Task[Instance]] = {}
        self._jit_lock: asyncio.Lock | None = None
        self._with_ttl = 0
        """Loaded instances that have an idle TTL: while 0, resolve() skips the expiry check."""
        for model in settings.models:
            self.add_model(model)

    # --- queries -------------------------------------------------------------------------------

    def add_model(self, model: SimModel) -> None:
        """Add a downloaded model; `model.loaded` also creates its first (manual) instance."""
        if model.id in self.models:
            raise ValueError(f"model {model.id!r} already exists")
        self.models[model.id] = model
        self._by_lower[model.id.lower()] = model
        if model.loaded:
            self._register(model, jit=False, context_length=model.context_length, ttl=None)

    def find_model(self, name: str) -> SimModel | None:
        """A downloaded model by key, case-insensitively, or by variant id `key@quantization`."""
        model = self.models.get(name) or self._by_lower.get(name.lower())
        if model is None and "@" in name:
            base, _, variant = name.rpartition("@")
            model = self.models.get(base) or self._by_lower.get(base.lower())
            if model is not None and variant.lower() != model.quantization.lower():
                model = None
        return model

    def instances_of(self, model_id: str) -> list[Instance]:
        return [inst for inst in self.instances.values() if inst.model.id == model_id]

    def is_loaded(self, model_id: str) -> bool:
        return any(inst.model.id == model_id for inst in self.instances.values())

    @property
    def jit_enabled(self) -> bool:
        return self.settings.jit and self.settings.dialect.lmstudio

    def listed_models(self) -> list[SimModel]:
        """What model lists show: every download with JIT on, loaded models only with JIT off."""
        if self.jit_enabled:
            return list(self.models.values())
        return [m for m in self.models.values() if self.is_loaded(m.id)]

    # --- resolution ----------------------------------------------------------------------------

    async def resolve(
        self, name: str, purpose: Purpose, *, ignore_name_if_single: bool, ttl: float | None = None
    ) -> Instance:
        """The instance that serves a request naming `name`, JIT-loading it if needed.

        Raises `SimError` with the flavour's body when nothing fits. `ignore_name_if_single` is
        LM Studio's quirk on `/v1/chat/completions`: with exactly one LLM loaded, an unknown name
        is ignored and that model answers.
        """
        if self._with_ttl:
            self._expire_idle()
        inst = self.instances.get(name)
        if inst is None:
            model = self.find_model(name)
            if model is not None:
                inst = self._first_instance(model)
            if inst is None:
                return await self._resolve_unloaded(name, model, purpose, ignore_name_if_single, ttl)
        if not _serves(inst.model, purpose):
            raise self._wrong_type(name, purpose)
        return inst

    async def _resolve_unloaded(
        self,
        name: str,
        model: SimModel | None,
        purpose: Purpose,
        ignore_name_if_single: bool,
        ttl: float | None,
    ) -> Instance:
        """No instance of `name`: JIT-load it, or apply the one-model quirk, or raise the error
        LM Studio gives (listing the ids the request could have used)."""
        flavour = self.settings.dialect
        if model is not None and self.jit_enabled:
            if not _serves(model, purpose):
                raise self._wrong_type(name, purpose)
            try:
                return await self.jit_load(model, ttl)
            except LoadFailed as exc:
                raise flavour.load_failed(exc.message) from None
        usable = [i for i in self.instances.values() if _serves(i.model, purpose)]
        if ignore_name_if_single and len(usable) == 1:
            return usable[0]
        if not usable and not self.jit_enabled:
            raise flavour.no_models_loaded()
        if self.jit_enabled:
            examples = [m.id for m in self.models.values() if _serves(m, purpose)]
        else:
            examples = list(dict.fromkeys(i.model.id for i in usable))
        raise flavour.unknown_model(name, examples)

    def _first_instance(self, model: SimModel) -> Instance | None:
        return next((i for i in self.instances.values() if i.model is model), None)

    def _wrong_type(self, name: str, purpose: Purpose) -> errors.SimError:
        wanted = "embedding" if purpose == "embeddings" else "llm"
        return self.settings.dialect.wrong_model_type(name, wanted)

    # --- loading and unloading -----------------------------------------------------------------

    async def load(
        self, name: str, *, context_length: int | None = None, jit: bool = False, ttl: float | None = None
    ) -> Instance:
        """Load a new instance of a downloaded model (`key`, or `key:N` if `key` is taken).

        Raises `KeyError` for an unknown model, `ValueError` for a context length it cannot take and
        `LoadFailed` when the instance would not fit in `settings.memory_bytes` (after the load time:
        a real out-of-memory shows up part-way through loading).
        """
        model = self.find_model(name)
        if model is None:
            raise KeyError(name)
        if context_length is not None and not 1 <= context_length <= model.max_context_length:
            raise ValueError(f"context_length must be between 1 and {model.max_context_length} for {model.id}")
        ctx = context_length or min(model.context_length, model.max_context_length)
        started = time.monotonic()
        seconds = self.settings.load_seconds if model.load_seconds is None else model.load_seconds
        if seconds > 0:
            await asyncio.sleep(seconds)
        self._check_memory(model, ctx)
        # At least the simulated time: uvloop's millisecond timers may wake a hair early.
        load_time = round(max(time.monotonic() - started, seconds), 3)
        inst = self._register(model, jit=jit, context_length=ctx, ttl=ttl)
        inst.load_time_seconds = load_time
        self.stats.loads_total += 1
        return inst

    def memory_used(self) -> int:
        return memory.used(self.instances.values())

    def _check_memory(self, model: SimModel, context_length: int) -> None:
        budget = self.settings.memory_bytes
        if budget <= 0:
            return
        needed = memory.footprint(model.size_bytes, context_length)
        free = budget - self.memory_used()
        if needed > free:
            self.stats.load_failures_total += 1
            if self.settings.load_error_detail:
                raise LoadFailed(memory.insufficient_message(model.id, needed, max(0, free)))
            raise LoadFailed(f'Failed to load model "{model.id}".')

    async def jit_load(self, model: SimModel, ttl: float | None = None) -> Instance:
        """Load `model` for a request; concurrent requests for it share one load.

        The load runs in its own task, so a client that disconnects while waiting does not abort it
        (the other waiters still get the model). JIT loads are serialised so that auto-evict leaves
        at most one JIT instance resident, as in LM Studio.
        """
        task = self._jit_tasks.get(model.id)
        if task is None:
            task = asyncio.create_task(self._jit_load(model, ttl), name=f"sim-jit-load:{model.id}")
            self._jit_tasks[model.id] = task
            key = model.id

            def forget(_: asyncio.Task[Instance]) -> None:
                self._jit_tasks.pop(key, None)

            task.add_done_callback(forget)
        return await asyncio.shield(task)

    async def _jit_load(self, model: SimModel, ttl: float | None) -> Instance:
        if self._jit_lock is None:
            self._jit_lock = asyncio.Lock()
        async with self._jit_lock:
            existing = self._first_instance(model)
            if existing is not None:
                return existing
            if self.settings.auto_evict:
                for inst in [i for i in self.instances.values() if i.jit]:
                    self.unload(inst.id, evicted=True)
            inst = await self.load(model.id, jit=True, ttl=DEFAULT_JIT_TTL if ttl is None else ttl)
            self.stats.jit_loads_total += 1
            return inst

    def unload(self, instance_id: str, *, evicted: bool = False) -> Instance:
        """Remove a loaded instance; its queued requests fail and its running streams are cut.

        Raises `KeyError` if no instance has that id.
        """
        inst = self.instances.pop(instance_id)
        inst.unloaded = True
        inst.gate.close()
        if inst.ttl is not None:
            self._with_ttl -= 1
        self.stats.unloads_total += 1
        if evicted:
            self.stats.evictions_total += 1
        return inst

    def set_parallel(self, parallel: int) -> None:
        """Apply a new parallel-slot count to every loaded instance (new loads read the settings)."""
        for inst in self.instances.values():
            inst.gate.set_limit(parallel)

    async def close(self) -> None:
        for task in list(self._jit_tasks.values()):
            task.cancel()
        for inst in self.instances.values():
            inst.gate.close()

    def _register(self, model: SimModel, *, jit: bool, context_length: int, ttl: float | None) -> Instance:
        inst_id = model.id
        n = 2
        while inst_id in self.instances:
            inst_id = f"{model.id}:{n}"
            n += 1
        inst = Instance(
            id=inst_id,
            model=model,
            context_length=context_length,
            jit=jit,
            gate=SlotGate(self.settings.parallel),
            ttl=ttl,
        )
        self.instances[inst_id] = inst
        if ttl is not None:
            self._with_ttl += 1
        return inst

    def _expire_idle(self) -> None:
        """Unload instances whose idle TTL ran out (checked lazily, on the next request)."""
        now = time.monotonic()
        for inst in list(self.instances.values()):
            if inst.ttl is not None and inst.idle() and now - inst.last_used > inst.ttl:
                self.unload(inst.id)
