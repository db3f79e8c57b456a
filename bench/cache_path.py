"""What the response cache adds to a request on the event loop, measured in-process (no HTTP, no wrk):
the key (a digest of the body), the lookup, and on a miss handing the answer to the batched write.

wrk's p50s on this shared 2-CPU machine move by more than the 0.1 ms the miss may add (bench/run.py
`--cache-only`), so this measures the cache's own part alone: the SQLite store in a scratch file,
new temperature-0 bodies (misses), then the same bodies again (hits), one at a time with a short
pause between (as a request at concurrency 1 leaves the loop idle between lookups).

    .venv/bin/python -m bench.cache_path [--requests 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry

from bench.run import machine
from lmwatch import event_loop
from lmwatch.cache.keys import response_key
from lmwatch.cache.response import Entry
from lmwatch.cache.service import Cache
from lmwatch.config import CacheConfig
from lmwatch.metrics.cache import CacheMetrics

ANSWER = Entry("sim", "bench-llm", "chat", False, 12, 40, b'{"choices": []}' + b" " * 400)


def request(n: int) -> tuple[bytes, dict[str, object]]:
    """A body as bench/cache_miss.lua sends it, and as parsed (the parse is not the cache's)."""
    raw = b'{"model":"bench-llm","temperature":0,"messages":[{"role":"user","content":"hello %d"}]}' % n
    return raw, json.loads(raw)


async def run(requests: int) -> dict[str, list[float]]:
    with tempfile.TemporaryDirectory(prefix="lmwatch-bench-cache-path-") as state:
        cache = Cache(CacheMetrics(CollectorRegistry()))
        cache.configure(CacheConfig(enabled=True), Path(state) / "cache.sqlite")
        await cache.opened()
        times: dict[str, list[float]] = {"miss": [], "hit": []}
        for kind in ("miss", "hit"):
            for n in range(requests):
                raw, body = request(n)
                started = time.perf_counter()
                key = response_key("chat", ["bench-llm"], body, raw, False, False)
                found = await cache.get_many([key])
                assert found is not None and (found[0] is None) == (kind == "miss"), kind
                if kind == "miss":
                    cache.put_many([(key, ANSWER)])  # encoded with its batch
                times[kind].append(time.perf_counter() - started)
                await asyncio.sleep(0.0005)
            await cache.settled()
        await cache.close()
        return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    args = parser.parse_args()
    times = event_loop.run(run(args.requests))
    print(machine())
    print("| path | p50 (µs) | p90 (µs) |\n|---|---|---|")
    for kind, values in times.items():
        cuts = statistics.quantiles(values, n=10)
        print(f"| cache {kind} | {statistics.median(values) * 1e6:.1f} | {cuts[8] * 1e6:.1f} |")


if __name__ == "__main__":
    main()
