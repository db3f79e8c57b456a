"""The shapes of lmwatch's own endpoints (`/status`, `/healthz`, `/readyz`, `/admin/...`): the
pydantic models that validate request bodies, and the TypedDicts the handlers' answers are typed
with (mypy checks every answer against them). lmwatch/api/openapi.py generates the OpenAPI document
from these same classes, so the document cannot drift from what is validated and answered.

Answers allow more fields than they list (sections such as `control` or `cache` are added by other
concerns); requests allow none (a typo is an error, as in the config).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypedDict

# --- requests ------------------------------------------------------------------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LoadModel(_Body):
    """`POST /admin/backends/{name}/models/load`."""

    model: str = Field(min_length=1, pattern=r"\S", description="the model id (or key) to load")
    context_length: int | None = Field(default=None, ge=1, description="the context length to load it with")


class UnloadModel(_Body):
    """`POST /admin/backends/{name}/models/unload`."""

    model: str = Field(min_length=1, pattern=r"\S", description="the model id, or one loaded instance id")


class Swap(_Body):
    """`POST /admin/backends/{name}/swap`: unload `old`, load `new` in its place."""

    old: str = Field(min_length=1, pattern=r"\S", description="the loaded model to unload")
    new: str = Field(min_length=1, pattern=r"\S", description="the model to load instead")
    context_length: int | None = Field(default=None, ge=1)


class Poll(_Body):
    """`POST /admin/poll`: one backend, or all when `backend` is left out."""

    backend: str | None = Field(default=None, description="the backend to probe now; all when absent")


class ExplainRequest(BaseModel):
    """`POST /admin/route/explain`: a `/v1` request body, as the router would receive it."""

    model_config = ConfigDict(extra="allow")
    model: str | None = Field(default=None, description="`auto` (the default), `task:<type>`, an alias or an id")
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    input: Any = None


# --- answers -------------------------------------------------------------------------------------


class ErrorDetail(TypedDict):
    message: str
    type: str
    param: str | None
    code: str | None


class Error(TypedDict):
    """Every error answer: OpenAI's shape, plus `problems` when a config or body is refused."""

    error: ErrorDetail
    request_id: NotRequired[str]
    problems: NotRequired[list[str]]


class Alive(TypedDict):
    status: Literal["ok"]


class Readiness(TypedDict):
    status: Literal["ready", "starting"]
    reason: NotRequired[str]


class Model(TypedDict):
    id: str
    stale: bool
    model_type: str
    loaded: bool
    instances: list[str]
    publisher: str | None
    arch: str | None
    quantization: str | None
    max_context_length: int | None
    loaded_context_length: int | None
    tool_use: bool
    vision: bool
    parallel: int | None
    instance_context_lengths: dict[str, int | None]


class Backend(TypedDict):
    name: str
    url: str
    health: Literal["up", "degraded", "down", "unknown"]
    reason: str
    flavour: str | None
    version: str | None
    draining: bool
    labels: dict[str, str]
    weight: float
    last_success: float | None
    last_probe: float | None
    last_error: str | None
    probe_duration_seconds: float | None
    consecutive_failures: int
    max_concurrency: int | None
    max_concurrency_from: str
    models: list[Model]


class Breaker(TypedDict):
    model: str
    state: Literal["closed", "open", "half_open"]
    failures: int
    retry_at: float | None
    reason: str


class AdminBackend(Backend):
    origin: str
    inflight: int
    queued: int
    breakers: list[Breaker]


class Status(TypedDict):
    """`GET /status`. More sections (`control`, `lifecycle`, `cache`...) follow these."""

    version: str
    ready: bool
    generation: int
    backends: list[Backend]
    host: dict[str, Any]
    requests: dict[str, Any]


class Backends(TypedDict):
    """`GET /admin/backends`. The control sections (`admin`, `clients`, `audit`...) follow."""

    backends: list[AdminBackend]


class Added(TypedDict):
    backend: Backend
    origin: Literal["runtime"]


class Removed(TypedDict):
    removed: str
    origin: str


class Drained(TypedDict):
    backend: str
    draining: bool
    inflight: int


class Loaded(TypedDict):
    backend: str
    model: str
    loaded: bool
    result: Any


class Unloaded(TypedDict):
    backend: str
    model: str
    unloaded: list[str]


class Polled(TypedDict):
    polled: list[str]
    backends: list[Backend]


class Reloaded(TypedDict):
    reloaded: Literal[True]
    backends: list[str]


class Preferences(TypedDict):
    preferences: dict[str, list[str]]


class Candidate(TypedDict):
    backend: str
    model: str
    route: str
    reason: str
    breaker: str
    inflight: int
    cap: int | None
    usable: bool
    fit: dict[str, Any]
    speed: dict[str, Any]
    profile: dict[str, Any] | None
    """The model's measured profile in short (`lmwatch compare`'s numbers); None when not measured."""
    decision: Literal["chosen", "kept", "skipped"]
    """`chosen`: the first usable one; `kept`: usable, next in line; `skipped`: `reason` says why."""


class Excluded(TypedDict):
    backend: str
    reason: str


class Explanation(TypedDict):
    model: str
    endpoint: str
    task: str
    task_source: Literal["header", "model", "classifier"]
    scores: dict[str, float]
    task_reasons: list[str]
    candidates: list[Candidate]
    excluded: list[Excluded]
    passed_over: list[dict[str, Any]]
    chosen: Candidate | None
    unavailable: str | None
