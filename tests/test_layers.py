"""No import cycle between lmwatch's top-level parts (`api`, `routing`, `registry.py`, ...).

Every import counts, at module level or inside a function (a local import hides a cycle, it does not
remove it); only `if TYPE_CHECKING:` imports, which never run, are left out. No edge is excused:
a piece two parts both need moves to the part that owns it.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lmwatch"


def part_of(module: str) -> str | None:
    """The top-level part `lmwatch.x.y` belongs to (`x`), None outside lmwatch."""
    bits = module.split(".")
    return bits[1] if bits[0] == "lmwatch" and len(bits) > 1 else None


def type_checking_nodes(tree: ast.Module) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for n in ast.walk(node))
    return skipped


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    skipped = type_checking_nodes(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    parts = {p.stem for p in PACKAGE.iterdir() if p.suffix == ".py" or (p / "__init__.py").exists()}
    parts -= {"__init__", "__main__"}
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        me = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if me not in parts:
            continue
        for module in imports_of(path):
            other = part_of(module)
            if other in parts and other != me:
                edges[me].add(other)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected parts with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(edges.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_no_cycle_between_top_level_parts() -> None:
    assert cycles(graph()) == []


def test_the_check_sees_a_cycle_and_a_local_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import lmwatch.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from lmwatch.a import x\n")
    found = {p.stem: {part_of(m) for m in imports_of(p)} for p in (tmp_path / "a.py", tmp_path / "b.py")}
    assert cycles({k: {v for v in vs if v} for k, vs in found.items()}) == [["a", "b"]]
