"""Does a request fit a candidate's context? Estimate its tokens cheaply, check before sending.

The estimate is characters / characters-per-token plus a small per-request overhead for the chat
template. Characters per token start at `DEFAULT_CHARS_PER_TOKEN` and are calibrated per backend and
model from the prompt `usage` the backend reports (then from a profile's measurement, when one
exists), so a model whose tokenizer is denser or sparser is judged by its own numbers. A candidate
whose *loaded* context (per instance where the server says it) cannot hold prompt + `max_tokens` is
skipped; when no local candidate fits, the request is refused with OpenAI's `context_length_exceeded`
before any backend is bothered. A context a backend revealed in its own context-length error counts
too (until the model is reloaded), which covers servers that do not list it.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass

from lmwatch.errors import InvalidRequest
from lmwatch.outcomes import RequestOutcomes
from lmwatch.routing.request import Endpoint, ParsedRequest
from lmwatch.routing.select import Plan, Target

DEFAULT_CHARS_PER_TOKEN = 4.0
"""English text in the common tokenizers (GPT, Llama 3, Qwen) runs about 4 characters per token."""
TEMPLATE_TOKENS = 16
"""Tokens a chat template adds around the messages (role markers, BOS): counted once per request."""
MIN_CALIBRATION_CHARS = 200
"""Prompts shorter than this say more about the template than about the tokenizer: not learned from."""
_MAXIMUM = re.compile(r"(?:maximum context length is|context window of|context length of|n_ctx[ =:]+)\s*(\d+)", re.I)


@dataclass(frozen=True)
class Fit:
    """The context check of one candidate: what the request needs and what the candidate holds."""

    needed: int
    """Estimated prompt tokens + the `max_tokens` reserved."""
    prompt: int
    context: int | None
    """The loaded context of the target instance (None when nobody says)."""
    chars_per_token: float
    calibrated: bool

    @property
    def fits(self) -> bool:
        return self.context is None or self.needed <= self.context

    def document(self) -> dict[str, object]:
        return {
            "fits": self.fits,
            "needed_tokens": self.needed,
            "prompt_tokens_estimated": self.prompt,
            "context_length": self.context,
            "chars_per_token": round(self.chars_per_token, 3),
            "calibrated": self.calibrated,
        }


def fit(req: ParsedRequest, target: Target, outcomes: RequestOutcomes) -> Fit:
    model = target.model_key
    learned = outcomes.chars_per_token(target.backend, model)
    if learned is None:
        profile = outcomes.profile(target.backend, model)
        learned = profile.chars_per_token if profile is not None else None
    ratio = learned or DEFAULT_CHARS_PER_TOKEN
    overhead = TEMPLATE_TOKENS if req.endpoint is Endpoint.CHAT else 0
    prompt = math.ceil(req.prompt_chars / ratio) + overhead
    context = target.loaded_context
    known = outcomes.learned_context(target.backend, model)
    if known is not None:
        context = min(context, known) if context else known
    return Fit(prompt + req.max_tokens, prompt, context, ratio, learned is not None)


def fit_plan(plan: Plan, req: ParsedRequest, outcomes: RequestOutcomes) -> Plan:
    """The plan without the targets the request cannot fit; raises 400 when no local target fits."""
    if _fits_everywhere(plan, req, outcomes):
        return plan
    tiers = []
    too_small: list[tuple[Target, Fit]] = []
    local_fits = False
    for tier in plan.tiers:
        kept = []
        for target in tier.targets:
            checked = fit(req, target, outcomes)
            if checked.fits:
                kept.append(target)
                local_fits = local_fits or not target.is_cloud
            else:
                too_small.append((target, checked))
        if kept:
            tiers.append(dataclasses.replace(tier, targets=tuple(kept)) if len(kept) < len(tier.targets) else tier)
    if not too_small:
        return plan
    if not local_fits:
        raise context_too_long(req, too_small)
    return dataclasses.replace(plan, tiers=tuple(tiers))


def _fits_everywhere(plan: Plan, req: ParsedRequest, outcomes: RequestOutcomes) -> bool:
    """Whether the request fits even the smallest context with the densest tokenizer known: then
    every target fits, and checking them one by one (`fit`) would only cost time per target."""
    smallest = [c for c in (plan.smallest_context, outcomes.learned_context_floor()) if c is not None]
    if not smallest:
        return True
    ratio = min(outcomes.chars_per_token_floor() or DEFAULT_CHARS_PER_TOKEN, DEFAULT_CHARS_PER_TOKEN)
    overhead = TEMPLATE_TOKENS if req.endpoint is Endpoint.CHAT else 0
    return math.ceil(req.prompt_chars / ratio) + overhead + req.max_tokens <= min(smallest)


_PARAMS = {Endpoint.CHAT: "messages", Endpoint.COMPLETIONS: "prompt", Endpoint.EMBEDDINGS: "input"}


def learn(req: ParsedRequest, target: Target, outcomes: RequestOutcomes, prompt_tokens: int) -> None:
    """Calibrate characters per token from the prompt usage a backend reported for `req`."""
    if req.endpoint is Endpoint.EMBEDDINGS or target.is_cloud or req.prompt_chars < MIN_CALIBRATION_CHARS:
        return
    overhead = TEMPLATE_TOKENS if req.endpoint is Endpoint.CHAT else 0
    outcomes.record_prompt(target.backend, target.model_key, req.prompt_chars, max(prompt_tokens - overhead, 1))


def context_too_long(req: ParsedRequest, refused: list[tuple[Target, Fit]]) -> InvalidRequest:
    """OpenAI's own wording and code, with lmwatch's numbers: the largest context, what was asked."""
    largest = max((f for _, f in refused), key=lambda f: f.context or 0)
    where = ", ".join(f"{t.backend}/{t.model} {f.context}" for t, f in refused[:6])
    return InvalidRequest(
        f"This model's maximum context length is {largest.context} tokens. However, you requested about "
        f"{largest.needed} tokens ({largest.prompt} in the messages, estimated; {req.max_tokens} in the "
        f"completion). Please reduce the length of the messages or completion. (loaded contexts: {where})",
        param=_PARAMS[req.endpoint],
        code="context_length_exceeded",
    )


def context_in_error(message: str) -> int | None:
    """The context a backend states in its context-length error ("maximum context length is 2048")."""
    match = _MAXIMUM.search(message)
    return int(match.group(1)) if match else None
