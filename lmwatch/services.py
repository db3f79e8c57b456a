"""The long-lived objects a running daemon shares with its HTTP handlers.

Handlers get them from `request.app[SERVICES]`; nothing else is global. The config is held behind
`ConfigHolder` so a reload swaps it in one assignment and a request keeps the config it started with;
the holder also keeps the secrets that config reaches, to redact them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web

from lmwatch.config import Config, LoadedConfig
from lmwatch.metrics.table import Metrics
from lmwatch.redaction import Redactor
from lmwatch.registry import Registry
from lmwatch.routing.decide import Router

if TYPE_CHECKING:
    from lmwatch.cache.service import Cache
    from lmwatch.control import ControlPlane
    from lmwatch.lifecycle.manager import Lifecycle
    from lmwatch.profiling.runner import ProfileRunner
    from lmwatch.usage.log import UsageLog


@dataclass
class ConfigHolder:
    loaded: LoadedConfig
    redactor: Redactor = field(default_factory=Redactor)
    """The secrets of the config in force (and of what was added since): every log line, error
    answer and audit line of this daemon passes through it."""

    @property
    def config(self) -> Config:
        return self.loaded.config


@dataclass
class Services:
    registry: Registry
    config: ConfigHolder
    metrics: Metrics
    router: Router = field(default_factory=Router)
    """The routing decision and what it remembers between requests (plans, the compiled classifier)."""
    poll_now: Callable[[str | None], None] = field(default=lambda name: None)
    """Ask the watcher to probe one backend (or all, with None) right away."""
    control: ControlPlane | None = None
    """Admin token, client keys, audit log, backend sources, reload (lmwatch/control.py); None in
    apps built without a daemon (then /admin and client keys are not installed)."""
    cache: Cache | None = None
    """The response and embedding cache (lmwatch/cache); None in apps built without a daemon."""
    usage: UsageLog | None = None
    """The usage log (lmwatch/usage); None in apps built without a daemon."""
    lifecycle: Lifecycle | None = None
    """keep_loaded, placement, idle unload, swap (lmwatch/lifecycle); None in apps built without a daemon."""
    profiles: ProfileRunner | None = None
    """Measures models and keeps their profiles (lmwatch/profiling); None without a daemon."""
    status_sections: dict[str, Callable[[], Any]] = field(default_factory=dict)
    """Extra top-level sections of `/status`: name -> a function returning JSON-able data."""


SERVICES = web.AppKey("services", Services)
