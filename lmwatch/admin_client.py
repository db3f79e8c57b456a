"""The operator side's client of a running daemon: one call to its `/admin` API (errors turned into one
line for the operator), and the plain tables the commands print. Used by `lmwatch status` and its
siblings (lmwatch/control_cli.py) and by `lmwatch top` (lmwatch/top.py).
"""

from __future__ import annotations

import argparse
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

from lmwatch.config import DEFAULT_PORT

DEFAULT_URL = f"http://127.0.0.1:{DEFAULT_PORT}"
URL_ENV = "LMWATCH_URL"
TOKEN_ENV = "LMWATCH_ADMIN_TOKEN"


class CliError(Exception):
    """One line for the operator; the command exits 1."""

    def __init__(self, message: str, details: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)


# --- HTTP ----------------------------------------------------------------------------------------


def call(args: argparse.Namespace, method: str, path: str, body: Any = None) -> Any:
    """One request to the daemon; the parsed JSON answer, or CliError with a clear message."""
    url = args.url.rstrip("/")
    headers = {"Accept": "application/json"}
    if args.token:
        headers["Authorization"] = f"Bearer {args.token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise _http_error(exc, url) from None
    except TimeoutError:
        raise CliError(f"the daemon at {url} did not answer within {args.timeout:g} s") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CliError(
            f"no lmwatch daemon answers at {url} ({_reason(reason)}); start one with `lmwatch run --config FILE` "
            f"or point --url / {URL_ENV} at it"
        ) from None
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        raise CliError(f"{url} answered with something that is not JSON; is it an lmwatch daemon?") from None


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, socket.gaierror):
        return "unknown host"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    return str(reason)


def _http_error(exc: urllib.error.HTTPError, url: str) -> CliError:
    try:
        body = json.loads(exc.read() or b"null")
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    problems = body.get("problems", []) if isinstance(body, dict) else []
    if exc.code == 401:
        if code == "missing_admin_token":
            return CliError(f"the daemon at {url} needs its admin token: pass --token or set {TOKEN_ENV}")
        return CliError(f"the daemon at {url} refused the admin token (wrong token); check --token / {TOKEN_ENV}")
    if exc.code == 403:
        return CliError(message or f"the daemon at {url} refused access (HTTP 403)")
    if exc.code == 404 and message is None:
        return CliError(f"{url} has no admin API (HTTP 404); is it an lmwatch daemon?")
    if problems:
        head = message.split(": ", 1)[0] if message else f"HTTP {exc.code}"
        return CliError(head, [str(p) for p in problems])
    return CliError(message or f"HTTP {exc.code} from {url}")


# --- output --------------------------------------------------------------------------------------


def table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    return "\n".join(lines)


def short(items: Sequence[str], limit: int = 60) -> str:
    text = ", ".join(items)
    if len(text) <= limit:
        return text or "-"
    shown: list[str] = []
    for item in items:
        if len(", ".join([*shown, item])) > limit - 6:
            break
        shown.append(item)
    return ", ".join(shown) + f", +{len(items) - len(shown)}"
