"""The `lmwatch` command line: every command has --help; the simulator command runs standalone."""

from __future__ import annotations

import subprocess
import sys

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
