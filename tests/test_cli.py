"""The `lmwatch` command line: every command has --help; the simulator command runs standalone."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["run", "check-config", "simulate", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lmwatch", command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: lmwatch {command}")


def test_top_level_help_lists_commands() -> None:
    result = subprocess.run([sys.executable, "-m", "lmwatch", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


def test_run_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        config = tmp_path / "config.yaml"
        config.write_text(f"server:\n  host: 127.0.0.1\n  port: {port}\nbackends: []\n")
        result = subprocess.run(
            [sys.executable, "-m", "lmwatch", "run", "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"lmwatch: error: cannot listen on 127.0.0.1:{port} (server.host, server.port): ")
    assert "address already in use" in last and last.endswith("lmwatch did not start")
    assert "Traceback" not in result.stderr
