"""The README's module table matches the tree: every module of lmwatch is in it, and every module
it names exists (so a new, moved or removed module shows up here until the table says so).

The table's rule, as the README states it: a row names its modules in the first column, a bare
name being in the folder of the path before it; a folder's row names its modules in the second
column; a package's `__init__.py` is its folder.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TICKED = re.compile(r"`([^`]+)`")
MODULE = re.compile(r"[a-z0-9_/]+\.py")


def table_rows(readme: str) -> list[tuple[str, str]]:
    lines = readme[readme.index("| module | concern |") :].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        first, rest = line.strip("|").split("|", 1)
        rows.append((first, rest))
    return rows


def named(rows: list[tuple[str, str]]) -> set[str]:
    """Every module and folder path the table names."""
    found: set[str] = set()
    for first, rest in rows:
        folder = ""
        for item in TICKED.findall(first):
            path = item if item.startswith("lmwatch/") else folder + item
            folder = path if path.endswith("/") else path.rsplit("/", 1)[0] + "/"
            found.add(path)
            if path.endswith("/"):
                found.update(path + m for m in TICKED.findall(rest) if MODULE.fullmatch(m))
    return found


def in_table(module: str, names: set[str]) -> bool:
    return module in names or (module.endswith("/__init__.py") and module.removesuffix("__init__.py") in names)


def test_every_module_is_in_the_table_and_the_table_names_only_modules() -> None:
    names = named(table_rows((REPO / "README.md").read_text()))
    modules = {str(p.relative_to(REPO)) for p in (REPO / "lmwatch").rglob("*.py") if "__pycache__" not in p.parts}
    assert sorted(m for m in modules if not in_table(m, names)) == []
    assert sorted(n for n in names if not (REPO / n).exists()) == []


def test_the_rule_reads_bare_names_and_folder_rows() -> None:
    rows = table_rows(
        "| module | concern |\n|---|---|\n"
        "| `lmwatch/api/a.py`, `b.py` | x |\n"
        "| `lmwatch/cache/` | `c.py` (the store), `Cache` |\n"
        "\nprose `d.py`\n"
    )
    assert named(rows) == {"lmwatch/api/a.py", "lmwatch/api/b.py", "lmwatch/cache/", "lmwatch/cache/c.py"}
    assert in_table("lmwatch/cache/__init__.py", named(rows)) and not in_table("lmwatch/api/__init__.py", named(rows))
