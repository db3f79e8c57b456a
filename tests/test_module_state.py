"""No module-level mutable state in lmwatch: state lives in objects a daemon (or a simulator) owns.

Every module is read as a syntax tree. A module-level name may hold a constant table (an UPPER_CASE
literal, or one annotated `Final`: the extension tables), an immutable value, or an object of a
frozen type; an empty container, a container constructor, a lower-case name bound to a container, or
an instance of a class with mutable attributes fails. Class bodies may hold constant tables but no
empty container to fill (a class-level set that grows is module state too).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import logging
import re
import types
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import pytest
from aiohttp import web
from pydantic import TypeAdapter

PACKAGE = Path(__file__).resolve().parents[1] / "lmwatch"
CONSTANT = re.compile(r"_?[A-Z][A-Z0-9_]*$")
CONTAINER_CALLS = frozenset(
    {"dict", "list", "set", "defaultdict", "deque", "OrderedDict", "Counter", "bytearray", "count"}
    | {"WeakKeyDictionary", "WeakValueDictionary", "WeakSet"}
)
LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)
IMMUTABLE = (int, float, str, bytes, bool, type(None), tuple, frozenset, types.MappingProxyType, re.Pattern, Enum)
FROZEN_KINDS = (TypeVar, web.AppKey, web.RequestKey, TypeAdapter, logging.Logger, types.FunctionType)
"""Objects that are not state: type variables, aiohttp keys, pydantic adapters, loggers (logging is
process-wide by design), functions."""

ALLOWED: dict[tuple[str, str], str] = {}
"""(file, name) -> why this one piece of process state is right where it is."""


def modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_final(annotation: ast.expr | None) -> bool:
    return annotation is not None and "Final" in ast.unparse(annotation)


def read_only(annotation: ast.expr | None) -> bool:
    """Declared as a read-only type (`ClassVar[Mapping[...]]`, `Final`): a constant, even when empty."""
    text = ast.unparse(annotation) if annotation is not None else ""
    return any(word in text for word in ("Final", "Mapping[", "Sequence[", "frozenset[", "tuple["))


def callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def stateless(value: Any) -> bool:
    """Whether a module-level object holds no state that can change."""
    if isinstance(value, (*IMMUTABLE, *FROZEN_KINDS, type)):
        return True
    if dataclasses.is_dataclass(value):
        params: Any = vars(type(value))["__dataclass_params__"]
        return bool(params.frozen)
    return not getattr(value, "__dict__", None) and not hasattr(value, "__slots__")


def assignments(body: list[ast.stmt]) -> list[tuple[str, ast.expr, ast.expr | None]]:
    found: list[tuple[str, ast.expr, ast.expr | None]] = []
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            found.append((node.targets[0].id, node.value, None))
        elif isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.target, ast.Name):
            found.append((node.target.id, node.value, node.annotation))
    return found


def problems_of(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    where = str(path.relative_to(PACKAGE))
    found = []
    for name, value, annotation in assignments(tree.body):
        if name == "__all__" or (where, name) in ALLOWED:
            continue
        empty = isinstance(value, LITERALS[:3]) and not getattr(value, "elts", getattr(value, "keys", None))
        if isinstance(value, LITERALS) and (empty or not (CONSTANT.match(name) or is_final(annotation))):
            found.append(f"{where}: {name} is a module-level container")
        elif isinstance(value, ast.Call) and callee(value) in CONTAINER_CALLS:
            found.append(f"{where}: {name} = {callee(value)}(...) at module level")
        elif isinstance(value, ast.Call) and not is_final(annotation):
            obj = getattr(importlib.import_module(module_name(path)), name)
            if not stateless(obj):
                found.append(f"{where}: {name} is a {type(obj).__name__} with mutable state at module level")
    for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
        for name, value, annotation in assignments(cls.body):
            qualified = f"{cls.name}.{name}"
            if (where, qualified) in ALLOWED or read_only(annotation):
                continue
            empty = isinstance(value, LITERALS[:3]) and not getattr(value, "elts", getattr(value, "keys", None))
            if empty or (isinstance(value, ast.Call) and callee(value) in CONTAINER_CALLS):
                found.append(f"{where}: {qualified} is a class-level container to fill")
    return found


def test_no_module_level_mutable_state() -> None:
    problems = [p for path in modules() for p in problems_of(path)]
    assert problems == []


def test_each_allowance_is_still_needed() -> None:
    for where, name in ALLOWED:
        assert (PACKAGE / where).exists() and name.rsplit(".", 1)[-1] in (PACKAGE / where).read_text(), (where, name)


@pytest.mark.parametrize(
    "source",
    [
        "_seen = {}\n",
        "CACHE: dict[str, int] = {}\n",
        "plans = {'a': 1}\n",
        "import collections\nwaiting = collections.deque()\n",
        "import weakref\n_BY = weakref.WeakKeyDictionary()\n",
        "class Filter:\n    secrets: set[str] = set()\n",
    ],
)
def test_the_scan_catches_each_form(source: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("tests.test_module_state.PACKAGE", tmp_path)
    probe = tmp_path / "probe.py"
    probe.write_text(source)
    assert problems_of(probe) != []
