"""The processes that serve local backends (LM Studio, llmster, llama-server, anything).

For every backend whose URL points at this host, the process listening on its port is found from
the socket table, and that process with its descendants (LM Studio runs models in child processes)
is measured: resident memory, CPU seconds, threads. Series are labelled by backend, never by PID.

Finding the owner of a socket is the expensive part (psutil walks every process's descriptors), so
the owner of each port is cached and only re-checked against the socket table every
`rescan_interval` seconds, or at once when the cached process dies. A process that belongs to
another user cannot be identified without privileges: that gap is a metric and one log line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import psutil
from prometheus_client.metrics_core import Metric

from lmwatch.metrics.family import Family
from lmwatch.metrics.telemetry import (
    PROCESS,
    PROCESS_COUNT,
    PROCESS_CPU,
    PROCESS_RSS,
    PROCESS_START,
    PROCESS_THREADS,
    PROCESS_VISIBLE,
)
from lmwatch.metrics.text import sample_line
from lmwatch.registry import Snapshot
from lmwatch.samplers.base import OnceLog, Sampler

log = logging.getLogger("lmwatch.samplers.process")

_RESOLVE_TTL = 600.0
"""Seconds a backend host name's addresses are trusted before they are looked up again."""


class Visibility(StrEnum):
    VISIBLE = "visible"  # found and measured
    NOT_LISTENING = "not_listening"  # nothing listens on the port
    HIDDEN = "hidden"  # something listens, but its process cannot be seen (another user's)
    DENIED = "denied"  # the OS refused to list sockets at all


@dataclass(frozen=True)
class BackendProcess:
    """What was measured for one local backend."""

    backend: str
    port: int
    visibility: Visibility
    pid: int | None = None
    """The listening process (for logs and GPU attribution; never a label)."""
    pids: tuple[int, ...] = ()
    """The listening process and its descendants."""
    name: str | None = None
    resident_memory_bytes: int = 0
    cpu_seconds: Mapping[str, float] = field(default_factory=dict)
    """CPU seconds (`user`, `system`) of the process tree; monotonic even as children come and go."""
    threads: int = 0
    start_time_seconds: float | None = None

    @property
    def visible(self) -> bool:
        return self.visibility is Visibility.VISIBLE


@dataclass(frozen=True)
class ProcessSample:
    backends: tuple[BackendProcess, ...]
    backend_pids: Mapping[int, str]
    """Every PID of every measured process tree -> its backend (used to attribute GPU memory)."""
    lines: Mapping[str, str] = field(init=False, repr=False, compare=False)
    """Family name -> its sample lines (the text both exposition formats share), rendered with the
    sample, in the sampler's worker thread: a scrape only adds the headers. Rendered at the scrape,
    300 backends' lines held the event loop for 7-12 ms in one piece."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "lines", _lines(self.backends))

    def main_pids(self) -> dict[str, int]:
        """Backend -> the PID listening on its port, for the backends that were found."""
        return {b.backend: b.pid for b in self.backends if b.pid is not None}


def _last_sample(snapshot: Snapshot) -> ProcessSample | None:
    """The process sampler's last sample in `snapshot`: what the GPU samplers attribute memory by."""
    status = snapshot.collectors.get(ProcessSampler.name)
    sample = status.sample if status is not None else None
    return sample if isinstance(sample, ProcessSample) else None


def backend_pids(snapshot: Snapshot) -> Mapping[int, str]:
    """PID -> backend from the process sampler's last sample in `snapshot` (empty if none)."""
    sample = _last_sample(snapshot)
    return sample.backend_pids if sample is not None else {}


def main_pids(snapshot: Snapshot) -> dict[str, int]:
    """Backend -> its listening PID from the last process sample (empty if none)."""
    sample = _last_sample(snapshot)
    return sample.main_pids() if sample is not None else {}


ConnectionLister = Callable[[], Sequence[Any]]
"""Returns psutil-style connections (`.laddr.ip`, `.laddr.port`, `.status`, `.pid`)."""


@dataclass
class _Owner:
    process: psutil.Process
    name: str | None


@dataclass
class _CpuAccount:
    """Turns the CPU times of a changing set of processes into monotonic counters."""

    user: float = 0.0
    system: float = 0.0
    seen: dict[tuple[int, float], tuple[float, float]] = field(default_factory=dict)

    def update(self, readings: dict[tuple[int, float], tuple[float, float]]) -> None:
        for key, (user, system) in readings.items():
            last_user, last_system = self.seen.get(key, (0.0, 0.0))
            self.user += max(0.0, user - last_user)
            self.system += max(0.0, system - last_system)
        self.seen = readings


