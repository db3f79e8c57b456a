"""The compiled build (setup.py): the modules it names exist, it is what the build reports, and it
refuses clearly where it cannot be made."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lmwatch import build

ROOT = Path(__file__).resolve().parent.parent


def compiled_paths() -> list[str]:
    """setup.py's `COMPILED`, read without running setup.py."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets):
            paths: list[str] = ast.literal_eval(node.value)
            return paths
    raise AssertionError("setup.py has no COMPILED list")


def test_every_compiled_module_exists_and_the_probe_is_one_of_them() -> None:
    paths = compiled_paths()
    assert paths and all((ROOT / p).is_file() for p in paths)
    assert build.PROBE.replace(".", "/") + ".py" in paths


@pytest.mark.skipif("LMWATCH_EXPECT_BUILD" not in os.environ, reason="only where the Makefile says which build runs")
def test_the_build_under_test_is_the_one_expected() -> None:
    expected = os.environ["LMWATCH_EXPECT_BUILD"]
    assert build.kind() == expected
    suffix = ".so" if expected == "mypyc" else ".py"
    for path in compiled_paths():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert str(module.__file__).endswith(suffix), module.__file__


def compiled_setup(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """setup.py run as pip runs it for `LMWATCH_MYPYC=1 pip install`, with `env` on top."""
    return subprocess.run(
        [sys.executable, "setup.py", *args],
        cwd=ROOT,
        env={**os.environ, "LMWATCH_MYPYC": "1", **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_without_a_c_compiler_the_compiled_build_says_what_is_missing_and_the_way_out() -> None:
    done = compiled_setup("--name", CC="/nonexistent/cc")
    assert done.returncode == 1
    assert "needs a C compiler (/nonexistent/cc)" in done.stderr
    assert "build-essential python3-dev" in done.stderr and "without LMWATCH_MYPYC" in done.stderr


def test_an_editable_install_is_never_compiled() -> None:
    done = compiled_setup("editable_wheel")
    assert done.returncode == 1
    assert "an editable one (pip install -e) is pure Python" in done.stderr
