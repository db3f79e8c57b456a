"""systemd's notify protocol (sd_notify) with the standard library only.

The protocol is the API: one datagram of newline-separated `KEY=VALUE` lines to the AF_UNIX socket
named in `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace), so neither libsystemd nor a
package is needed. Outside systemd (`$NOTIFY_SOCKET` unset) every call is a no-op returning False,
which lets the daemon call these unconditionally.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("lmwatch.sdnotify")


def notify(*lines: str) -> bool:
    """Send `lines` as one notification; True if it was delivered to a socket.

    The socket is non-blocking: the callers run on the event loop, and a notification systemd
    cannot take right now is better lost (it says so in the log) than a loop that stalls on it.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    elif not address.startswith("/"):
        log.warning("NOTIFY_SOCKET=%s is neither a path nor an abstract socket; not notifying", address)
        return False
    payload = "\n".join(lines).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", lines[0] if lines else "", exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings (half of `$WATCHDOG_USEC`, as systemd recommends).

    None when no watchdog is configured for this process: `$WATCHDOG_PID`, when set, names the
    process the watchdog is for, which a child that inherited the environment is not.
    """
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    try:
        if pid and int(pid) != os.getpid():
            return None
        value = int(usec) if usec else 0
    except ValueError:
        return None
    return value / 2_000_000 if value > 0 else None


def _one_line(text: str) -> str:
    """A newline would start a new KEY=VALUE assignment, so status texts are kept on one line."""
    return " ".join(text.split())


def notify_ready(status: str) -> bool:
    """Startup (or a reload) is complete; `status` shows in `systemctl status`."""
    return notify("READY=1", f"STATUS={_one_line(status)}")


def notify_reloading() -> bool:
    """A reload has begun; systemd ≥ 253 waits for the following READY=1, older ones ignore it.

    MONOTONIC_USEC must be CLOCK_MONOTONIC, which systemd uses to match the reload to its request.
    """
    now_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    return notify("RELOADING=1", f"MONOTONIC_USEC={now_usec}")


def notify_stopping() -> bool:
    """Shutdown has begun, so systemd reports `deactivating` rather than a stall."""
    return notify("STOPPING=1")


def notify_watchdog() -> bool:
    """The heartbeat: the caller proves by sending it that its event loop is still turning."""
    return notify("WATCHDOG=1")
