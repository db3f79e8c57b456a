"""The client connections' family."""

from __future__ import annotations

from lmwatch.metrics.family import Family

CONNECTION_ERRORS = Family(
    "lmwatch_client_connection_errors",
    "counter",
    "Client connections refused or closed by lmwatch, by reason: malformed_request (a request line "
    "or header that cannot be parsed), header_timeout and body_timeout (a client too slow to send "
    "its request), accept (the host could not accept a connection, e.g. out of file descriptors).",
    ("reason",),
)
