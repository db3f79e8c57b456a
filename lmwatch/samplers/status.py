"""The host-pressure part of `/status`: what routing reads, in JSON-ready form."""

from __future__ import annotations

import dataclasses
from typing import Any

from lmwatch.registry import Snapshot


def host_status(snapshot: Snapshot) -> dict[str, Any]:
    """CPU load, memory and per-GPU free memory, GPU memory per backend, and collector health."""
    host = snapshot.host
    return {
        "cpu_load_ratio": host.cpu_load_ratio,
        "memory_total_bytes": host.memory_total_bytes,
        "memory_available_bytes": host.memory_available_bytes,
        "gpus": [dataclasses.asdict(gpu) for gpu in host.gpus],
        "backend_gpu_memory_bytes": dict(host.backend_gpu_memory_bytes),
        "collectors": {
            name: {
                "success": status.success,
                "duration_seconds": status.duration,
                "last_success": status.last_success,
                "error": status.error,
            }
            for name, status in sorted(snapshot.collectors.items())
        },
    }
