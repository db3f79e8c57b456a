"""The credentials lmwatch checks: the admin token for `/admin`, client API keys for `/v1`.

Two credentials that never mix. The admin token comes from `LMWATCH_ADMIN_TOKEN` or `admin.token_file`;
without one, `/admin` answers loopback clients only. Client keys come from environment variables or
files (never from the config file itself); each has a name, optional allowed models and tasks, a
local-only flag and an optional requests-per-minute limit. Secrets are kept as SHA-256 digests and
compared in constant time (`hmac.compare_digest`, every key checked), and are named in metrics, logs
and the audit log by their key NAME only.

The control plane reads them on every reload and holds them here; the HTTP layer (lmwatch/api/auth.py)
takes a credential from a request, asks these objects, and answers 401/403/429.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import ipaddress
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import yaml
from pydantic import Field, ValidationError

from lmwatch.config import (
    MIN_SECRET_CHARS,
    AdminConfig,
    ClientKeyConfig,
    ClientsConfig,
    Name,
    Strict,
    validation_problems,
)

ADMIN_TOKEN_ENV = "LMWATCH_ADMIN_TOKEN"
ANONYMOUS = "anonymous"
"""The `key_name` of requests no key identifies (keys off, or a missing or wrong key)."""


class SecretProblems(Exception):
    """Secrets that could not be read: `path: message` lines like config problems."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


# --- addresses -----------------------------------------------------------------------------------


