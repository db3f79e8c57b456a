"""The build backend: setuptools', plus what the compiled build (`LMWATCH_MYPYC=1`, see setup.py) needs.

mypyc type-checks the modules it compiles, so its build environment holds mypy and lmwatch's own
dependencies (their types are part of the check). A regular build needs setuptools alone.
"""

import os
import tomllib
from typing import Any

from setuptools import build_meta
from setuptools.build_meta import *  # noqa: F403 (every hook but the one below is setuptools')

MYPYC = ["mypy>=1.10", "types-pyyaml", "types-psutil"]


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    if os.environ.get("LMWATCH_MYPYC") != "1":
        requires: list[str] = build_meta.get_requires_for_build_wheel(config_settings)
        return requires
    # not setuptools' hook: it runs setup.py, which imports mypyc (not installed yet)
    with open("pyproject.toml", "rb") as file:
        return MYPYC + tomllib.load(file)["project"]["dependencies"]
