"""Candidate selection: turn a request into an ordered plan of tiers, then cloud providers.

A tier is a set of interchangeable targets (the same model on several backends, or one family) and
carries the reason it was chosen (explicit, preference, capability). The proxy walks the plan in
order: within a tier the balancer picks, a failed target fails over to the rest of its tier, then
to the next tier, then to the cloud. Only healthy, non-draining backends give candidates.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum

from lmwatch import backends
from lmwatch.backends import Flavour
from lmwatch.config import AliasTarget, BackendConfig, CloudProviderConfig, RoutingConfig
from lmwatch.errors import InvalidRequest, NotFound
from lmwatch.registry import BackendInfo, Health, ModelInfo, Snapshot
from lmwatch.routing.capabilities import EMBEDDINGS, VISION, Capabilities
from lmwatch.routing.ids import family_matches, parse, same_model
from lmwatch.routing.request import Endpoint, ParsedRequest

AUTO = "auto"
TASK_PREFIX = "task:"
DEFAULT_PARALLEL = 4
"""Slots assumed for a backend whose flavour is not known yet (LM Studio's default)."""


class Route(StrEnum):
    EXPLICIT = "explicit"
    PREFERENCE = "preference"
    CAPABILITY = "capability"
    FAILOVER = "failover"
    CLOUD = "cloud"


@dataclass(frozen=True)
class Target:
    """One place a request can go: a backend (or cloud provider) and the model id to send it.

    Two targets are the same when backend and model are (that is what the breaker and retries key on).
    Plans are memoised, so a target serves many requests: what it derives is cached on it.
    """

    backend: str
    """The backend name, or `cloud:<provider>`."""
    model: str
    url: str = field(compare=False)
    """The API prefix the endpoint path is appended to (`http://host:1234/v1`)."""
    cap: int | None = field(compare=False)
    """Concurrent requests allowed; None for cloud providers (not gated)."""
    weight: float = field(default=1.0, compare=False)
    info: ModelInfo | None = field(default=None, compare=False)
    config: BackendConfig | None = field(default=None, compare=False)
    provider: CloudProviderConfig | None = field(default=None, compare=False)
    flavour: Flavour | None = field(default=None, compare=False)
    """The backend's detected flavour and its quirks; None for cloud providers and undetected backends."""
    apis: frozenset[str] = field(default=frozenset(), compare=False)
    """The client APIs beyond chat completions the backend speaks itself (the others are translated)."""

    @functools.cached_property
    def substitutes_model(self) -> bool:
        """Whether the backend may answer with another model than the one asked (the proxy checks)."""
        return self.flavour is not None and self.flavour.substitutes_model

    @functools.cached_property
    def is_cloud(self) -> bool:
        return self.provider is not None

    @property
    def loaded_context(self) -> int | None:
        """Tokens the target instance holds as its server lists it (None: cloud, or nobody says)."""
        return None if self.is_cloud or self.info is None else self.info.context_of(self.model)

    @functools.cached_property
    def model_key(self) -> str:
        """The model its numbers are kept under (profile, calibration): `name`, not its instance `name:2`."""
        return self.info.id if self.info is not None else self.model

    def token(self) -> str | None:
        """Read at call time, so a rotated key or token needs no restart."""
        if self.provider is not None:
            return os.environ.get(self.provider.api_key_env) or None
        return self.config.api_token() if self.config is not None else None


@dataclass(frozen=True)
class Tier:
    route: Route
    label: str
    targets: tuple[Target, ...]


@dataclass(frozen=True)
class Plan:
    task: str
    tiers: tuple[Tier, ...]
    unavailable: str = ""
    """Why no local target exists, for the 503 message (empty when there are targets)."""

    @functools.cached_property
    def smallest_context(self) -> int | None:
        """The smallest loaded context any of its targets says it has (None: none says); computed once
        per plan, and plans are kept per snapshot, so a request need not look at every target's."""
        contexts = [c for tier in self.tiers for t in tier.targets if (c := t.loaded_context) is not None]
        return min(contexts, default=None)


def routable(backend: BackendInfo) -> bool:
    return backend.reachable and not backend.draining


class PlanMemo:
    """The plans made for one routing state of the fleet (`Snapshot.routes`) and config object (both
    compared by identity), for the requests that repeat the same (model, task, shape): the hot path
    then skips matching ids, and a fleet polled every second does not make every request plan
    afresh. One per router (a daemon's), never shared between daemons."""

    def __init__(self) -> None:
        self._routes: object = None
        self._routing: RoutingConfig | None = None
        self._plans: dict[tuple[object, ...], Plan] = {}

    def plan(
        self,
        snap: Snapshot,
        routing: RoutingConfig,
        caps: Capabilities,
        req: ParsedRequest,
        task: str,
        local_only: bool,
    ) -> Plan:
        """The ordered tiers for `req` (raises NotFound for an id no backend or alias knows)."""
        if self._routes is not snap.routes or self._routing is not routing or len(self._plans) > 1024:
            self._routes, self._routing, self._plans = snap.routes, routing, {}
        key = (req.endpoint, req.model, task, req.needs_vision, req.has_tools, local_only)
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = plan_request(snap, routing, caps, req, task, local_only)
        return found


def plan_request(
    snap: Snapshot, routing: RoutingConfig, caps: Capabilities, req: ParsedRequest, task: str, local_only: bool
) -> Plan:
    """The ordered tiers for `req`, made afresh (`PlanMemo.plan` remembers them)."""
    model = req.model
    if model in routing.aliases:
        tiers = list(_alias_tiers(snap, routing, caps, req, routing.aliases[model]))
    elif model == AUTO or model.startswith(TASK_PREFIX):
        tiers = list(_auto_tiers(snap, routing, caps, req, task))
    else:
        tiers = list(_explicit_tiers(snap, routing, caps, req))
    if req.has_tools:
        tiers = _tools_first(tiers, caps)
    tiers = _retiring_last(snap, tiers)
    unavailable = "" if tiers else _why_unavailable(snap, req, task)
    if routing.cloud.allowed and not local_only:
        cloud = tuple(_cloud_targets(routing, task))
        if cloud:
            tiers.append(Tier(Route.CLOUD, "cloud", cloud))
    return Plan(task=task, tiers=tuple(tiers), unavailable=unavailable)


def allowed_only(plan: Plan, allowed: Callable[[str], bool]) -> Plan:
    """The plan without the targets whose model a client key may not use (empty tiers dropped)."""
    tiers = []
    for tier in plan.tiers:
        kept = tuple(t for t in tier.targets if allowed(t.model))
        if kept:
            tiers.append(dataclasses.replace(tier, targets=kept))
    return dataclasses.replace(plan, tiers=tuple(tiers))


def concurrency_cap(backend: BackendInfo) -> tuple[int | None, str]:
    """Requests `backend` takes at once (None: no cap) and where that comes from: `config`
    (`max_concurrency`), `server` (the parallel slots it reports), else the flavour's default."""
    if backend.config.max_concurrency:
        return backend.config.max_concurrency, "config"
    reported = max((m.parallel or 0 for m in backend.models if m.loaded), default=0)
    if reported:
        return reported, "server"
    flavour = backends.detected(backend.flavour)
    if flavour is None:
        return DEFAULT_PARALLEL, "not detected yet"
    return flavour.default_concurrency, f"{flavour.name} default"


def target_for(backend: BackendInfo, model: ModelInfo, model_id: str | None = None) -> Target:
    """`model` on `backend`, capped by `concurrency_cap`."""
    cfg = backend.config
    cap, _ = concurrency_cap(backend)
    flavour = backends.detected(backend.flavour)
    return Target(
        backend=backend.name,
        model=model_id or model.id,
        url=backend.url + "/v1",
        cap=cap,
        weight=cfg.weight,
        info=model,
        config=cfg,
        flavour=flavour,
        apis=flavour.apis(backend.version) if flavour is not None else frozenset(),
    )


def _targets(backend: BackendInfo, model: ModelInfo) -> Iterator[Target]:
    """A loaded model with duplicate instances (`name`, `name:2`) gives one target per instance."""
    if len(model.instance_ids) > 1:
        for instance in model.instance_ids:
            yield target_for(backend, model, instance)
    else:
        yield target_for(backend, model)


def choose_task(routing: RoutingConfig, snap: Snapshot, req: ParsedRequest, header: str | None) -> str | None:
    """The task the request names (header `X-LMWatch-Task`, then `task:<type>`), or None to classify."""
    if req.endpoint is Endpoint.EMBEDDINGS:
        return EMBEDDINGS
    if header:
        task = header.strip().lower()
        tasks = routing.task_names()
        if task not in tasks:
            raise InvalidRequest(
                f"unknown task {task!r} in X-LMWatch-Task; known: {', '.join(sorted(tasks))}", code="unknown_task"
            )
        return task
    if req.model.startswith(TASK_PREFIX) and req.model not in routing.aliases:
        task = req.model[len(TASK_PREFIX) :].lower()
        if task not in routing.task_names():
            raise _unknown_model(snap, routing, req.model)
        return task
    return None


# --- explicit ids and aliases --------------------------------------------------------------------


def resolve(snap: Snapshot, model_id: str, backend: str | None = None) -> list[tuple[BackendInfo, ModelInfo, str]]:
    """Every (backend, model, id to send) that `model_id` names, in any of LM Studio's id forms.

    A variant (`name@q8_0`) names only a model whose id or reported quantization says that variant:
    a server that does not say which quantization it loaded does not serve a variant request.
    """
    want = parse(model_id)
    found = []
    for b in snap.backends.values():
        if backend is not None and b.name != backend:
            continue
        for m in b.models:
            exact = next((i for i in m.instance_ids if i.lower() == model_id.lower()), None)
            if exact is not None:
                found.append((b, m, exact))
            elif want.variant is not None and not _variant_known(m):
                continue
            elif want.instance is not None:
                instance = next(
                    (
                        i
                        for i in m.instance_ids
                        if parse(i).instance == want.instance and same_model(model_id, i, m.quantization)
                    ),
                    None,
                )
                if instance is not None:
                    found.append((b, m, instance))
            elif same_model(model_id, m.id, m.quantization):
                found.append((b, m, m.id))
    return found


def _variant_known(model: ModelInfo) -> bool:
    return parse(model.id).variant is not None or bool(model.quantization)


def _explicit_tiers(snap: Snapshot, routing: RoutingConfig, caps: Capabilities, req: ParsedRequest) -> Iterator[Tier]:
    found = resolve(snap, req.model)
    if not found:
        if any(not b.reachable for b in snap.backends.values()):
            return  # a backend that is down may have it: 503 naming it (`_why_unavailable`), not 404
        raise _unknown_model(snap, routing, req.model)
    yield from _id_tiers(routing, req.model, _serving(caps, req, req.model, found))


def _alias_tiers(
    snap: Snapshot,
    routing: RoutingConfig,
    caps: Capabilities,
    req: ParsedRequest,
    targets: list[str | AliasTarget],
) -> Iterator[Tier]:
    """The alias's ids in order; ids whose model cannot serve the request are passed over (a 400 only
    when none of them can)."""
    resolved = []
    for item in targets:
        target = item if isinstance(item, AliasTarget) else AliasTarget(model=item)
        resolved.append((target.model, resolve(snap, target.model, target.backend)))
    serving = [(m, [f for f in found if refusal(caps, req, f[1]) is None]) for m, found in resolved]
    if not any(found for _, found in serving):
        everything = [f for _, found in resolved for f in found]
        if everything:
            _serving(caps, req, req.model, everything)  # raises: say why none of them can
    for model_id, found in serving:
        yield from _id_tiers(routing, model_id, found)


_KINDS = {"embeddings": "an embedding model", "llm": "a text model (llm)", "vlm": "a vision model (vlm)"}


def refusal(caps: Capabilities, req: ParsedRequest, model: ModelInfo) -> InvalidRequest | None:
    """Why `model` cannot serve `req` at all (its type or missing vision), or None when it can."""
    kind = _KINDS["embeddings" if caps.is_embedding(model) else model.model_type.value]
    if caps.is_embedding(model) != (req.endpoint is Endpoint.EMBEDDINGS):
        serves = "/v1/embeddings" if caps.is_embedding(model) else "/v1/chat/completions and /v1/completions"
        return InvalidRequest(
            f"the model {model.id!r} is {kind}: it serves {serves}, not /v1{req.endpoint.path}",
            param="model",
            code="model_type_mismatch",
        )
    if req.needs_vision and not caps.is_vision(model):
        return InvalidRequest(
            f"the model {model.id!r} ({kind}) does not support images; send them to a vision model "
            "(or to `auto`, which picks one)",
            param="messages",
            code="image_input_not_supported",
        )
    return None


def _serving(
    caps: Capabilities, req: ParsedRequest, label: str, found: list[tuple[BackendInfo, ModelInfo, str]]
) -> list[tuple[BackendInfo, ModelInfo, str]]:
    """The entries of `found` that can serve `req`; raises the first refusal when none can."""
    kept = [f for f in found if refusal(caps, req, f[1]) is None]
    if not kept:
        why = refusal(caps, req, found[0][1])
        assert why is not None
        raise why
    return kept


def _id_tiers(routing: RoutingConfig, label: str, found: list[tuple[BackendInfo, ModelInfo, str]]) -> Iterator[Tier]:
    """Loaded copies first; downloaded ones (the backend loads them on demand) only with allow_jit."""
    loaded = tuple(
        t
        for b, m, i in found
        if routable(b) and m.loaded
        for t in (_targets(b, m) if i == m.id else (target_for(b, m, i),))
    )
    if loaded:
        yield Tier(Route.EXPLICIT, label, loaded)
    if routing.allow_jit:
        jit = tuple(target_for(b, m, i) for b, m, i in found if routable(b) and not m.loaded)
        if jit:
            yield Tier(Route.EXPLICIT, label + " (load on demand)", jit)


def _unknown_model(snap: Snapshot, routing: RoutingConfig, model_id: str) -> NotFound:
    want = parse(model_id)
    if want.variant is not None:
        loaded = [
            f"{b.name} has {m.id} ({m.quantization or 'quantization not reported'})"
            for b in snap.backends.values()
            for m in b.models
            if m.loaded and parse(m.id).name == want.name
        ]
        if loaded:
            return NotFound(
                f"the variant {model_id!r} is not loaded on any backend: " + "; ".join(loaded),
                param="model",
                code="model_not_found",
            )
    known = sorted(known_ids(snap, routing))
    lowered = {k.lower(): k for k in known}
    close = [lowered[c] for c in difflib.get_close_matches(model_id.lower(), list(lowered), n=3, cutoff=0.4)]
    hint = f"; closest known ids: {', '.join(close)}" if close else ""
    return NotFound(
        f"the model {model_id!r} does not exist on any backend{hint}", param="model", code="model_not_found"
    )


def known_ids(snap: Snapshot, routing: RoutingConfig) -> set[str]:
    """Every id a request may name: models, loaded instances, aliases, `auto` and `task:<type>`."""
    ids = {AUTO, *routing.aliases, *(TASK_PREFIX + t for t in routing.task_names())}
    for b in snap.backends.values():
        for m in b.models:
            ids.add(m.id)
            ids.update(m.instance_ids)
    return ids


# --- auto: preferences, then the capability table ------------------------------------------------


def _auto_tiers(
    snap: Snapshot, routing: RoutingConfig, caps: Capabilities, req: ParsedRequest, task: str
) -> Iterator[Tier]:
    embeddings = req.endpoint is Endpoint.EMBEDDINGS
    pool = [
        (b, m)
        for b in snap.backends.values()
        if routable(b)
        for m in b.models
        if m.loaded and caps.is_embedding(m) == embeddings and (not req.needs_vision or caps.is_vision(m))
    ]
    taken: set[tuple[str, str]] = set()

    def take(route: Route, label: str, members: Iterable[tuple[BackendInfo, ModelInfo]]) -> Iterator[Tier]:
        chosen = [(b, m) for b, m in members if (b.name, m.id) not in taken]
        taken.update((b.name, m.id) for b, m in chosen)
        targets = tuple(t for b, m in chosen for t in _targets(b, m))
        if targets:
            yield Tier(route, label, targets)

    for pattern in routing.preferences.get(task, ()):
        yield from take(Route.PREFERENCE, pattern, ((b, m) for b, m in pool if family_matches(pattern, m.id)))
    roles = caps.roles(EMBEDDINGS if embeddings else task)
    if req.needs_vision and VISION not in roles:
        roles = (*roles, VISION)
    for role in roles:
        for family in caps.families_for(role):
            yield from take(Route.CAPABILITY, family.name, ((b, m) for b, m in pool if caps.family(m.id) is family))
    yield from take(Route.CAPABILITY, "any loaded model", pool)


def _retiring_last(snap: Snapshot, tiers: list[Tier]) -> list[Tier]:
    """Models about to be unloaded (a swap, an idle unload) are tried after everything else."""

    def retiring(target: Target) -> bool:
        backend = snap.backends.get(target.backend)
        return backend is not None and target.info is not None and target.info.id in backend.retiring

    if not any(retiring(t) for tier in tiers for t in tier.targets):
        return tiers
    keep = [Tier(t.route, t.label, tuple(x for x in t.targets if not retiring(x))) for t in tiers]
    last = [Tier(t.route, t.label + " (retiring)", tuple(x for x in t.targets if retiring(x))) for t in tiers]
    return [t for t in keep + last if t.targets]


def _tools_first(tiers: list[Tier], caps: Capabilities) -> list[Tier]:
    """Requests with `tools` go to models trained for tool use first, keeping the tier order."""

    def split(tier: Tier, wanted: bool) -> Tier:
        return Tier(
            tier.route,
            tier.label,
            tuple(t for t in tier.targets if (t.info is not None and caps.tool_use(t.info)) == wanted),
        )

    ordered = [split(t, True) for t in tiers] + [split(t, False) for t in tiers]
    return [t for t in ordered if t.targets]


# --- cloud and the reasons nothing is available --------------------------------------------------


def _cloud_targets(routing: RoutingConfig, task: str) -> Iterator[Target]:
    for provider in routing.cloud.providers:
        model = provider.models.get(task) or provider.models.get("default")
        if model and os.environ.get(provider.api_key_env):
            yield Target(
                backend=f"cloud:{provider.name}",
                model=model,
                url=str(provider.base_url).rstrip("/"),
                cap=None,
                provider=provider,
            )


def _state(b: BackendInfo) -> str:
    """A backend's state as a client may read it: the kind of a probe failure (`auth`, `timeout`),
    never what the backend answered."""
    if b.draining:
        return "draining"
    return f"down ({b.public_reason})" if b.health is Health.DOWN else b.health.value


def _why_unavailable(snap: Snapshot, req: ParsedRequest, task: str) -> str:
    if not snap.backends:
        return "no backends are configured"
    states = ", ".join(f"{b.name}: {_state(b)}" for b in snap.backends.values())
    if req.model == AUTO or req.model.startswith(TASK_PREFIX):
        what = "an image-capable model" if req.needs_vision else f"a model for {task}"
        return f"no healthy backend has {what} loaded ({states})"
    return f"no healthy backend has {req.model!r} loaded ({states})"
