"""What `/admin/route/explain` adds per candidate: context fit, capability, speed and the measured
profile, and the loaded models `auto` passed over (with why), computed with the router's own functions."""

from __future__ import annotations

from typing import Any

from lmwatch.config import RoutingConfig
from lmwatch.outcomes import RequestOutcomes
from lmwatch.registry import Snapshot
from lmwatch.routing.balance import expected_seconds
from lmwatch.routing.capabilities import Capabilities
from lmwatch.routing.context import Fit, fit
from lmwatch.routing.request import ParsedRequest
from lmwatch.routing.select import AUTO, TASK_PREFIX, Plan, Target, refusal, routable


def facts(req: ParsedRequest, target: Target, outcomes: RequestOutcomes) -> tuple[Fit, dict[str, Any]]:
    """The context check of `target` and its fit/speed fields for an explain candidate."""
    checked = fit(req, target, outcomes)
    live = outcomes.speed(target.backend, target.model)
    measured = live is not None and (live.ttft is not None or live.tokens_per_second is not None)
    profile = None if target.is_cloud else outcomes.profile(target.backend, target.model_key)
    speed = {
        "expected_seconds": expected_seconds(outcomes, target),
        "source": "live" if measured else "profile" if profile is not None else "none",
        "ttft_seconds": live.ttft if measured and live else profile.ttft_short_seconds if profile else None,
        "tokens_per_second": (
            live.tokens_per_second if measured and live else profile.generation_tokens_per_second if profile else None
        ),
        "prompt_tokens_per_second": profile.prompt_tokens_per_second if profile else None,
    }
    return checked, {"fit": checked.document(), "speed": speed, "profile": profile.summary() if profile else None}


def passed_over(
    caps: Capabilities, snap: Snapshot, routing: RoutingConfig, req: ParsedRequest, plan: Plan
) -> list[dict[str, Any]]:
    """Loaded models `auto` or `task:` did not consider, each with the capability it lacks."""
    if not (req.model == AUTO or req.model.startswith(TASK_PREFIX)) or req.model in routing.aliases:
        return []
    planned = {(t.backend, t.model_key) for tier in plan.tiers for t in tier.targets}
    skipped = []
    for b in snap.backends.values():
        if not routable(b):
            continue
        for m in b.loaded_models:
            why = refusal(caps, req, m)
            if (b.name, m.id) not in planned and why is not None:
                skipped.append({"backend": b.name, "model": m.id, "capability": why.message})
    return skipped
