"""The control plane's families: client requests, admin actions, reloads, backend files, audit writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from lmwatch.discovery import BackendFile
from lmwatch.metrics.family import Family
from lmwatch.metrics.tally import CounterTally

CLIENT_REQUESTS = Family(
    "lmwatch_client_requests",
    "counter",
    "Requests on /v1 by client key name (`anonymous` when no key identifies the request) and HTTP status.",
    ("key_name", "code"),
)
ADMIN_ACTIONS = Family(
    "lmwatch_admin_actions",
    "counter",
    "Control actions (admin API, signals) by action and result.",
    ("action", "result"),
)
RELOADS = Family("lmwatch_config_reloads", "counter", "Config reloads by result (success, failure).", ("result",))
RELOAD_OK = Family(
    "lmwatch_config_last_reload_successful", "gauge", "1 when the last config reload succeeded (or none was tried)."
)
RELOAD_TIME = Family(
    "lmwatch_config_last_reload_success_timestamp_seconds",
    "gauge",
    "Unix time of the last successful config load (start or reload).",
)
FILE_VALID = Family(
    "lmwatch_backend_file_valid",
    "gauge",
    "1 when the backend file is in force as it is now; 0 when it is broken or clashes (see /status).",
    ("file",),
)
FILE_BACKENDS = Family("lmwatch_backend_file_backends", "gauge", "Backends a backend file contributes.", ("file",))
AUDIT_FAILURES = Family(
    "lmwatch_audit_write_failures",
    "counter",
    "Audit lines that could not be written (disk full, no permission) or were dropped (the disk fell behind).",
)


class ControlMetrics(Collector):
    """The instruments, and the backend-file and audit families read at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.client_requests = CounterTally(CLIENT_REQUESTS)  # every /v1 request: a dict add
        registry.register(self.client_requests)
        self.admin_actions = ADMIN_ACTIONS.counter(registry)
        self.reloads = RELOADS.counter(registry)
        self.reload_ok = RELOAD_OK.gauge(registry)
        self.reload_time = RELOAD_TIME.gauge(registry)
        self.reload_ok.set(1)
        self.files: Callable[[], Mapping[str, BackendFile]] = dict
        """The backend files and their state (the control plane sets it when it starts)."""
        self.audit_failures: Callable[[], int] = lambda: 0

    def describe(self) -> Iterable[Metric]:
        return [FILE_VALID.new(), FILE_BACKENDS.new(), AUDIT_FAILURES.new()]

    def collect(self) -> Iterable[Metric]:
        valid, count = FILE_VALID.new(), FILE_BACKENDS.new()
        for path, file in sorted(self.files().items()):
            FILE_VALID.add(valid, (path,), 1.0 if file.valid else 0.0)
            FILE_BACKENDS.add(count, (path,), 0.0 if file.clash else float(len(file.good or ())))
        return [valid, count, AUDIT_FAILURES.value(float(self.audit_failures()))]
