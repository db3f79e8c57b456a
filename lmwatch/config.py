"""Configuration: the validated schema, YAML loading, `${VAR}` interpolation, `LMWATCH_*` overrides
and the legacy single-server `providers.lmstudio` shape.

Every problem is reported with the path of the key it concerns (`backends[1].url: ...`), all at once,
so an operator fixes a file in one pass. Unknown keys are errors: a typo is never silently ignored.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

import yaml
from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from lmwatch.flavours import AUTO, FLAVOURS
from lmwatch.redaction import Redactor, basic_credentials, strip_userinfo

DEFAULT_PORT = 9234
"""lmwatch's listen port: not LM Studio's 1234, and free in the usual exporter range."""

ENV_PREFIX = "LMWATCH_"

MAX_SECONDS = 366 * 86400.0
"""A year: longer durations are typos (and overflow the scheduler's and the event loop's timers)."""
Seconds = Annotated[float, Field(gt=0, le=MAX_SECONDS)]
MIN_POLL_INTERVAL = 0.01
PollInterval = Annotated[float, Field(ge=MIN_POLL_INTERVAL, le=MAX_SECONDS)]
"""Polling a backend more often than 100 times a second measures nothing more and only burns CPU."""


def _switch_word(value: Any) -> Any:
    """YAML 1.1 reads a bare `off`/`on` (and `no`/`yes`) as a boolean: give the word back."""
    if value is False:
        return "off"
    if value is True:
        return "on"
    return value


Switch = BeforeValidator(_switch_word)
"""For every enum with an `off` (or `on`) member: `gpu: off` works unquoted."""
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")]


def _known_kind(kind: str) -> str:
    """Checked when a config is parsed, against the flavour table as it is then."""
    if kind != AUTO and kind not in FLAVOURS:
        raise ValueError(f"must be {AUTO!r} (detect) or a flavour: {', '.join(FLAVOURS)}")
    return kind


Kind = Annotated[str, AfterValidator(_known_kind)]
"""`auto` or a name in `lmwatch.flavours.FLAVOURS`."""


class Strict(BaseModel):
    """Base for every section: unknown keys are errors, values are checked on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=True, use_attribute_docstrings=True)


