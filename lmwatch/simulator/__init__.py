"""A simulated LM Studio server (0.3 or 0.4) or plain OpenAI-compatible server, with no GPU.

It serves LM Studio's HTTP surfaces with their real shapes and quirks, deterministic output,
configurable latency and injected faults. Three uses: trying lmwatch configs, dashboards and alerts
without hardware (`lmwatch simulate`), the test fixture for the rest of lmwatch, and the upstream of
benchmarks (the zero-delay path does no sleeping and little work per request).

    sim = await start_simulator(SimSettings(ttft=0.2), port=0)
    ...  # talk to sim.url; look at sim.state.stats; change sim.state.settings live
    await sim.stop()
"""

from lmwatch.simulator.catalogue import Catalogue, Instance
from lmwatch.simulator.server import RunningSimulator, start_simulator
from lmwatch.simulator.settings import SimModel, SimSettings
from lmwatch.simulator.state import SimState
from lmwatch.simulator.stats import SimStats

__all__ = [
    "Catalogue",
    "Instance",
    "RunningSimulator",
    "SimModel",
    "SimSettings",
    "SimState",
    "SimStats",
    "start_simulator",
]