def _tcp_connections() -> Sequence[Any]:
    return psutil.net_connections(kind="tcp")


class _Family:
    """Who is whose child, read once per sample: one pass over the process table for every backend.

    psutil's `Process.children()` reads every process's parent on each call, so with many local
    backends it was the sampler's (and, through the GIL, the daemon's) largest cost.
    """

    def __init__(self) -> None:
        self._children: dict[int, list[psutil.Process]] = {}
        for proc in psutil.process_iter(["ppid"]):
            ppid = proc.info.get("ppid")
            if ppid is not None and ppid != proc.pid:
                self._children.setdefault(ppid, []).append(proc)

    def descendants(self, pid: int) -> list[psutil.Process]:
        found: list[psutil.Process] = []
        todo = [pid]
        while todo:
            kids = self._children.get(todo.pop(), [])
            found.extend(kids)
            todo.extend(kid.pid for kid in kids)
        return found


@dataclass(frozen=True)
class _Tree:
    """One reading of a process and its descendants."""

    rss: int
    threads: int
    start: float | None
    readings: dict[tuple[int, float], tuple[float, float]]
    """(pid, create time) -> (user, system) CPU seconds, for `_CpuAccount`."""
    pids: tuple[int, ...]


def _read_tree(main: psutil.Process, family: _Family) -> _Tree | None:
    """Memory, CPU and threads of `main` and its descendants; None when `main` is gone."""
    rss = threads = 0
    start: float | None = None
    readings: dict[tuple[int, float], tuple[float, float]] = {}
    pids: list[int] = []
    for proc in [main, *family.descendants(main.pid)]:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                threads += proc.num_threads()
                cpu = proc.cpu_times()
                created = proc.create_time()
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            if proc is main:
                return None
            continue
        readings[(proc.pid, created)] = (cpu.user, cpu.system)
        pids.append(proc.pid)
        if proc is main:
            start = created
    return _Tree(rss, threads, start, readings, tuple(pids))