class ServerConfig(Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    max_body_bytes: int = Field(32 * 1024 * 1024, gt=0)
    shutdown_grace: Seconds = 30.0
    """On SIGTERM: how long in-flight requests (and streams) may take to finish before they are cut."""
    header_timeout: Seconds = 10.0
    """A client that started a request must have sent its whole head (request line and headers) within
    this; past it lmwatch answers 408 and closes the connection."""
    body_timeout: Seconds = 60.0
    """A request body that did not come with its head must arrive in full within this (408 past it)."""
    keepalive_timeout: Seconds = 75.0
    """An idle client connection (no request under way) is closed after this."""
    lean_v1: bool = True
    """Routed `/v1` POSTs answered by lmwatch's own HTTP/1.1 protocol (lmwatch/api/lean.py), every
    other request by aiohttp; false: aiohttp serves everything (read when a connection opens)."""


def repeated(names: list[str]) -> list[str]:
    """The names listed more than once, sorted (for a validator's "listed twice" message)."""
    return sorted({n for n in names if names.count(n) > 1})


class KeepLoaded(Strict):
    """A model lmwatch keeps loaded on a backend; a plain string is just the model id."""

    model: str = Field(min_length=1)
    """The model id (LM Studio's `key`)."""
    context_length: int | None = Field(None, ge=1)
    """The context to load it with; unset = the server's default."""
    parallel: int | None = Field(None, ge=1)
    """Parallel prediction slots to ask for. LM Studio documents no such load field (API loads get 4),
    so it is sent as `parallel` only when set, and /status says when the server reports other slots."""

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value


class BackendConfig(Strict):
    name: Name
    url: AnyHttpUrl
    kind: Kind = AUTO
    api_token_env: str | None = None
    api_token_file: Path | None = None
    timeout: Seconds = 30.0
    probe_timeout: Seconds = 5.0
    poll_interval: PollInterval = 5.0
    retry_attempts: int = Field(3, ge=1, le=10)
    labels: dict[str, str] = Field(default_factory=dict)
    weight: float = Field(1.0, gt=0)
    max_concurrency: int | None = Field(None, ge=1)
    """Requests sent at once; unset = the parallel slots the server reports, else the flavour's default:
    4 for LM Studio (its default), no cap for other OpenAI-compatible servers (they batch themselves)."""
    keep_loaded: list[KeepLoaded] = Field(default_factory=list)
    """Models lmwatch loads at start and re-loads after an eviction, a crash or a manual unload
    (LM Studio 0.4+; see docs/control.md). Items: a model id, or `{model, context_length, parallel}`."""
    idle_unload_after: Seconds | None = None
    """Unload models that served nothing through lmwatch for this long (not keep_loaded ones, never
    while a request runs on them); unset = `lifecycle.idle_unload_after`."""
    gpu_memory: ByteSize | None = None
    """Memory the backend's models may use (`24GiB`), for placing models that are loaded nowhere;
    unset = read from GPU telemetry when the backend runs on this host."""
    owner: Name | None = None
    """The `lifecycle.instance` of the one lmwatch that loads and unloads models on this backend
    (several lmwatch watching one fleet); unset = every lmwatch manages it."""
    _token_file: TokenFile | None = PrivateAttr(None)

    def model_post_init(self, context: Any) -> None:
        if self.api_token_file is not None:
            self._token_file = TokenFile(self.api_token_file)

    def redact_tokens_with(self, redactor: Redactor) -> None:
        """Have `redactor` learn every token the token file holds, a rotated one from the first
        request that sends it (the daemon does this for each backend it watches)."""
        if self._token_file is not None:
            self._token_file.redactor = redactor

    @field_validator("url")
    @classmethod
    def _no_path_or_query(cls, url: AnyHttpUrl) -> AnyHttpUrl:
        if url.query or url.fragment:
            raise ValueError("must be a base URL without query or fragment")
        return url

    @field_validator("keep_loaded")
    @classmethod
    def _once_each(cls, items: list[KeepLoaded]) -> list[KeepLoaded]:
        twice = repeated([item.model for item in items])
        if twice:
            raise ValueError(f"lists {', '.join(twice)} more than once")
        return items

    @model_validator(mode="after")
    def _one_token_source(self) -> BackendConfig:
        if self.api_token_env and self.api_token_file:
            raise ValueError("set api_token_env or api_token_file, not both")
        if self.url.password and (self.api_token_env or self.api_token_file):
            raise ValueError("a password in url (sent as Basic auth) and an api_token (Bearer) cannot both be sent")
        return self

    @property
    def base_url(self) -> str:
        """The URL without a trailing slash or a trailing `/v1`, so paths can be appended."""
        url = str(self.url).rstrip("/")
        return url[: -len("/v1")] if url.endswith("/v1") else url

    @property
    def public_url(self) -> str:
        """`base_url` with any password replaced, for logs, `/status` and errors."""
        if not self.url.password:
            return self.base_url
        return self.base_url.replace(f":{self.url.password}@", ":***@", 1)

    def api_token(self) -> str | None:
        """The token from env or file, never stored in config; a file is re-read at most every few
        seconds (rotation needs no restart, and a routed request does no file I/O on the event loop)."""
        if self.api_token_env:
            return os.environ.get(self.api_token_env) or None
        if self.api_token_file is None:  # a plain field: the private one is a slow lookup (every request)
            return None
        return self._token_file.read() if self._token_file is not None else None


TOKEN_FILE_TTL_SECONDS = 5.0


@dataclass
class TokenFile:
    """A token file's content, re-read at most every `ttl` seconds; an unreadable file raises OSError.

    Owned by the backend's config object, so each loaded config (each daemon) keeps its own."""

    path: Path
    clock: Callable[[], float] = field(default=time.monotonic, compare=False)
    ttl: float = field(default_factory=lambda: TOKEN_FILE_TTL_SECONDS, compare=False)
    redactor: Redactor | None = field(default=None, compare=False)
    """Learns each token read (set by the config's owner, `BackendConfig.redact_tokens_with`)."""
    _read_at: float | None = field(default=None, compare=False)
    _token: str | None = field(default=None, compare=False)

    def read(self) -> str | None:
        now = self.clock()
        if self._read_at is not None and now - self._read_at < self.ttl:
            return self._token
        try:
            token = self.path.read_text().strip() or None
        except ValueError as exc:  # a NUL byte in the path, undecodable content: unreadable all the same
            raise OSError(f"{self.path}: {exc}") from None
        if token and self.redactor is not None:  # a rotated token is redacted from the first request sending it
            self.redactor.add([token])
        self._read_at, self._token = now, token
        return token


class CloudProviderConfig(Strict):
    name: Name
    """The provider's name; metrics and headers call it `cloud:<name>`."""
    base_url: AnyHttpUrl
    """Its OpenAI-compatible base URL, e.g. `https://api.openai.com/v1`."""
    api_key_env: str
    """The environment variable holding its API key (a provider without the variable set is skipped)."""
    models: dict[str, str] = Field(default_factory=dict, validate_default=True)
    """Task (or `default`) -> the provider's model id to use for it."""
    timeout: Seconds = 120.0
    """Seconds to wait for the provider to start answering."""

    @field_validator("models")
    @classmethod
    def _some_model(cls, models: dict[str, str]) -> dict[str, str]:
        if not models:
            raise ValueError("name the provider's model for `default` and/or per task, e.g. {default: gpt-4o-mini}")
        return models


class CloudConfig(Strict):
    allowed: bool = False
    """Cloud is the last resort: used only when no local backend can serve, and never for local-only requests."""
    providers: list[CloudProviderConfig] = Field(default_factory=list)
    """OpenAI-compatible providers, tried in order."""


class AliasTarget(Strict):
    """One place an alias may resolve to: a model id, optionally pinned to one backend."""

    model: str = Field(min_length=1)
    """The model id on the backend."""
    backend: str | None = None
    """None = any backend that has `model`."""


class EmbeddingModeConfig(Strict):
    """How `classifier.mode: embedding` reaches its embedding model (lmwatch/routing/embedclass.py)."""

    model: str | None = Field(None, min_length=1)
    """The model id to embed with (any backend that has it loaded); None = the first loaded model
    whose type is embeddings (by backend name, then model id)."""
    timeout: Seconds = 0.25
    """The most the embedding may add to a request; past it the learned model answers instead."""
    cache_entries: int = Field(4096, ge=1)
    """Answers remembered per prompt text (a bounded LRU keyed by a hash of the text)."""


class ClassifierConfig(Strict):
    """The task classifier for `auto` requests (see lmwatch/routing/classify.py for the features)."""

    mode: Literal["linear", "embedding"] = "linear"
    """`linear`: the learned model in-process; `embedding`: the prompt is embedded by a model on the
    fleet and compared with per-task exemplars, the linear model answering when that fails."""
    embedding: EmbeddingModeConfig = Field(default_factory=EmbeddingModeConfig)

    default_task: str = "research"
    """The task of a request no feature points at (small talk, short questions)."""
    keywords: dict[str, list[str]] = Field(default_factory=dict)
    """Task -> keywords (words or phrases, matched as whole words); a hit decides before the learned
    model, the task with most hits winning; a new task name adds a task type."""
    examples: dict[str, list[str]] = Field(default_factory=dict)
    """Task -> example prompts; a request similar enough to a task's examples (see
    `example_threshold`) goes to that task before the learned model decides; a new name adds a task."""
    example_threshold: float = Field(0.15, gt=0, le=1)
    """Cosine similarity to a task's examples (0..1, over the classifier's features) that decides."""
    scan_chars: int = Field(4000, ge=100)
    """How much of the latest user message (and of the system prompt) is read; bounds the cost."""


class CapabilityFamily(Strict):
    """A model family of the capability table (overrides the built-in family of the same name)."""

    match: list[str] = Field(min_length=1)
    """Family patterns matched against model ids at word boundaries (`deepseek-coder`, `llama-3-70b`)."""
    roles: list[str] = Field(default_factory=list)
    """What the family is good at: coding, general, analysis, lightweight, embeddings, vision..."""
    vision: bool = False
    """The family takes images (requests with image parts may go to it)."""
    tool_use: bool = False
    """The family is trained for tool use (preferred for requests with `tools`)."""


class Price(Strict):
    """What a cloud provider would charge, in dollars per million tokens."""

    input_per_million: float = Field(ge=0)
    """Dollars per million prompt tokens."""
    output_per_million: float = Field(ge=0)
    """Dollars per million generated tokens."""


class BreakerConfig(Strict):
    """Circuit breaker per backend and model: opens after `failures` in a row, then lets one trial
    through after `cooldown` seconds; each failed trial doubles the cooldown up to `max_cooldown`."""

    failures: int = Field(3, ge=1)
    """Failures in a row that open the breaker."""
    cooldown: Seconds = 10.0
    """Seconds before one trial request goes through an open breaker."""
    max_cooldown: Seconds = 120.0
    """The longest cooldown after repeated failed trials."""


def _default_prices() -> dict[str, Price]:
    """Rough list prices of a mid-size hosted model (2025); `default` covers tasks not listed."""
    return {
        "default": Price(input_per_million=2.5, output_per_million=10.0),
        "embeddings": Price(input_per_million=0.02, output_per_million=0.0),
    }


class RoutingConfig(Strict):
    default_model: str = "auto"
    """The model used when a request names none (`auto`, `task:<type>`, an alias or a model id)."""
    preferences: dict[str, list[str]] = Field(
        default_factory=lambda: {
            "coding": ["deepseek-coder", "code-llama-70b"],
            "research": ["llama-3-70b", "mistral-large"],
            "creative": ["llama-3-70b", "mistral-7b"],
            "analysis": ["glm-4-32b", "qwen-2.5-coder"],
        }
    )
    """Task -> model family patterns, best first, matched against loaded model ids."""
    cloud: CloudConfig = Field(default_factory=CloudConfig)
    """Cloud fallback providers and whether they may be used."""
    aliases: dict[str, list[str | AliasTarget]] = Field(default_factory=dict)
    """Logical name -> where it lives, in order: a model id (any backend) or {backend, model}."""
    allow_jit: bool = False
    """Route explicit ids and aliases to a downloaded-but-unloaded model (the backend loads it,
    which on LM Studio can evict another model mid-generation). `auto` always uses loaded models."""
    idle_timeout: Seconds = 300.0
    """Longest silence allowed from a backend (before its answer and between stream chunks);
    there is no total-duration cap, so a slow local generation is never cut."""
    queue_timeout: Seconds = 30.0
    """Longest a request waits in total for a backend slot (past `max_concurrency`) before it falls back."""
    max_queue: int = Field(100, ge=0)
    """Requests that may wait per backend; past it the backend is skipped at once."""
    retry_backoff: Seconds = 0.1
    """First wait before retrying the same backend after a transient error; doubles, capped at 2 s."""
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    task_roles: dict[str, list[str]] = Field(default_factory=dict)
    """Task -> capability roles tried after its preferences (overrides the built-in mapping)."""
    capabilities: dict[str, CapabilityFamily] = Field(default_factory=dict)
    """Family name -> family; replaces the built-in family of that name, or adds one (tried first)."""
    prices: dict[str, Price] = Field(default_factory=_default_prices)
    """Task (or `default`) -> cloud price, for lmwatch_cloud_cost_avoided_dollars_total."""
    embedding_batch_size: int = Field(64, ge=1)
    """An embeddings `input` list longer than this is split into batches spread over backends."""
    max_answer_bytes: int = Field(64 * 1024 * 1024, gt=0)
    """A non-streamed answer is held whole before it is sent on: past this size lmwatch stops reading
    it and answers 502 `answer_too_large` (streams are relayed chunk by chunk and are not capped)."""

    @model_validator(mode="after")
    def _default_task_known(self) -> RoutingConfig:
        if self.classifier.default_task not in self.task_names():
            raise ValueError(
                f"classifier.default_task {self.classifier.default_task!r} is not a task "
                f"(known: {', '.join(sorted(self.task_names()))})"
            )
        return self

    def task_names(self) -> frozenset[str]:
        """Built-in tasks plus every task the config mentions."""
        return frozenset(
            (
                "coding",
                "research",
                "creative",
                "analysis",
                *self.preferences,
                *self.classifier.keywords,
                *self.classifier.examples,
                *self.task_roles,
            )
        )


class SamplingConfig(Strict):
    host_interval: Seconds = 5.0
    gpu_interval: Seconds = 5.0
    gpu: Annotated[Literal["auto", "off", "simulated"], Switch] = "auto"
    """`auto`: NVIDIA GPUs through NVML when a driver is present; `simulated`: two fake GPUs (demo)."""
    process_interval: Seconds = 5.0
    """How often the processes serving local backends are sampled."""
    process_rescan_interval: Seconds = 30.0
    """At most this often the socket table is scanned to find (or re-check) who listens on a port."""
    gpu_retry_interval: Seconds = 60.0
    """After NVML failed to start (no driver), try again at most this often."""


class LoggingConfig(Strict):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"
    log_prompts: bool = False


MIN_SECRET_CHARS = 16
"""Shortest admin token or client key accepted (`openssl rand -hex 24` makes a good one)."""

_INLINE_SECRET = (
    "an inline secret is not accepted: a config file gets copied, committed and shown around; "
    "name the file or environment variable that holds it instead ({alternatives})"
)


def _reject_inline(value: Any, alternatives: str) -> None:
    if value is not None:
        raise ValueError(_INLINE_SECRET.format(alternatives=alternatives))


class AdminConfig(Strict):
    """The control API (`/admin`, `lmwatch status|drain|reload...`). Its credential is separate from
    client keys. The token comes from `LMWATCH_ADMIN_TOKEN` (which wins) or `token_file`; with neither,
    `/admin` answers loopback clients only, and lmwatch refuses to start on a non-loopback `server.host`."""

    token_file: Path | None = None
    """A file holding the admin bearer token (one line, at least 16 characters; keep it mode 0600)."""
    token: str | None = Field(None, exclude=True, repr=False)
    """Never set: an inline token is rejected with an explanation."""

    @field_validator("token", mode="before")
    @classmethod
    def _no_inline_token(cls, value: Any) -> None:
        _reject_inline(value, "admin.token_file or LMWATCH_ADMIN_TOKEN")


class ClientKeyConfig(Strict):
    """One client API key for `/v1` (sent as `Authorization: Bearer <key>`, as the OpenAI SDKs do).
    The key itself comes from `key_env` or `key_file`, never from this file."""

    name: Name
    """Who holds the key: the label of its metrics and audit lines (the key itself is never shown)."""
    key_env: str | None = None
    """Environment variable holding the key."""
    key_file: Path | None = None
    """File holding the key (one line; keep it mode 0600)."""
    models: list[str] = Field(default_factory=list)
    """Models the key may use: ids or glob patterns (`qwen*`, `*/gemma-*`), case-insensitive; empty = any."""
    tasks: list[str] = Field(default_factory=list)
    """Tasks the key may use (coding, research, ...), for `auto` and `task:` requests; empty = any."""
    local_only: bool = False
    """Never send this key's requests to a cloud provider, whatever the global cloud setting."""
    requests_per_minute: int | None = Field(None, ge=1)
    """Requests the key may start per minute (a bucket refilled continuously); unset = no limit.
    With `cache.backend: redis` the bucket lives in Redis, so the limit holds across replicas."""
    cache: bool = True
    """Let this key's requests use the response and embedding cache (false: always `bypass`)."""
    key: str | None = Field(None, exclude=True, repr=False)
    """Never set here: an inline key is rejected (use `key_env`, `key_file` or `clients.keys_file`)."""

    @field_validator("key", mode="before")
    @classmethod
    def _no_inline_key(cls, value: Any) -> None:
        _reject_inline(value, "key_env, key_file, or clients.keys_file for a file of keys")

    @model_validator(mode="after")
    def _one_key_source(self) -> ClientKeyConfig:
        if bool(self.key_env) == bool(self.key_file):
            raise ValueError("set exactly one of key_env or key_file")
        return self


class ClientsConfig(Strict):
    """Client access to `/v1`. With no key configured (the default) `/v1` is open to whoever can reach
    it; with at least one, every `/v1` request needs a valid key (else HTTP 401)."""

    keys: list[ClientKeyConfig] = Field(default_factory=list)
    keys_file: Path | None = None
    """A YAML file listing more keys, each like an entry of `keys` but with the key inline
    (`- {name: ci, key: "...", models: [...]}`): a secrets file, so keep it mode 0600."""

    @field_validator("keys")
    @classmethod
    def _unique_names(cls, keys: list[ClientKeyConfig]) -> list[ClientKeyConfig]:
        twice = repeated([k.name for k in keys])
        if twice:
            raise ValueError(f"client key name(s) used twice: {', '.join(twice)}")
        return keys


class AuditConfig(Strict):
    """The audit log: JSON lines, one per control action (always) and per `/v1` request (`requests`).
    Reopened on SIGHUP, so logrotate can move it (no copytruncate needed)."""

    enabled: bool = True
    """Write the audit log at all."""
    path: Path | None = None
    """Where the lines go; default `<state_dir>/audit.jsonl`."""
    requests: bool = False
    """Also write one line per `/v1` request: time, key name, model, backend, tokens, status."""
    prompts: bool = False
    """Include the prompt content in request lines (needs `requests: true`); off by default for privacy."""

    @model_validator(mode="after")
    def _prompts_need_requests(self) -> AuditConfig:
        if self.prompts and not self.requests:
            raise ValueError("prompts: true needs requests: true (prompts are part of request lines)")
        return self


class SemanticCacheConfig(Strict):
    """Serve a stored answer to a prompt that means the same (opt-in): a fleet embedding model embeds
    the prompt (the system prompt and the last user turn), and the closest stored prompt of the same
    resolved model and parameters at or above `threshold` cosine similarity is served."""

    enabled: bool = False
    """Look up prompts by meaning too (needs `cache.enabled` and an embedding model in the fleet)."""
    model: str | None = Field(None, min_length=1)
    """The embedding model id (or alias) that embeds prompts; required with `enabled`, since a
    threshold means something only for the model it was measured with (bench/semantic.py)."""
    threshold: float = Field(0.95, gt=0, le=1)
    """Cosine similarity from which a stored prompt counts as the same question. Measure your model
    with bench/semantic.py; bench/SEMANTIC.md has what 0.95 gives with the models measured so far."""
    max_entries: int = Field(256, ge=1, le=10_000)
    """Prompts kept per model and parameters for the similarity search (the oldest go first)."""
    max_chars: int = Field(2000, ge=16)
    """Longer prompts are not looked up by meaning (a cut prompt could match one that differs only
    past the cut); it also bounds the embedding's cost."""
    timeout: Seconds = 0.5
    """Longest the prompt's embedding may take; past it the request goes on without the semantic cache."""

    @model_validator(mode="after")
    def _needs_model(self) -> SemanticCacheConfig:
        if self.enabled and self.model is None:
            raise ValueError("enabled: true needs model (the embedding model the threshold was measured with)")
        return self


class CacheConfig(Strict):
    """The response and embedding cache. Off by default; `enabled: true` alone gives the embedded
    SQLite store in the state directory. A store that fails (corrupt or locked file, full disk, Redis
    down) is bypassed: requests are served without the cache, never failed by it."""

    enabled: bool = False
    backend: Literal["sqlite", "redis"] = "sqlite"
    """`sqlite`: one file in this host's state directory; `redis`: shared by every lmwatch replica
    using the same `url` (and the client-key rate limits are shared with it)."""
    url: str | None = None
    """sqlite: the database file (default `<state_dir>/cache.sqlite`); redis: `redis://host:6379/0`
    (`rediss://` for TLS, `unix:///path`); a password in it is redacted from logs."""
    ttl: Seconds = 3600.0
    """Seconds a stored answer is served for."""
    max_bytes: int = Field(256 * 1024 * 1024, ge=4096)
    """Size bound of the stored answers; past it the least recently used are evicted."""
    all_requests: bool = False
    """Also cache requests that are not deterministic (no `temperature: 0`, no `seed`). Without it a
    client opts in per request with `X-LMWatch-Cache: on`."""
    embeddings: bool = True
    """Cache embeddings per input text (model + text): a batch sends only its misses upstream."""
    timeout: Seconds = 0.25
    """Longest one store operation may take before the request goes on without the cache."""
    retry_interval: Seconds = 10.0
    """After a store failure, requests bypass the cache for this long before it is tried again."""
    semantic: SemanticCacheConfig = Field(default_factory=SemanticCacheConfig)

    @model_validator(mode="after")
    def _consistent(self) -> CacheConfig:
        if self.semantic.enabled and not self.enabled:
            raise ValueError("semantic.enabled: true needs enabled: true (the semantic cache keeps its answers there)")
        if self.backend == "redis":
            if not self.url:
                raise ValueError("backend: redis needs url (e.g. redis://127.0.0.1:6379/0)")
            if not self.url.startswith(("redis://", "rediss://", "unix://")):
                raise ValueError("url must start with redis://, rediss:// or unix:// for backend: redis")
        return self


class UsageConfig(Strict):
    """Usage analytics: one row per `/v1` request (time, key name, backend, model, task, route,
    tokens, latency, time to first token, cache result, cost avoided) in an SQLite file, written off
    the request path. Never the prompt."""

    enabled: bool = True
    """Record every `/v1` request."""
    path: Path | None = None
    """The database file; default `<state_dir>/usage.sqlite`."""
    retention_days: float = Field(90.0, gt=0)
    """Rows older than this are deleted (checked at start and hourly)."""


class LifecycleConfig(Strict):
    """Model lifecycle across the fleet: keep_loaded, placement, idle unload, warm-up, swap."""

    instance: Name | None = None
    """This lmwatch's name, for `backends[].owner` when several lmwatch watch one fleet."""
    interval: Seconds = 10.0
    """How often keep_loaded and idle unload are checked (also right after a model disappears)."""
    idle_unload_after: Seconds | None = None
    """Fleet default of `backends[].idle_unload_after`; unset = never unload idle models."""
    load_timeout: Seconds = 300.0
    """How long one model load may take before it counts as failed (`timeout`)."""
    retry_backoff: Seconds = 5.0
    """First wait before a failed keep_loaded load is retried; doubled per failure."""
    max_backoff: Seconds = 300.0
    """The longest wait between retries of a failing keep_loaded load."""
    warm_up: bool = True
    """After each load, send one tiny request so the first real one does not pay the cold start."""
    warm_up_prompt: str = Field("Hi", min_length=1)
    """The warm-up request's prompt (sent with max_tokens 1)."""
    warm_up_timeout: Seconds = 60.0
    """How long the warm-up request may take (a failed warm-up is logged, the load stands)."""
    max_waiting: int = Field(100, ge=0)
    """Requests that may wait per backend for a model being placed there (beyond: 503)."""
    drain_timeout: Seconds = 300.0
    """Swap: how long the old model's running requests may take before it is unloaded anyway."""


class Config(Strict):
    server: ServerConfig = Field(default_factory=ServerConfig)
    """Where lmwatch listens, and request limits."""
    backends: list[BackendConfig] = Field(default_factory=list)
    """The model servers to watch and route to."""
    backend_files: list[str] = Field(default_factory=list)
    """Glob patterns of YAML files each holding a list of backend entries (the schema of `backends`),
    Prometheus file_sd style. Files are re-read when they change; a broken file is reported and its
    last valid contents stay in force; a name used by a static backend makes that file an error."""
    backend_files_interval: Seconds = 5.0
    """How often the `backend_files` patterns are re-expanded and the files checked for changes."""
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    """How `/v1` requests are routed: task preferences, aliases, balancing, breakers, cloud fallback."""
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    """Host, model-server process and GPU sampling."""
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    """Log level and format."""
    admin: AdminConfig = Field(default_factory=AdminConfig)
    clients: ClientsConfig = Field(default_factory=ClientsConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    """Response, embedding and semantic cache (lmwatch/cache)."""
    usage: UsageConfig = Field(default_factory=UsageConfig)
    """Persistent usage analytics (lmwatch/usage), reported by `lmwatch usage` and `/admin/usage`."""
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    """Keeping models loaded, placing them on demand, idle unload, warm-up and swap."""
    state_dir: Path | None = None
    """Where lmwatch keeps its files (the audit log); default `$STATE_DIRECTORY` (systemd's
    StateDirectory=), else `./state`. Created when missing."""

    def resolved_state_dir(self, env: Mapping[str, str] | None = None) -> Path:
        env = os.environ if env is None else env
        if self.state_dir is not None:
            return self.state_dir
        systemd = env.get("STATE_DIRECTORY", "").split(":")[0]
        return Path(systemd) if systemd else Path("state")

    def audit_path(self, env: Mapping[str, str] | None = None) -> Path:
        return self.audit.path or self.resolved_state_dir(env) / "audit.jsonl"

    def cache_path(self, env: Mapping[str, str] | None = None) -> Path:
        return Path(self.cache.url) if self.cache.url else self.resolved_state_dir(env) / "cache.sqlite"

    def usage_path(self, env: Mapping[str, str] | None = None) -> Path:
        return self.usage.path or self.resolved_state_dir(env) / "usage.sqlite"

    @field_validator("backends")
    @classmethod
    def _unique_names(cls, backends: list[BackendConfig]) -> list[BackendConfig]:
        twice = repeated([b.name for b in backends])
        if twice:
            raise ValueError(f"backend name {twice[0]!r} is used twice")
        return backends


# --- the legacy single-server shape --------------------------------------------------------------


class LegacyModels(Strict):
    default: str = "auto"
    preferences: dict[str, list[str]] | None = None


class LegacyLMStudio(Strict):
    enabled: bool = True
    baseUrl: AnyHttpUrl
    timeout: int = Field(30_000, gt=0, description="milliseconds")
    retryAttempts: int = Field(3, ge=1, le=10)
    models: LegacyModels = Field(default_factory=LegacyModels)


class LegacyProviders(Strict):
    lmstudio: LegacyLMStudio


def _from_legacy(raw: dict[str, Any]) -> dict[str, Any]:
    """Map `providers: {lmstudio: {...}}` onto `backends` + `routing`; errors keep the legacy paths."""
    legacy = LegacyProviders.model_validate(raw.pop("providers")).lmstudio
    if legacy.enabled:
        raw.setdefault("backends", []).insert(
            0,
            {
                "name": "lmstudio",
                "url": str(legacy.baseUrl),
                "timeout": legacy.timeout / 1000,
                "retry_attempts": legacy.retryAttempts,
            },
        )
    routing = raw.setdefault("routing", {})
    if isinstance(routing, dict):
        routing.setdefault("default_model", legacy.models.default)
        if legacy.models.preferences is not None:
            routing.setdefault("preferences", legacy.models.preferences)
    return raw


# --- loading -------------------------------------------------------------------------------------


class ConfigError(Exception):
    """A config that cannot be used; `problems` holds one `path: message` line each."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = [strip_userinfo(p) for p in problems]  # a YAML snippet or a bad URL may carry a password
        super().__init__("\n".join(f"{source}: {p}" for p in self.problems))


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None
    warnings: tuple[str, ...] = ()


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


SECRET_KEYS = frozenset({"token", "key", "api_key", "password", "secret"})
"""Keys whose values error messages never repeat."""


def format_path(loc: tuple[int | str, ...]) -> str:
    """(`backends`, 1, `url`) -> `backends[1].url`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _interpolate(node: Any, loc: tuple[int | str, ...], env: Mapping[str, str], problems: list[str]) -> Any:
    if isinstance(node, dict):
        return {k: _interpolate(v, (*loc, k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, (*loc, i), env, problems) for i, v in enumerate(node)]
    if not isinstance(node, str) or "${" not in node:
        return node

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in env:
            return env[name]
        if default is not None:
            return default
        problems.append(f"{format_path(loc)}: environment variable {name} is not set")
        return ""

    return _VAR.sub(substitute, node)


def _env_overrides(raw: dict[str, Any], env: Mapping[str, str], problems: list[str]) -> None:
    """`LMWATCH_SERVER__PORT=9000` sets `server.port`; `LMWATCH_BACKENDS__0__TIMEOUT` a list item.

    Only names with a `__` are overrides, so `LMWATCH_URL` and `LMWATCH_ADMIN_TOKEN` stay the CLI's.
    A missing section is created; a missing list item is an error.
    """
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        keys: list[int | str] = [int(p) if p.isdigit() else p for p in name[len(ENV_PREFIX) :].lower().split("__")]
        node: Any = raw
        for depth, key in enumerate(keys[:-1]):
            child = _child(node, key)
            if child is None and isinstance(node, dict) and isinstance(keys[depth + 1], str):
                child = node[key] = {}
            if not isinstance(child, dict | list):
                problems.append(f"{name}: {format_path(tuple(keys[: depth + 1]))} does not exist")
                break
            node = child
        else:
            parsed = yaml.safe_load(value) if value else value
            if isinstance(parsed, dict | list):
                problems.append(f"{name}: overrides take scalars only")
            elif isinstance(node, dict) or _child(node, keys[-1]) is not None:
                node[keys[-1]] = parsed
            else:
                problems.append(f"{name}: {format_path(tuple(keys))} does not exist")


def _child(node: Any, key: int | str) -> Any:
    if isinstance(node, dict):
        return node.get(key)
    if isinstance(node, list) and isinstance(key, int) and key < len(node):
        return node[key]
    return None


def _describe(error: Mapping[str, Any]) -> str:
    kind, msg = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see config.yaml for every key)"
    if kind == "missing":
        return "required key is missing"
    if isinstance(msg, str) and msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    value = error.get("input")
    if error["loc"] and error["loc"][-1] in SECRET_KEYS:
        return str(msg)  # never echo what might be a secret
    if kind not in ("model_type", "dict_type", "list_type") and isinstance(value, str | int | float | bool):
        return f"{msg} (got {value!r})"
    return str(msg)


def validation_problems(error: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    """Turn a pydantic error into `path: message` lines (also used for runtime-added backends)."""
    return [strip_userinfo(f"{format_path((*prefix, *e['loc']))}: {_describe(e)}") for e in error.errors()]


def parse_config(text: str, source: str = "<config>", env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Parse YAML text into a Config, or raise ConfigError listing every problem with its path."""
    env = os.environ if env is None else env
    try:
        raw = yaml.safe_load(text) if text.strip() else {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(source, [f"{where}invalid YAML: {problem}"]) from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(source, [f"(top level): must be a mapping of sections, got {type(raw).__name__}"])
    problems: list[str] = []
    raw = _interpolate(raw, (), env, problems)
    _env_overrides(raw, env, problems)
    warnings: list[str] = []
    if "providers" in raw:
        try:
            raw = _from_legacy(raw)
        except ValidationError as exc:
            problems += validation_problems(exc, ("providers",))
        warnings.append("providers.lmstudio is the legacy shape; it was mapped onto backends and routing")
    if problems:
        raise ConfigError(source, problems)
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc)) from None
    for i, backend in enumerate(config.backends):
        if backend.keep_loaded and backend.kind in ("lmstudio-v0", "openai"):
            warnings.append(
                f"backends[{i}].keep_loaded: kind {backend.kind} cannot load models over HTTP (LM Studio 0.4+ "
                "can), so these models are not kept loaded"
            )
    return LoadedConfig(config=config, path=None, warnings=tuple(warnings))


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Read and validate a config file; the file's problems name the file and each key's path."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the file: {exc.strerror or exc}"]) from None
    loaded = parse_config(text, str(path), env)
    return LoadedConfig(config=loaded.config, path=path, warnings=loaded.warnings)


def backend_secrets(backends: Iterable[BackendConfig]) -> Iterator[str]:
    """The URL passwords (as written, decoded, and the `Basic` credentials made of them) and API
    tokens of `backends` (a token file that cannot be read has none)."""
    for backend in backends:
        if backend.url.password:
            password = unquote(backend.url.password)
            yield backend.url.password
            yield password
            yield basic_credentials(unquote(backend.url.username or ""), password)
        try:
            token = backend.api_token()
        except OSError:
            continue
        if token:
            yield token


def iter_backend_tokens(config: Config) -> Iterator[str]:
    """Every secret the config can reach, so logs and errors can redact them."""
    yield from backend_secrets(config.backends)
    for provider in config.routing.cloud.providers:
        key = os.environ.get(provider.api_key_env)
        if key:
            yield key
    if config.cache.backend == "redis" and config.cache.url:
        password = urlsplit(config.cache.url).password
        if password:
            yield password
