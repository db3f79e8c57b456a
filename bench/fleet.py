"""Many simulated servers in one process, for the scrape-stall benchmark: `python bench/fleet.py N PORTFILE`.

Each simulator is an LM Studio 0.4 with zero delay and a typical model list (three LLMs and an
embedding model, all loaded), so the daemon's registry and /metrics grow as with N real servers.
The ports are written one per line to PORTFILE once every server listens; SIGTERM stops them.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from lmwatch.simulator import SimModel, SimSettings, start_simulator

MODELS = [
    SimModel(id="bench-llm"),
    SimModel(id="qwen2.5-7b-instruct", arch="qwen2"),
    SimModel(id="google/gemma-3-4b", type="vlm", arch="gemma3"),
    SimModel(id="text-embedding-nomic-embed-text-v1.5", type="embeddings", arch="nomic-bert", size_bytes=84_106_624),
]


async def serve(count: int, port_file: Path) -> None:
    sims = [await start_simulator(SimSettings(models=list(MODELS), parallel=64), port=0) for _ in range(count)]
    await asyncio.to_thread(port_file.write_text, "".join(f"{sim.port}\n" for sim in sims))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    for sim in sims:
        await sim.stop()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), Path(sys.argv[2])))
