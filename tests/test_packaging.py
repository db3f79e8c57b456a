"""The package metadata installs without warnings: the licence is an SPDX expression (PEP 639), which
needs setuptools 77 or newer to build; the older `{text = ...}` table makes every install warn."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

PYPROJECT = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())


def test_licence_is_an_spdx_string_and_the_build_backend_understands_it() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    [setuptools] = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) >= 77, setuptools
    assert not any(c.startswith("License ::") for c in PYPROJECT["project"].get("classifiers", []))
