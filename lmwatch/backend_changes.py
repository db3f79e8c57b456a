"""The backend set a running daemon watches, and the changes to it that need no reload: a backend
added or removed through the admin API (until the next reload), backend files changing, a poll now.

Once live (after the watcher started), every change reaches the watcher at once.
"""

from __future__ import annotations

from lmwatch.config import BackendConfig, backend_secrets
from lmwatch.discovery import BackendSources
from lmwatch.errors import Conflict, NotFound
from lmwatch.redaction import Redactor
from lmwatch.registry import Registry
from lmwatch.watcher import Watcher


class BackendChanges:
    def __init__(self, sources: BackendSources, registry: Registry, watcher: Watcher, redactor: Redactor) -> None:
        self.sources = sources
        self._redactor = redactor
        self._registry = registry
        self._watcher = watcher
        self.live = False
        """Set by the control plane once the watcher runs (and cleared when it stops)."""

    def backends(self) -> list[BackendConfig]:
        """The merged backends, their URL passwords and tokens known to the redactor first (those of
        backend files and the admin API too, not only the config's; a token file's next token too)."""
        backends = self.sources.effective()
        for backend in backends:
            backend.redact_tokens_with(self._redactor)
        self._redactor.add(backend_secrets(backends))
        return backends

    def sync(self) -> None:
        """Hand the merged backends to the watcher (once live)."""
        if self.live:
            self._watcher.sync(self.backends())

    def add(self, backend: BackendConfig) -> None:
        """Add a backend until the next reload; 409 when the name is taken."""
        if backend.name in self._registry.snapshot().backends:
            origin = self.sources.origins.get(backend.name, "config")
            raise Conflict(
                f"a backend named {backend.name!r} already exists ({origin})", code="backend_exists", param="name"
            )
        self.sources.runtime[backend.name] = backend
        self.sync()

    def remove(self, name: str) -> str:
        """Remove a backend until the next reload; returns where it came from."""
        origin = self.sources.origins.get(name)
        if origin is None or name not in self._registry.snapshot().backends:
            raise unknown_backend(name)
        if self.sources.runtime.pop(name, None) is None:
            self.sources.removed.add(name)
        self.sync()
        return origin

    async def poll(self, name: str | None) -> list[str]:
        names = list(self._registry.snapshot().backends)
        if name is not None:
            if name not in names:
                raise unknown_backend(name)
            await self._watcher.poll(name)
            return [name]
        await self._watcher.poll_all()
        return names


def unknown_backend(name: str) -> NotFound:
    return NotFound(f"no backend named {name!r}", code="backend_not_found")
