"""The control plane: what changes a running daemon without a restart, in one place.

It holds the admin token, the client keys, the audit log and the backend sources (config, files,
runtime), and implements what the admin API and signals ask for: reload and routing preferences here;
changes to the backend set in `lmwatch/backend_changes.py` (`fleet`), loads and unloads in
`lmwatch/model_changes.py` (`models`). The daemon wires it; `/admin` handlers (lmwatch/api/admin.py)
stay thin and call it.

Reload is two steps so a bad config never half-applies: `prepare()` reads and checks everything
that can fail (the file, the admin token, the client keys) and raises ConfigError with `path:
message` problems; `apply()` cannot fail and swaps it all in on the event loop in one go, so each
request sees the old config or the new one. Registry state (health, speeds, breakers, drains) and
every counter carry over.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from pydantic import TypeAdapter, ValidationError

from lmwatch.audit import AuditLog
from lmwatch.backend_changes import BackendChanges
from lmwatch.config import (
    Config,
    ConfigError,
    LoadedConfig,
    iter_backend_tokens,
    load_config,
    validation_problems,
)
from lmwatch.credentials import (
    ANONYMOUS,
    AccessControl,
    AdminAuth,
    AdminToken,
    ClientKey,
    SecretProblems,
    host_is_loopback,
    load_admin_token,
    load_client_keys,
)
from lmwatch.discovery import BackendSources, FileDiscovery
from lmwatch.errors import InvalidRequest
from lmwatch.model_changes import ModelChanges
from lmwatch.services import Services
from lmwatch.watcher import Watcher

log = logging.getLogger("lmwatch.control")

_PREFERENCES: TypeAdapter[dict[str, list[str]]] = TypeAdapter(dict[str, list[str]])


class StartupError(Exception):
    """The daemon must not start: one clear message for the operator."""


@dataclass(frozen=True)
class Prepared:
    """A config whose secrets were read: ready to apply, nothing left that can fail."""

    loaded: LoadedConfig
    admin_token: AdminToken | None
    keys: tuple[ClientKey, ...]
    secrets: tuple[str, ...]


class ControlPlane:
    def __init__(
        self,
        services: Services,
        watcher: Watcher,
        scheduler: AsyncIOScheduler,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.services = services
        self.watcher = watcher
        self._env = env
        self.admin = AdminAuth()
        self.access = AccessControl()
        self.redactor = services.config.redactor
        self.audit = AuditLog(self.redactor)
        self.sources = BackendSources()
        self.fleet = BackendChanges(self.sources, services.registry, watcher, self.redactor)
        """The backend set: merged sources, runtime additions and removals, polls."""
        self.models = ModelChanges(services, watcher)
        """Loads and unloads the admin API asks for, through the lifecycle."""
        self.discovery = FileDiscovery(self.sources, scheduler, self.fleet.sync)
        self.listen_host: str | None = None
        """The address the server bound at start (server.* changes need a restart)."""
        self.last_reload: dict[str, Any] = {"time": None, "success": None, "problems": []}
        self._reloading = asyncio.Lock()
        """One reload at a time (SIGHUP and the API may ask together): the file read last is applied last."""
        self.metrics = services.metrics.control
        self.metrics.files = lambda: self.sources.files
        self.metrics.audit_failures = lambda: self.audit.failures

    @property
    def env(self) -> Mapping[str, str]:
        return os.environ if self._env is None else self._env

    @property
    def config(self) -> Config:
        return self.services.config.config

    def count_request(self, key_name: str, code: str) -> None:
        """Count one `/v1` request in `lmwatch_client_requests_total`."""
        self.metrics.client_requests.inc((key_name, code))

    # --- config: prepare, apply, reload ----------------------------------------------------------

    def prepare(self, loaded: LoadedConfig) -> Prepared:
        """Read the secrets `loaded` names; raises ConfigError listing every problem."""
        source = str(loaded.path) if loaded.path else "<config>"
        problems: list[str] = []
        token: AdminToken | None = None
        secrets: list[str] = []
        keys: list[ClientKey] = []
        try:
            token, token_secret = load_admin_token(loaded.config.admin, self.env)
            if token_secret:
                secrets.append(token_secret)
        except SecretProblems as exc:
            problems += exc.problems
        try:
            keys, key_secrets = load_client_keys(loaded.config.clients, self.env)
            secrets += key_secrets
        except SecretProblems as exc:
            problems += exc.problems
        host = self.listen_host or loaded.config.server.host
        if token is None and not problems and not host_is_loopback(host):
            problems.append(_no_token_problem(host))
        if problems:
            raise ConfigError(source, problems)
        self.services.router.classifier(loaded.config.routing)  # compiled now (the model read), not by a request
        return Prepared(loaded, token, tuple(keys), tuple(secrets))

    def apply(self, prepared: Prepared) -> None:
        """Swap in a prepared config. Never fails; synchronous, so no request sees a mix."""
        config = prepared.loaded.config
        self.redactor.replace([*iter_backend_tokens(config), *prepared.secrets])  # a removed key is forgotten
        self.services.config.loaded = prepared.loaded
        self.services.registry.describe_models(self.services.router.capabilities(config.routing).describe)
        self.admin.token = prepared.admin_token
        self.access.replace(prepared.keys)
        self.audit.configure(
            config.audit_path(self.env) if config.audit.enabled else None, config.audit.requests, config.audit.prompts
        )
        if self.services.cache is not None:
            self.services.cache.configure(config.cache, config.cache_path(self.env))
        if self.services.usage is not None:
            usage_path = config.usage_path(self.env) if config.usage.enabled else None
            self.services.usage.configure(usage_path, config.usage.retention_days)
        self.sources.static = tuple(config.backends)
        self.sources.reset_runtime()
        path = prepared.loaded.path
        self.discovery.configure(config.backend_files, config.backend_files_interval, path.parent if path else None)
        self.metrics.reload_time.set(time.time())
        if self.fleet.live:
            self.fleet.sync()
            self.discovery.schedule()

    async def reload(self) -> list[str]:
        """Re-read the config file; returns the problems (empty when the new config is in force)."""
        async with self._reloading:
            return await self._reload()

    async def _reload(self) -> list[str]:
        path = self.services.config.loaded.path
        if path is None:
            problems = ["the daemon was started without a config file; there is nothing to reload"]
        else:
            try:  # in a thread: the config, token and key files are read from disk
                prepared = await asyncio.to_thread(lambda: self.prepare(load_config(path)))
            except ConfigError as exc:  # the problems reach /status and the API answer: redacted here
                problems = [self.redactor.redact(p) for p in exc.problems]
                for problem in problems:
                    log.error("reload refused: %s: %s", exc.source, problem)
                log.error("reload refused: %d problem(s); the running config stays in force", len(problems))
            else:
                old = self.config.server
                self.apply(prepared)
                await self.discovery.scan()
                problems = []
                if prepared.loaded.config.server != old:
                    log.warning("server.* changed: that part takes effect at the next restart")
                log.info("config reloaded from %s: %d backends", path, len(self.sources.origins))
        self.metrics.reloads.labels("failure" if problems else "success").inc()
        self.metrics.reload_ok.set(0 if problems else 1)
        self.last_reload = {"time": time.time(), "success": not problems, "problems": list(problems)}
        return problems

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        """Before the watcher starts: read the backend files once and say how access is set up."""
        await self.discovery.scan(notify=False)
        self.sources.effective()
        self.listen_host = self.config.server.host
        self._log_setup()

    def go_live(self) -> None:
        """After the watcher started: file changes now reach it."""
        self.fleet.live = True
        self.discovery.schedule()

    async def stop(self) -> None:
        self.fleet.live = False
        self.discovery.unschedule()
        await self.audit.close()

    def reopen_logs(self) -> None:
        self.audit.reopen()

    async def record_signal(self, action: str, problems: list[str]) -> None:
        """The audit line of an action a signal asked for (SIGHUP: reload)."""
        result = "refused" if problems else "ok"
        self.metrics.admin_actions.labels(action, result).inc()
        detail: dict[str, Any] = {"problems": problems} if problems else {}
        await self.audit.control(actor="signal", action=action, target=None, result=result, **detail)

    def _log_setup(self) -> None:
        token = self.admin.token
        if token is not None:
            log.info("admin API: bearer token required (from %s)", token.source)
        else:
            log.warning(
                "admin API: no admin token is set, so /admin answers loopback clients only "
                "(set LMWATCH_ADMIN_TOKEN or admin.token_file)"
            )
        keys = self.access.keys
        if keys:
            log.info("client keys: %d (%s); /v1 needs a key", len(keys), ", ".join(k.name for k in keys))
        else:
            log.info("client keys: none; /v1 is open to every client that can reach it")
        if self.audit.enabled:
            log.info(
                "audit log: %s (request lines %s, prompts %s)",
                self.audit.path,
                "on" if self.audit.requests else "off",
                "on" if self.audit.prompts else "off",
            )
        if self.discovery.patterns:
            log.info("backend files: %s (%d files)", ", ".join(self.discovery.patterns), len(self.sources.files))
        for warning in secret_file_warnings(self.config, self.services.config.loaded.path):
            log.warning("%s", warning)

    def set_preferences(self, body: Any) -> dict[str, list[str]]:
        """Replace routing.preferences until the next reload (validated like the config)."""
        try:
            preferences = _PREFERENCES.validate_python(body)
        except ValidationError as exc:
            problems = validation_problems(exc, ("routing", "preferences"))
            raise InvalidRequest("invalid routing preferences", problems=problems, code="invalid_config") from None
        loaded = self.services.config.loaded
        routing = loaded.config.routing.model_copy(update={"preferences": preferences})
        config = loaded.config.model_copy(update={"routing": routing})
        self.services.config.loaded = dataclasses.replace(loaded, config=config)
        return preferences

    # --- reading ---------------------------------------------------------------------------------

    def status_section(self) -> dict[str, Any]:
        """What `/status` and `GET /admin/backends` show about control: no secret, only names."""
        return {
            "admin": {
                "token": self.admin.token is not None,
                "mode": "token" if self.admin.token is not None else "loopback-only",
            },
            "clients": {"keys": [k.name for k in self.access.keys]},
            "audit": {
                "path": str(self.audit.path) if self.audit.enabled else None,
                "requests": self.audit.requests,
                "prompts": self.audit.prompts,
                "write_failures": self.audit.failures,
            },
            "discovery": {
                "patterns": list(self.discovery.patterns),
                "files": [f.document() for _, f in sorted(self.sources.files.items())],
            },
            "runtime": {"added": sorted(self.sources.runtime), "removed": sorted(self.sources.removed)},
            "last_reload": self.last_reload,
        }


def _no_token_problem(host: str) -> str:
    return (
        f"server.host: lmwatch would listen on {host} (not loopback) without an admin token, so /admin "
        "could only be protected by the client's address; set LMWATCH_ADMIN_TOKEN or admin.token_file, "
        "or listen on 127.0.0.1"
    )


def secret_file_warnings(config: Config, config_path: Path | None) -> list[str]:
    """A warning for each file holding a secret that other users can read."""
    files: list[tuple[str, Path]] = []
    if config.admin.token_file:
        files.append(("admin.token_file", config.admin.token_file))
    if config.clients.keys_file:
        files.append(("clients.keys_file", config.clients.keys_file))
    files += [(f"clients.keys[{i}].key_file", k.key_file) for i, k in enumerate(config.clients.keys) if k.key_file]
    files += [
        (f"backends[{i}].api_token_file", b.api_token_file) for i, b in enumerate(config.backends) if b.api_token_file
    ]
    inline = [f"backends[{i}].url" for i, b in enumerate(config.backends) if b.url.password]
    inline += [
        f"routing.cloud.providers[{i}].base_url"
        for i, p in enumerate(config.routing.cloud.providers)
        if p.base_url.password
    ]
    if config_path is not None and inline:
        files.append((", ".join(inline) + " (a password in a URL)", config_path))
    warnings = []
    for what, path in files:
        try:
            mode = path.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IROTH:
            warnings.append(
                f"{path} holds a secret ({what}) and is readable by every user "
                f"(mode {stat.S_IMODE(mode):04o}); run: chmod o-rwx {path}"
            )
    return warnings


__all__ = ["ANONYMOUS", "ControlPlane", "Prepared", "StartupError"]
