"""The daemon's event loop: uvloop when installed, the stdlib's on request, a clear error otherwise."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from lmwatch import event_loop


def test_auto_takes_uvloop_when_installed() -> None:
    pytest.importorskip("uvloop")
    name, factory = event_loop.loop_factory("auto")
    loop = factory()
    try:
        assert name == "uvloop"
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_asyncio_forces_the_stdlib_loop() -> None:
    name, factory = event_loop.loop_factory(" AsyncIO ")
    loop = factory()
    try:
        assert name == "asyncio"
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_auto_falls_back_without_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # `import uvloop` raises ImportError
    assert event_loop.loop_factory("auto")[0] == "asyncio"
    with pytest.raises(event_loop.EventLoopError, match=r"uvloop is not installed.*lmwatch\[fast\]"):
        event_loop.loop_factory("uvloop")


def test_run_returns_the_coroutines_result() -> None:
    async def answer() -> int:
        return 42

    assert event_loop.run(answer()) == 42


def test_an_unknown_loop_stops_the_daemon_with_the_variable_named(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("backends: []\n")
    done = subprocess.run(
        [sys.executable, "-m", "lmwatch", "run", "--config", str(config)],
        env={"LMWATCH_EVENT_LOOP": "trio", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 1
    assert "LMWATCH_EVENT_LOOP='trio': must be one of auto, asyncio, uvloop" in done.stderr