class ProcessSampler(Sampler):
    name = "process"
    declared = PROCESS

    def __init__(
        self,
        interval: float = 5.0,
        rescan_interval: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        net_connections: ConnectionLister = _tcp_connections,
    ) -> None:
        self.interval = interval
        self.rescan_interval = rescan_interval
        self._clock = clock
        self._net_connections = net_connections
        self._owners: dict[int, _Owner] = {}
        self._port_state: dict[int, Visibility] = {}
        self._scanned: set[int] = set()
        """Ports the last scan answered for; a port not in it is scanned at the next sample."""
        self._last_scan: float | None = None
        self._cpu: dict[str, _CpuAccount] = {}
        self._resolved: dict[str, tuple[float, frozenset[str]]] = {}
        self._targets: dict[str, tuple[float, tuple[int, frozenset[str]] | None]] = {}
        """Backend URL -> (when, `_local_target`'s answer)."""
        self._interfaces: tuple[float, frozenset[str]] | None = None
        self._gaps = OnceLog(log)

    # --- sampling --------------------------------------------------------------------------------

    def sample(self, snapshot: Snapshot) -> ProcessSample:
        targets: dict[str, tuple[int, frozenset[str]]] = {}
        urls = {info.url for info in snapshot.backends.values()}
        for url in set(self._targets) - urls:  # a backend removed or moved
            del self._targets[url]
        for info in snapshot.backends.values():
            target = self._local_target(info.url)
            if target is not None:
                targets[info.name] = target
        self._refresh_owners(targets)
        results: list[BackendProcess] = []
        pids: dict[int, str] = {}
        family = _Family() if self._owners else None
        trees: dict[int, _Tree | None] = {}
        for name, (port, _) in sorted(targets.items()):
            result = self._measure(name, port, family, trees)
            results.append(result)
            for pid in result.pids:
                pids.setdefault(pid, name)
            self._report(result)
        for name in set(self._cpu) - set(targets):
            del self._cpu[name]
        self._gaps.keep_only(targets)
        return ProcessSample(backends=tuple(results), backend_pids=MappingProxyType(pids))

    def _refresh_owners(self, targets: Mapping[str, tuple[int, frozenset[str]]]) -> None:
        """Drop owners that died or whose backend went away; scan only when due or a port is new."""
        ports: dict[int, frozenset[str]] = {}
        for port, addresses in targets.values():
            ports[port] = ports.get(port, frozenset()) | addresses
        running: dict[int, bool] = {}  # several backends served by one process: asked once
        for port, owner in list(self._owners.items()):
            pid = owner.process.pid
            if pid not in running:
                running[pid] = owner.process.is_running()
            if port not in ports or not running[pid]:
                self._forget_owner(port)  # its process died: look again now
        for port in list(self._port_state):
            if port not in ports:
                del self._port_state[port]
                self._scanned.discard(port)
        now = self._clock()
        due = self._last_scan is None or now - self._last_scan >= self.rescan_interval
        if ports and (due or any(p not in self._scanned for p in ports)):
            self._scan(ports)
            self._last_scan = now

    def _scan(self, ports: Mapping[int, frozenset[str]]) -> None:
        """Find who listens on each port from the socket table (the expensive call)."""
        self._scanned = set(ports)
        try:
            connections = self._net_connections()
        except (psutil.AccessDenied, PermissionError):  # macOS without root; hidepid=2 on Linux
            for port in ports:
                self._owners.pop(port, None)
                self._port_state[port] = Visibility.DENIED
            return
        listening: dict[int, list[tuple[str, int | None]]] = {}
        for conn in connections:
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                listening.setdefault(conn.laddr.port, []).append((conn.laddr.ip, conn.pid))
        for port, addresses in ports.items():
            candidates = listening.get(port, [])
            preferred = [c for c in candidates if c[0] in addresses or _unspecified(c[0])] or candidates
            pid = next((p for _, p in preferred if p is not None), None)
            owner = _owner(pid) if pid is not None else None
            if owner is not None:
                self._owners[port] = owner
                self._port_state[port] = Visibility.VISIBLE
            else:
                self._owners.pop(port, None)
                self._port_state[port] = Visibility.HIDDEN if candidates else Visibility.NOT_LISTENING

    def _forget_owner(self, port: int) -> None:
        """The cached owner of `port` is gone (or no longer wanted): the next sample scans for it."""
        del self._owners[port]
        self._scanned.discard(port)

    def _measure(
        self, backend: str, port: int, family: _Family | None, trees: dict[int, _Tree | None]
    ) -> BackendProcess:
        """Memory, CPU and threads of the process tree listening on `port`, as of now; a tree that
        serves several backends is read once per sample (`trees`, by its main PID)."""
        owner = self._owners.get(port)
        if owner is None or family is None:
            return BackendProcess(backend, port, self._port_state.get(port, Visibility.NOT_LISTENING))
        main = owner.process
        if main.pid not in trees:
            trees[main.pid] = _read_tree(main, family)
        tree = trees[main.pid]
        if tree is None:
            self._forget_owner(port)
            return BackendProcess(backend, port, Visibility.NOT_LISTENING)
        account = self._cpu.setdefault(backend, _CpuAccount())
        account.update(tree.readings)
        return BackendProcess(
            backend=backend,
            port=port,
            visibility=Visibility.VISIBLE,
            pid=main.pid,
            pids=tree.pids,
            name=owner.name,
            resident_memory_bytes=tree.rss,
            cpu_seconds=MappingProxyType({"user": account.user, "system": account.system}),
            threads=tree.threads,
            start_time_seconds=tree.start,
        )

    def _report(self, result: BackendProcess) -> None:
        """Log what was found for a backend once, and again only when it changes (a new PID, a gap)."""
        key = result.backend
        if result.visibility is Visibility.VISIBLE:
            self._gaps.problem(
                key,
                f"visible:{result.pid}",
                logging.INFO,
                "backend %s is served by process %s (pid %s) listening on port %d",
                key,
                result.name or "?",
                result.pid,
                result.port,
            )
        elif result.visibility is Visibility.HIDDEN:
            self._gaps.problem(
                key,
                result.visibility.value,
                logging.WARNING,
                "backend %s: a process listens on port %d but lmwatch (uid %s) may not see which (it "
                "belongs to another user or PID namespace); run lmwatch as that user, or with "
                "CAP_SYS_PTRACE, to get its process metrics",
                key,
                result.port,
                _uid(),
            )
        elif result.visibility is Visibility.DENIED:
            self._gaps.problem(
                key,
                result.visibility.value,
                logging.WARNING,
                "backend %s: the system denied lmwatch the list of sockets, so the process on port %d "
                "cannot be found; run lmwatch with more privileges to get its process metrics",
                key,
                result.port,
            )
        else:
            self._gaps.problem(
                key,
                result.visibility.value,
                logging.INFO,
                "backend %s: no process listens on port %d on this host; no process metrics for it",
                key,
                result.port,
            )

    # --- which backends are local ----------------------------------------------------------------

    def _local_target(self, url: str) -> tuple[int, frozenset[str]] | None:
        """(port, addresses) when `url` points at this host; None for a remote backend (nothing to
        measure). Worked out again every `rescan_interval` seconds (addresses and interfaces change
        that slowly), not at every sample: for hundreds of backends it was a third of a sample."""
        now = self._clock()
        kept = self._targets.get(url)
        if kept is None or now - kept[0] >= self.rescan_interval:
            kept = self._targets[url] = (now, self._find_local_target(url))
        return kept[1]

    def _find_local_target(self, url: str) -> tuple[int, frozenset[str]] | None:
        try:
            parts = urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return None
        host = parts.hostname
        if not host:
            return None
        addresses = self._addresses(host)
        interfaces = self._interface_addresses()
        if any(_is_local(a, interfaces) for a in addresses):
            return port, addresses
        return None

    def _addresses(self, host: str) -> frozenset[str]:
        """The IP addresses of `host`, looked up at most every `_RESOLVE_TTL` s (DNS can be slow)."""
        try:
            return frozenset({str(ipaddress.ip_address(host))})
        except ValueError:
            pass
        if host == "localhost" or host.endswith(".localhost"):
            return frozenset({"127.0.0.1", "::1"})
        now = self._clock()
        cached = self._resolved.get(host)
        if cached is not None and now - cached[0] < _RESOLVE_TTL:
            return cached[1]
        hostname = socket.gethostname()
        if host in (hostname, hostname.split(".")[0]):
            found = self._interface_addresses() | {"127.0.0.1"}
        else:
            try:
                found = frozenset(str(info[4][0]).split("%")[0] for info in socket.getaddrinfo(host, None))
            except (OSError, UnicodeError):
                found = frozenset()
        self._resolved[host] = (now, found)
        return found

    def _interface_addresses(self) -> frozenset[str]:
        now = self._clock()
        if self._interfaces is None or now - self._interfaces[0] >= self.rescan_interval:
            found = frozenset(
                addr.address.split("%")[0]
                for addrs in psutil.net_if_addrs().values()
                for addr in addrs
                if addr.family in (socket.AF_INET, socket.AF_INET6)
            )
            self._interfaces = (now, found)
        return self._interfaces[1]

    # --- metrics ---------------------------------------------------------------------------------

    def families(self, sample: ProcessSample) -> Iterable[Metric]:
        metrics = {family.name: family.new() for family in PROCESS}
        for b in sample.backends:
            for family, labels, value in _rows(b):
                family.add(metrics[family.name], labels, value)
        return list(metrics.values())

    def lines(self, sample: ProcessSample) -> Mapping[str, str]:
        return sample.lines


