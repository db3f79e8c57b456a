"""The daemon: wires config, registry, watcher and HTTP server together and owns their lifecycle.

Start order: bind the HTTP listener (so `/healthz` answers at once), start the scheduler, run the
first poll round, then declare readiness. SIGHUP reloads the config file (an invalid one is refused
and the running config stays); SIGTERM/SIGINT stop accepting, let in-flight requests finish up to
a deadline, and exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC

from aiohttp import web
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from lmwatch import __version__
from lmwatch.config import ConfigError, LoadedConfig, iter_backend_tokens, load_config
from lmwatch.logs import register_secrets
from lmwatch.metrics import new_metrics_registry
from lmwatch.registry import Registry
from lmwatch.sdnotify import notify_ready, notify_reloading, notify_stopping, notify_watchdog, watchdog_interval
from lmwatch.server import Setup, build_app
from lmwatch.services import ConfigHolder, Services
from lmwatch.watcher import Watcher

log = logging.getLogger("lmwatch.daemon")

SHUTDOWN_GRACE_SECONDS = 30.0


class Daemon:
    def __init__(self, loaded: LoadedConfig, extensions: Sequence[Setup] = ()) -> None:
        self.registry = Registry()
        self.holder = ConfigHolder(loaded)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.watcher = Watcher(self.registry, self.scheduler)
        self.services = Services(
            registry=self.registry,
            config=self.holder,
            metrics=new_metrics_registry(self.registry),
            poll_now=self.watcher.poll_now,
        )
        self.app = build_app(self.services, extensions)
        self._runner: web.AppRunner | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self.port: int | None = None

    @property
    def url(self) -> str:
        host = self.holder.config.server.host
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self.port}"

    async def start(self) -> None:
        config = self.holder.config
        register_secrets(iter_backend_tokens(config))
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=SHUTDOWN_GRACE_SECONDS)
        await self._runner.setup()
        site = web.TCPSite(self._runner, config.server.host, config.server.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        log.info("lmwatch %s listening on %s with %d backends", __version__, self.url, len(config.backends))
        self.scheduler.start()
        await self.watcher.start(config.backends)
        self.registry.mark_first_round_done()
        log.info("first poll round done: %s", _summary(self.registry))
        notify_ready(f"serving on {self.url}; {_summary(self.registry)}")
        interval = watchdog_interval()
        if interval:
            self._watchdog = asyncio.create_task(_heartbeat(interval), name="systemd watchdog")

    async def reload(self) -> list[str]:
        """Re-read the config file; returns the problems (empty when the new config is in force)."""
        path = self.holder.loaded.path
        if path is None:
            return ["the daemon was started without a config file"]
        notify_reloading()
        try:
            loaded = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload refused: %s: %s", exc.source, problem)
            return exc.problems
        else:
            self.apply(loaded)
            log.info("config reloaded from %s", path)
            return []
        finally:
            notify_ready(f"serving on {self.url}; {_summary(self.registry)}")

    def apply(self, loaded: LoadedConfig) -> None:
        """Swap in a validated config: one assignment, so each request sees one config or the other."""
        register_secrets(iter_backend_tokens(loaded.config))
        self.holder.loaded = loaded
        self.watcher.sync(loaded.config.backends)

    async def stop(self) -> None:
        log.info("stopping: no new requests, in-flight ones get up to %.0f s", SHUTDOWN_GRACE_SECONDS)
        notify_stopping()
        if self._watchdog is not None:
            self._watchdog.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
        await self.watcher.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        loop.add_signal_handler(signal.SIGINT, stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        await self.start()
        await stop.wait()
        await self.stop()


async def _heartbeat(interval: float) -> None:
    """WATCHDOG=1 from the event loop itself: if the loop hangs, the pings stop and systemd restarts us."""
    while True:
        notify_watchdog()
        await asyncio.sleep(interval)


def _summary(registry: Registry) -> str:
    backends = registry.snapshot().backends.values()
    return ", ".join(f"{b.name}={b.health.value}" for b in backends) or "no backends configured"


@asynccontextmanager
async def running_daemon(loaded: LoadedConfig, extensions: Sequence[Setup] = ()) -> AsyncIterator[Daemon]:
    """A started daemon for tests and embedding; stopped on exit."""
    daemon = Daemon(loaded, extensions)
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()
