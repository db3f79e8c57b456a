"""What a simulated server looks like: its models and its behaviour knobs.

`SimSettings` is read on every request (not copied at start), so changing a knob on a running
simulator, from Python or through `POST /__sim/config`, takes effect on the next request.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Literal, get_args

from lmwatch.simulator.flavours import SIM_FLAVOURS, SimFlavour, sim_flavour

ModelType = Literal["llm", "vlm", "embeddings"]

MODEL_TYPES: tuple[str, ...] = get_args(ModelType)


@dataclass
class SimModel:
    """One downloaded model. `loaded=True` means one (manual, non-JIT) instance exists at start."""

    id: str
    type: ModelType = "llm"
    publisher: str = ""
    """Empty = derived: the part before `/` in `id`, else `lmstudio-community` (LM Studio's usual)."""
    arch: str = "llama"
    quantization: str = "Q4_K_M"
    max_context_length: int = 32768
    context_length: int = 4096
    """Context of the instance loaded at start (LM Studio's `loaded_context_length`)."""
    loaded: bool = True
    tool_use: bool = False
    size_bytes: int = 4_683_073_184
    format: str = "gguf"
    load_seconds: float | None = None
    """Seconds a load of this model takes; None = the server's `load_seconds`."""

    def __post_init__(self) -> None:
        if not self.id or self.id != self.id.strip():
            raise ValueError(f"model id {self.id!r} must be non-empty without surrounding spaces")
        if self.type not in MODEL_TYPES:
            raise ValueError(f"model {self.id}: type must be one of {', '.join(MODEL_TYPES)}")
        if not self.publisher:
            self.publisher = self.id.split("/", 1)[0] if "/" in self.id else "lmstudio-community"
        if self.max_context_length < 1 or self.context_length < 1:
            raise ValueError(f"model {self.id}: context lengths must be >= 1")
        if self.context_length > self.max_context_length:
            raise ValueError(f"model {self.id}: context_length exceeds max_context_length")
        if self.load_seconds is not None and not self.load_seconds >= 0:
            raise ValueError(f"model {self.id}: load_seconds must be >= 0")

    @property
    def is_embedding(self) -> bool:
        return self.type == "embeddings"


def _default_models() -> list[SimModel]:
    return [
        SimModel(
            id="qwen2.5-coder-7b-instruct",
            type="llm",
            publisher="lmstudio-community",
            arch="qwen2",
            quantization="Q4_K_M",
            max_context_length=32768,
            context_length=8192,
            tool_use=True,
            size_bytes=4_683_073_952,
        ),
        SimModel(
            id="meta-llama-3.1-8b-instruct",
            type="llm",
            publisher="lmstudio-community",
            arch="llama",
            quantization="Q4_K_M",
            max_context_length=131072,
            context_length=8192,
            tool_use=True,
            size_bytes=4_920_734_272,
        ),
        SimModel(
            id="google/gemma-3-4b",
            type="vlm",
            publisher="google",
            arch="gemma3",
            quantization="Q4_K_M",
            max_context_length=131072,
            context_length=12918,
            size_bytes=3_341_081_344,
        ),
        SimModel(
            id="text-embedding-nomic-embed-text-v1.5",
            type="embeddings",
            publisher="nomic-ai",
            arch="nomic-bert",
            quantization="Q4_K_M",
            max_context_length=2048,
            context_length=2048,
            size_bytes=84_106_624,
        ),
        SimModel(
            id="mistral-7b-instruct-v0.3",
            type="llm",
            publisher="lmstudio-community",
            arch="llama",
            quantization="Q4_K_M",
            max_context_length=32768,
            context_length=4096,
            loaded=False,
            size_bytes=4_372_811_936,
        ),
    ]


_RATES = ("error_rate", "stall_rate", "drop_rate")
_NON_NEGATIVE = ("ttft", "tokens_per_second", "prompt_tokens_per_second", "load_seconds", "stall_seconds")
_POSITIVE_INTS = ("max_tokens_default", "parallel")
_COUNTS = ("memory_bytes", "answer_tokens")
_BOOLS = ("jit", "auto_evict", "load_error_detail")
LIVE_KNOBS: frozenset[str] = frozenset(
    (*_RATES, *_NON_NEGATIVE, *_POSITIVE_INTS, *_COUNTS, *_BOOLS, "api_token", "seed", "version")
)
"""Settings `POST /__sim/config` may change. `flavour` and `models` shape the routes and the
catalogue at start and are fixed for the life of a simulator."""


@dataclass
class SimSettings:
    """Behaviour knobs of one simulated server. Defaults: LM Studio 0.4, no delays, no faults."""

    flavour: str = "0.4"
    """A name in `SIM_FLAVOURS`: the server to imitate."""
    models: list[SimModel] = field(default_factory=_default_models)
    ttft: float = 0.0
    """Seconds before the first token (or before a non-streamed answer)."""
    tokens_per_second: float = 0.0
    """0 = as fast as possible: no sleeping at all."""
    prompt_tokens_per_second: float = 0.0
    """Prompt processing speed: the first token waits `ttft` + prompt tokens / this. 0 = instant."""
    max_tokens_default: int = 16
    answer_tokens: int = 0
    """0: an explicit `max_tokens` is always used up (finish `length`); N: the model stops on its own
    after N tokens (finish `stop`) unless `max_tokens` cuts it first, as agents such as Claude Code
    expect (they ask for 32,000 and treat running into it as a failure)."""
    error_rate: float = 0.0
    """Fraction of inference requests answered with an LM Studio-style 500."""
    stall_rate: float = 0.0
    """Fraction of streams that go silent after the first chunk for `stall_seconds`."""
    stall_seconds: float = 3600.0
    drop_rate: float = 0.0
    """Fraction of streams whose connection is cut after the first chunks, without `[DONE]`."""
    api_token: str | None = None
    jit: bool = True
    auto_evict: bool = True
    parallel: int = 4
    """Parallel predictions per loaded instance (LM Studio's "Max Concurrent Predictions"). Read when an
    instance loads; to change loaded instances too, use `SimState.configure({"parallel": n})`."""
    load_seconds: float = 0.0
    memory_bytes: int = 0
    """GPU memory the loaded instances may hold (weights + KV cache, see simulator/memory.py); a load
    that does not fit fails as LM Studio's guardrail fails it. 0 = unlimited."""
    load_error_detail: bool = True
    """False: a failed load says only `Failed to load model "x".` (LM Studio hiding a CUDA OOM)."""
    seed: int = 0
    version: str = ""
    """Empty = the flavour's default (0.4.12 / 0.3.31)."""
    dialect: SimFlavour = field(init=False, repr=False, compare=False)
    """The `flavour`'s routes, error wording and quirks."""

    def __post_init__(self) -> None:
        if self.flavour not in SIM_FLAVOURS:
            raise ValueError(f"flavour must be one of {', '.join(SIM_FLAVOURS)}")
        self.dialect = sim_flavour(self.flavour)
        if not self.version:
            self.version = self.dialect.default_version
        ids = [m.id for m in self.models]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"duplicate model ids: {', '.join(dupes)}")
        problems = _check({f.name: getattr(self, f.name) for f in fields(self) if f.name in LIVE_KNOBS})
        if problems:
            raise ValueError("; ".join(problems))

    def first_token_delay(self, prompt_tokens: int) -> float:
        """Seconds before the first token of an answer to a prompt of `prompt_tokens` tokens."""
        reading = prompt_tokens / self.prompt_tokens_per_second if self.prompt_tokens_per_second > 0 else 0.0
        return self.ttft + reading

    @staticmethod
    def default_models() -> list[SimModel]:
        """The default catalogue: four loaded models (coder, general, vision, embeddings), one not."""
        return _default_models()

    def apply(self, changes: Mapping[str, object]) -> None:
        """Validate all `changes` first, then apply them together (all or nothing)."""
        unknown = sorted(set(changes) - LIVE_KNOBS)
        problems = [f"{key}: not a live setting" for key in unknown]
        problems += _check(changes)
        if problems:
            raise ValueError("; ".join(problems))
        for key, value in changes.items():
            if key in _NON_NEGATIVE or key in _RATES:
                value = _number(value)
            setattr(self, key, value)

    def public_view(self) -> dict[str, object]:
        """The knobs as JSON, with the API token reduced to whether one is set."""
        view: dict[str, object] = {name: getattr(self, name) for name in sorted(LIVE_KNOBS)}
        view["api_token"] = "<set>" if self.api_token else None
        view["flavour"] = self.flavour
        return view


def _number(value: object) -> float | None:
    """`value` as a finite float, or None when it is not a JSON number (booleans are not)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _check(values: Mapping[str, object]) -> list[str]:
    problems: list[str] = []
    for key, value in values.items():
        number = _number(value)
        if key in _RATES and (number is None or not 0 <= number <= 1):
            problems.append(f"{key}: must be a number from 0 to 1")
        elif key in _NON_NEGATIVE and (number is None or number < 0):
            problems.append(f"{key}: must be a number >= 0")
        elif key in _POSITIVE_INTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            problems.append(f"{key}: must be an integer >= 1")
        elif key in _BOOLS and not isinstance(value, bool):
            problems.append(f"{key}: must be true or false")
        elif key in _COUNTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
            problems.append(f"{key}: must be an integer >= 0 (0 = no limit)")
        elif key == "seed" and not (isinstance(value, int) and not isinstance(value, bool)):
            problems.append("seed: must be an integer")
        elif key == "version" and not (isinstance(value, str) and value):
            problems.append("version: must be a non-empty string")
        elif key == "api_token" and not (value is None or (isinstance(value, str) and value)):
            problems.append("api_token: must be a non-empty string or null")
    return problems