def _rows(b: BackendProcess) -> Iterator[tuple[Family, tuple[str, ...], float]]:
    """One backend's series: (family, label values, value)."""
    yield PROCESS_VISIBLE, (b.backend,), 1.0 if b.visible else 0.0
    if not b.visible:
        return
    yield PROCESS_RSS, (b.backend,), b.resident_memory_bytes
    for mode, seconds in b.cpu_seconds.items():
        yield PROCESS_CPU, (b.backend, mode), seconds
    yield PROCESS_THREADS, (b.backend,), b.threads
    yield PROCESS_COUNT, (b.backend,), len(b.pids)
    if b.start_time_seconds is not None:
        yield PROCESS_START, (b.backend,), b.start_time_seconds


def _lines(backends: Iterable[BackendProcess]) -> Mapping[str, str]:
    lines: dict[str, list[str]] = {}
    for b in backends:
        for family, labels, value in _rows(b):
            names = dict(zip(family.labels, labels, strict=True))
            lines.setdefault(family.name, []).append(sample_line(family.sample_name, names, value))
    return MappingProxyType({name: "".join(text) for name, text in lines.items()})


def _owner(pid: int) -> _Owner | None:
    try:
        process = psutil.Process(pid)
    except psutil.Error:
        return None
    try:
        name: str | None = process.name()
    except psutil.Error:
        name = None
    return _Owner(process, name)


def _unspecified(ip: str) -> bool:
    return ip in ("0.0.0.0", "::", "")


def _is_local(address: str, interfaces: frozenset[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback or ip.is_unspecified or str(ip) in interfaces


def _uid() -> int | str:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else "?"