def is_loopback(address: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback; False for anything else or unknown."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def host_is_loopback(host: str) -> bool:
    """Is a listen address (`server.host`) reachable from this machine only?"""
    return host.strip("[]").lower() == "localhost" or is_loopback(host.strip("[]"))


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _read_secret(path: Path) -> str:
    return path.read_text().strip()


def _too_short(what: str) -> str:
    return f"{what} is shorter than {MIN_SECRET_CHARS} characters (make one with `openssl rand -hex 24`)"


# --- the admin token -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AdminToken:
    digest: bytes
    source: str
    """Where it came from, for the start log (`LMWATCH_ADMIN_TOKEN` or the file path); never the token."""


def load_admin_token(admin: AdminConfig, env: Mapping[str, str]) -> tuple[AdminToken | None, str | None]:
    """The admin token (and the secret, to register for redaction) or (None, None) when none is set."""
    value = env.get(ADMIN_TOKEN_ENV, "").strip()
    if value:
        if len(value) < MIN_SECRET_CHARS:
            raise SecretProblems([f"{ADMIN_TOKEN_ENV}: {_too_short('the admin token')}"])
        return AdminToken(_digest(value), ADMIN_TOKEN_ENV), value
    if admin.token_file is None:
        return None, None
    try:
        value = _read_secret(admin.token_file)
    except OSError as exc:
        raise SecretProblems([f"admin.token_file: cannot read {admin.token_file}: {exc.strerror or exc}"]) from None
    if len(value) < MIN_SECRET_CHARS:
        raise SecretProblems([f"admin.token_file: {_too_short(f'the token in {admin.token_file}')}"])
    return AdminToken(_digest(value), str(admin.token_file)), value


class AdminAuth:
    """The admin token in force (None: loopback clients only); `token` is swapped on reload."""

    def __init__(self) -> None:
        self.token: AdminToken | None = None

    def accepts(self, presented: str) -> bool:
        """Is `presented` the admin token? (Constant time; False while no token is set.)"""
        return self.token is not None and hmac.compare_digest(_digest(presented), self.token.digest)


# --- client keys ---------------------------------------------------------------------------------


class ClientKeyFileEntry(Strict):
    """One entry of `clients.keys_file`: like `clients.keys[]`, with the key itself inline."""

    name: Name
    key: str = Field(min_length=MIN_SECRET_CHARS, repr=False)
    models: list[str] = Field(default_factory=list)
    tasks: list[str] = Field(default_factory=list)
    local_only: bool = False
    requests_per_minute: int | None = Field(None, ge=1)
    cache: bool = True


@dataclass(frozen=True)
class ClientKey:
    """A client key as the request path sees it: the name, the rules, and a digest (never the key)."""

    name: str
    digest: bytes = field(repr=False)
    models: tuple[str, ...] = ()
    tasks: tuple[str, ...] = ()
    local_only: bool = False
    requests_per_minute: int | None = None
    cache: bool = True

    def allows_model(self, model_id: str) -> bool:
        """Is `model_id` one the key may use? Matches the id, and the id without its publisher."""
        if not self.models:
            return True
        model = model_id.lower()
        ids = {model, model.split("/", 1)[-1]}
        return any(fnmatch.fnmatchcase(i, pattern.lower()) for pattern in self.models for i in ids)

    def allows_task(self, task: str) -> bool:
        """Is `task` one the key may be used for? (No tasks listed: any.)"""
        return not self.tasks or task in self.tasks


def load_client_keys(clients: ClientsConfig, env: Mapping[str, str]) -> tuple[list[ClientKey], list[str]]:
    """Read every client key (env, files, keys file): the keys and the secrets to redact."""
    problems: list[str] = []
    found: list[tuple[str, ClientKey, str]] = []  # (where, key, secret)
    for i, entry in enumerate(clients.keys):
        where = f"clients.keys[{i}]"
        secret: str | None = None
        if entry.key_env:
            secret = env.get(entry.key_env, "").strip()
            if not secret:
                problems.append(f"{where}.key_env: environment variable {entry.key_env} is not set")
                continue
            source = f"{where}.key_env"
        else:
            assert entry.key_file is not None
            source = f"{where}.key_file"
            try:
                secret = _read_secret(entry.key_file)
            except OSError as exc:
                problems.append(f"{source}: cannot read {entry.key_file}: {exc.strerror or exc}")
                continue
        if len(secret) < MIN_SECRET_CHARS:
            problems.append(f"{source}: {_too_short(f'the key of {entry.name}')}")
            continue
        found.append((where, _client_key(entry, secret), secret))
    if clients.keys_file is not None:
        found += _keys_from_file(clients.keys_file, problems)
    names: dict[str, str] = {}
    digests: dict[bytes, str] = {}
    for where, key, _ in found:
        if key.name == ANONYMOUS:
            problems.append(f"{where}.name: {ANONYMOUS!r} is reserved for requests without a key")
        elif key.name in names:
            problems.append(f"{where}.name: {key.name!r} is already the name of {names[key.name]}")
        names.setdefault(key.name, where)
        if key.digest in digests:
            problems.append(f"{where}: the same key is also given to {digests[key.digest]}; each key needs its own")
        digests.setdefault(key.digest, where)
    if problems:
        raise SecretProblems(problems)
    return [key for _, key, _ in found], [secret for _, _, secret in found]


def _client_key(entry: ClientKeyConfig | ClientKeyFileEntry, secret: str) -> ClientKey:
    """The request path's view of a configured key: its rules and the digest of `secret`."""
    return ClientKey(
        entry.name,
        _digest(secret),
        tuple(entry.models),
        tuple(entry.tasks),
        entry.local_only,
        entry.requests_per_minute,
        entry.cache,
    )


def _keys_from_file(path: Path, problems: list[str]) -> list[tuple[str, ClientKey, str]]:
    where = "clients.keys_file"
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        problems.append(f"{where}: cannot read {path}: {exc.strerror or exc}")
        return []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        problems.append(f"{where}: {path} is not valid YAML{at}")  # the message might quote a key
        return []
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(f"{where}: {path} must hold a list of keys (`- {{name: ..., key: ...}}`)")
        return []
    found = []
    for i, item in enumerate(raw):
        try:
            entry = ClientKeyFileEntry.model_validate(item)
        except ValidationError as exc:
            problems += [f"{where} ({path}): {p}" for p in validation_problems(exc, (i,))]
            continue
        found.append((f"{where}[{i}]", _client_key(entry, entry.key), entry.key))
    return found


@dataclass
class _Bucket:
    """A token bucket: `capacity` requests at once, refilled at `capacity` per minute."""

    capacity: float
    tokens: float
    updated: float

    def take(self, now: float) -> float:
        """0 when a request may start now (and takes its token), else seconds until one may."""
        rate = self.capacity / 60.0
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / rate


class SharedBuckets(Protocol):
    async def take(self, name: str, per_minute: float) -> float | None:
        """0 when a request of key `name` may start (and takes its token), else seconds until one
        may; None when the shared buckets cannot be reached."""


class AccessControl:
    """The client keys in force and their rate-limit buckets (which survive reloads, by key name)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.keys: tuple[ClientKey, ...] = ()
        self._buckets: dict[str, _Bucket] = {}

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def replace(self, keys: Iterable[ClientKey]) -> None:
        self.keys = tuple(keys)
        buckets: dict[str, _Bucket] = {}
        now = self._clock()
        for key in self.keys:
            if key.requests_per_minute is None:
                continue
            old = self._buckets.get(key.name)
            capacity = float(key.requests_per_minute)
            tokens = min(capacity, old.tokens) if old is not None else capacity
            buckets[key.name] = _Bucket(capacity, tokens, old.updated if old is not None else now)
        self._buckets = buckets

    def match(self, presented: str) -> ClientKey | None:
        """The key whose secret `presented` is, or None."""
        digest = _digest(presented)
        match: ClientKey | None = None
        for key in self.keys:  # every key is compared, so the time says nothing about which matched
            if hmac.compare_digest(digest, key.digest):
                match = key
        return match

    async def wait(self, key: ClientKey, shared: SharedBuckets | None = None) -> float:
        """0 when this key may start a request now (and takes its token), else seconds until it may.

        With `shared` (the Redis of `cache.backend: redis`) the bucket is the one every replica uses;
        while Redis fails, this replica's own bucket decides."""
        bucket = self._buckets.get(key.name)
        if bucket is None:
            return 0.0
        wait = await shared.take(key.name, bucket.capacity) if shared is not None else None
        return bucket.take(self._clock()) if wait is None else wait
