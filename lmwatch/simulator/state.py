"""The live state of one running simulator: settings, catalogue, counters and the fault RNG.

Exposed as `RunningSimulator.state` so tests can look inside and change things directly (load or
unload a model, flip `settings.jit`, read `stats.queued`) without going through HTTP.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from lmwatch.simulator.catalogue import Catalogue
from lmwatch.simulator.inference import Ids
from lmwatch.simulator.settings import SimSettings
from lmwatch.simulator.stats import SimStats


class SimState:
    def __init__(self, settings: SimSettings) -> None:
        self.settings = settings
        self.stats = SimStats()
        self.catalogue = Catalogue(settings, self.stats)
        self.rng = random.Random(settings.seed)
        self.ids = Ids()

    def roll(self, rate: float) -> bool:
        """True with probability `rate`; draws from the seeded RNG only for 0 < rate < 1, so fault
        sequences are reproducible for a given seed and rates, and the no-fault path costs nothing."""
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        return self.rng.random() < rate

    def configure(self, changes: Mapping[str, object]) -> None:
        """Apply live knob changes (see `SimSettings.apply`); raises `ValueError` on a bad change."""
        self.settings.apply(changes)
        if "seed" in changes:
            self.rng.seed(self.settings.seed)
        if "parallel" in changes:
            self.catalogue.set_parallel(self.settings.parallel)

    def snapshot(self) -> dict[str, object]:
        """`GET /__sim/stats`: the counters plus a per-instance view of slots and queues."""
        data = self.stats.as_json()
        data["instances"] = {
            inst.id: {
                "model": inst.model.id,
                "jit": inst.jit,
                "parallel": inst.parallel,
                "active": inst.gate.active,
                "queued": inst.gate.queued,
                "memory_bytes": inst.memory_bytes,
            }
            for inst in self.catalogue.instances.values()
        }
        data["memory"] = {"budget_bytes": self.settings.memory_bytes, "used_bytes": self.catalogue.memory_used()}
        return data
