"""The daemon loads the libraries of the features its config uses, not every one it could use:
the Redis client (about 6 MB of modules) only for `cache.backend: redis`, the simulator (its fake
NVML) only for `sampling.gpu: simulated`. Measured in a fresh interpreter: the test process itself
imports everything."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

STARTS = """
import asyncio, json, sys
from lmwatch.config import load_config
from lmwatch.daemon import running_daemon

async def main() -> None:
    async with running_daemon(load_config(sys.argv[1], env={})):
        print(json.dumps(sorted({m.split(".")[0] for m in sys.modules} | set(sys.modules))))

asyncio.run(main())
"""


def loaded_modules(tmp_path: Path, body: str) -> set[str]:
    config = tmp_path / "lmwatch.yaml"
    config.write_text(f"server: {{host: 127.0.0.1, port: 0}}\nstate_dir: {tmp_path / 'state'}\nbackends: []\n" + body)
    done = subprocess.run([sys.executable, "-c", STARTS, str(config)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


@pytest.mark.parametrize(
    ("body", "loaded", "not_loaded"),
    [
        ("cache: {enabled: true}\n", set(), {"redis", "lmwatch.simulator", "lmwatch.cache.redis_store"}),
        ("cache: {enabled: true, backend: redis, url: 'redis://127.0.0.1:1'}\n", {"redis"}, {"lmwatch.simulator"}),
        ("sampling: {gpu: simulated}\n", {"lmwatch.simulator"}, {"redis"}),
    ],
)
def test_a_feature_s_library_is_loaded_when_configured(
    tmp_path: Path, body: str, loaded: set[str], not_loaded: set[str]
) -> None:
    modules = loaded_modules(tmp_path, body)
    assert loaded <= modules
    assert not (not_loaded & modules)
