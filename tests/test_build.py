"""The compiled build (setup.py) names modules that exist, and is what the build reports it is."""

from __future__ import annotations

import ast
import importlib
import os
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
