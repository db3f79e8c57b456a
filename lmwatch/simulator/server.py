"""Starting and stopping a simulator inside a running event loop (tests, benchmarks, the CLI)."""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from lmwatch.simulator.app import build_app
from lmwatch.simulator.settings import SimSettings
from lmwatch.simulator.state import SimState


@dataclass
class RunningSimulator:
    """A simulator listening on `url`. `state` is live: inspect or change it while it runs."""

    host: str
    port: int
    state: SimState
    _runner: web.AppRunner
    _stopped: bool = False

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def settings(self) -> SimSettings:
        return self.state.settings

    async def stop(self) -> None:
        """Stop listening; requests still running (slow or stalled streams) are cut after a short grace.

        Safe to call more than once.
        """
        if self._stopped:
            return
        self._stopped = True
        await self.state.catalogue.close()
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSimulator:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def start_simulator(
    settings: SimSettings | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    shutdown_timeout: float = 0.5,
) -> RunningSimulator:
    """Serve a simulated LM Studio (or plain OpenAI-compatible server) on `host:port`.

    `port=0` picks a free port (read it back from `.port` / `.url`). Handlers are cancelled when
    their client disconnects (aiohttp `handler_cancellation`), which is how the simulator notices
    an abandoned generation, as LM Studio does.
    """
    state = SimState(settings or SimSettings())
    runner = web.AppRunner(
        build_app(state), handler_cancellation=True, access_log=None, shutdown_timeout=shutdown_timeout
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    bound = runner.addresses[0]
    return RunningSimulator(host=host, port=int(bound[1]), state=state, _runner=runner)
