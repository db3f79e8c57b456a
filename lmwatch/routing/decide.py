"""The routing decision, in one sequence: the task (header, `task:<type>`, else the classifier), the
plan (tiers of targets), a client key's limits, then the context check.

`/v1` and `/admin/route/explain` both call `Router.choose_task` and `Router.decide`, so the explainer
shows what the router does. A `Router` belongs to one daemon and remembers, between requests, what
the decision derives from the snapshot and the config: plans per snapshot, the compiled classifier
and the capability table per config object (a reload swaps the object, so they are rebuilt).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from lmwatch.config import RoutingConfig
from lmwatch.errors import Forbidden
from lmwatch.outcomes import RequestOutcomes
from lmwatch.registry import Snapshot
from lmwatch.routing.capabilities import Capabilities
from lmwatch.routing.classify import Classification, Classifier
from lmwatch.routing.context import fit_plan
from lmwatch.routing.memo import PerConfig
from lmwatch.routing.request import Endpoint, ParsedRequest
from lmwatch.routing.select import Plan, PlanMemo, allowed_only, choose_task

Classify = Callable[[RoutingConfig, Snapshot, Mapping[str, Any]], Awaitable[Classification]]


class KeyLimits(Protocol):
    """What a client key may use (`lmwatch.credentials.ClientKey`)."""

    @property
    def name(self) -> str: ...

    @property
    def models(self) -> tuple[str, ...]: ...

    def allows_task(self, task: str) -> bool: ...

    def allows_model(self, model_id: str) -> bool: ...


@dataclass(slots=True)
class TaskChoice:
    """The task a request is routed as (read-only by convention: one is made per request, and a
    frozen dataclass costs a `__setattr__` per field)."""

    task: str
    forced: bool
    """The request named its task (header or `task:<type>`); the classifier did not decide."""
    classification: Classification | None
    """The classifier's scores and reasons; None when it did not run."""


@dataclass(slots=True)
class Decision:
    """The plans of a request (read-only by convention, as TaskChoice)."""

    planned: Plan
    """Every target the request could use by model, task and shape (what the explainer lists)."""
    plan: Plan
    """`planned` less what the key may not use and, on a real request, what the request does not fit."""


class Router:
    """One daemon's routing memory; every method runs on the event loop and does no I/O."""

    def __init__(self) -> None:
        self._plans = PlanMemo()
        self._capabilities = PerConfig(Capabilities)
        self._classifier = PerConfig(Classifier)
        self._classify: Classify = self._linear

    def use_classifier(self, classify: Classify) -> None:
        """Classify with `classify` (the configured mode: the embedding classifier of the `/v1` app)."""
        self._classify = classify

    async def _linear(self, routing: RoutingConfig, snap: Snapshot, body: Mapping[str, Any]) -> Classification:
        return self._classifier(routing).classify(body)

    def capabilities(self, routing: RoutingConfig) -> Capabilities:
        return self._capabilities(routing)

    def classifier(self, routing: RoutingConfig) -> Classifier:
        return self._classifier(routing)

    async def choose_task(
        self, snap: Snapshot, routing: RoutingConfig, req: ParsedRequest, header: str | None, *, scores: bool = False
    ) -> TaskChoice:
        """The request's task; `scores` runs the classifier even when the request names its task."""
        forced = choose_task(routing, snap, req, header)
        classification = None
        if (forced is None or scores) and req.endpoint is not Endpoint.EMBEDDINGS:
            if routing.classifier.mode == "embedding":
                classification = await self._classify(routing, snap, req.as_chat)
            else:  # the linear model: no await per request for what never waits
                classification = self._classifier(routing).classify(req.as_chat)
        task = forced or (classification.task if classification is not None else "embeddings")
        return TaskChoice(task, forced is not None, classification)

    def plan(self, snap: Snapshot, routing: RoutingConfig, req: ParsedRequest, task: str, local_only: bool) -> Plan:
        """The ordered tiers for `req` (raises NotFound for an id no backend or alias knows)."""
        return self._plans.plan(snap, routing, self._capabilities(routing), req, task, local_only)

    def decide(
        self,
        snap: Snapshot,
        routing: RoutingConfig,
        outcomes: RequestOutcomes,
        req: ParsedRequest,
        task: str,
        *,
        local_only: bool,
        key: KeyLimits | None = None,
        dry_run: bool = False,
    ) -> Decision:
        """The plan for `req` as `task`. Raises Forbidden for a task or every model the key may not
        use, NotFound for an unknown id, InvalidRequest when no local target fits the request. A `dry_run` (the
        explainer) keeps the targets the request does not fit: it marks them instead."""
        if key is not None and not key.allows_task(task):
            raise Forbidden(f"the key {key.name!r} may not be used for {task} requests", code="task_not_allowed")
        planned = self.plan(snap, routing, req, task, local_only)
        plan = planned
        if key is not None and key.models:
            plan = allowed_only(planned, key.allows_model)
            if planned.tiers and not plan.tiers:
                raise Forbidden(
                    f"the key {key.name!r} may not use any model that can serve this request",
                    code="model_not_allowed",
                    param="model",
                )
        if not dry_run:
            plan = fit_plan(plan, req, outcomes)
        return Decision(planned, plan)
