"""Helpers for the control-plane tests (admin API, auth, audit, discovery, CLI, reload, shutdown)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp

from lmwatch.config import LoadedConfig, load_config
from lmwatch.daemon import Daemon, running_daemon
from lmwatch.redaction import Redactor

ADMIN_TOKEN = "admin-token-0123456789abcdef"
WRONG_TOKEN = "admin-token-wrong-000000000000"
CLIENT_KEY = "sk-client-alice-0123456789abcdef"
OTHER_KEY = "sk-client-bob-0123456789abcdef00"
REPO = Path(__file__).resolve().parent.parent


def write(path: Path, text: str, mode: int = 0o600) -> Path:
    """Write atomically (a new inode, as editors and config management do) with `mode`."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return path


def backend_yaml(name: str, url: str, **extra: Any) -> str:
    fields = ", ".join([f"name: {name}", f'url: "{url}"', "poll_interval: 1", *(f"{k}: {v}" for k, v in extra.items())])
    return "{" + fields + "}"


def config_file(tmp_path: Path, body: str, *, token: bool = True, name: str = "lmwatch.yaml") -> Path:
    """A config with port 0, the state dir in tmp_path and (by default) an admin token file."""
    lines = ["server: {port: 0, shutdown_grace: 10}", f"state_dir: {tmp_path / 'state'}"]
    if token:
        write(tmp_path / "admin.token", ADMIN_TOKEN + "\n")
        lines.append(f"admin: {{token_file: {tmp_path / 'admin.token'}}}")
    return write(tmp_path / name, "\n".join(lines) + "\n" + body, mode=0o600)


@asynccontextmanager
async def daemon_for(path: Path, redactor: Redactor | None = None) -> AsyncIterator[Daemon]:
    """A daemon on the config at `path`; `redactor`: the one the test's log handlers use."""
    loaded: LoadedConfig = load_config(path, env={})
    async with running_daemon(loaded, redactor=redactor) as daemon:
        yield daemon


def bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


async def admin(
    http: aiohttp.ClientSession,
    daemon: Daemon,
    method: str,
    path: str,
    json: Any = None,
    token: str | None = ADMIN_TOKEN,
) -> tuple[int, Any]:
    async with http.request(method, daemon.url + path, json=json, headers=bearer(token)) as resp:
        return resp.status, await resp.json(content_type=None)


def audit_lines(path: Path) -> list[dict[str, Any]]:
    import json

    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


async def _lmwatch(*args: str, env: Mapping[str, str] | None, stdout: int) -> asyncio.subprocess.Process:
    """`python -m lmwatch ARGS` with stderr piped, in an environment without the caller's LMWATCH_* variables."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LMWATCH_")}
    full_env.update(env or {})
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "lmwatch", *args, env=full_env, cwd=REPO, stdout=stdout, stderr=asyncio.subprocess.PIPE
    )


async def run_cli(*args: str, env: Mapping[str, str] | None = None, timeout: float = 60) -> tuple[int, str, str]:
    """`lmwatch ARGS` as a subprocess, awaited without blocking the loop (the daemon runs on it)."""
    proc = await _lmwatch(*args, env=env, stdout=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


class DaemonProcess:
    """`lmwatch run --config FILE` as a subprocess; `url` once it logged where it listens."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.url = ""
        self.log: list[str] = []

    async def wait_listening(self, timeout: float = 30) -> str:
        async def read() -> str:
            assert self.proc.stderr is not None
            while True:
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError("lmwatch exited before listening:\n" + "".join(self.log))
                self.log.append(line)
                match = re.search(r"listening on (http://\S+)", line)
                if match:
                    return match.group(1)

        self.url = await asyncio.wait_for(read(), timeout)
        return self.url

    async def wait_ready(self, timeout: float = 30) -> None:
        """Until the daemon logs its first poll round (it is ready then)."""
        await self.read_log_until("first poll round done", timeout)

    async def read_log_until(self, pattern: str, timeout: float = 30) -> str:
        """Read stderr lines until one matches (the daemon logs each step it takes)."""
        assert self.proc.stderr is not None

        async def read() -> str:
            assert self.proc.stderr is not None
            while True:
                line = (await self.proc.stderr.readline()).decode()
                if not line:
                    raise AssertionError(f"no log line matched {pattern!r}:\n" + "".join(self.log))
                self.log.append(line)
                if re.search(pattern, line):
                    return line

        return await asyncio.wait_for(read(), timeout)

    def signal(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    async def wait(self, timeout: float = 60) -> int:
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), timeout)
        self.log.append(rest.decode())
        return await asyncio.wait_for(self.proc.wait(), timeout)


@asynccontextmanager
async def daemon_process(config: Path, env: Mapping[str, str] | None = None) -> AsyncIterator[DaemonProcess]:
    """`lmwatch run --config FILE` as a subprocess, killed on exit if it is still running."""
    proc = await _lmwatch("run", "--config", str(config), env=env, stdout=asyncio.subprocess.DEVNULL)
    daemon = DaemonProcess(proc)
    try:
        yield daemon
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def metric_value(text: str, name: str, labels: Sequence[tuple[str, str]] = ()) -> float | None:
    """The value of one series in a text exposition (labels in any order)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels):
            if not labels and "{" in head:
                continue
            return float(value)
    return None
