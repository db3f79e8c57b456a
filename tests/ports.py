"""Free loopback ports for the servers a test starts in another process (Prometheus, Redis, the
engine, the demo), which cannot be handed a listening socket."""

from __future__ import annotations

import random
import socket


def free_port() -> int:
    """A port the kernel just handed out and released: free now, and unlikely to be reused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_port_run(count: int) -> int:
    """The first of `count` consecutive free loopback ports, from a random start (parallel runs of the
    suite on one machine would otherwise race for the same ports)."""
    for _ in range(200):
        base = random.randrange(20000, 60000)
        try:
            socks = [socket.create_server(("127.0.0.1", base + i)) for i in range(count)]
        except OSError:
            continue
        for sock in socks:
            sock.close()
        return base
    raise RuntimeError("no free port range")
