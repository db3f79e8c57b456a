"""No import cycle between lmwatch's top-level parts (`api`, `routing`, `registry.py`, ...), and no
domain part that reaches the HTTP layer.

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


HTTP_LAYER = ("lmwatch.api", "lmwatch.server", "aiohttp.web")
"""What turns domain errors into statuses and error shapes (and aiohttp's server side)."""
SPEAKS_HTTP = frozenset({"api", "server", "daemon", "services", "console", "simulator"})
"""The surfaces, the wiring (`services.py` holds the app keys) and the simulator (a server of its own)."""


def reaches_http(path: Path, me: str) -> list[str]:
    """The HTTP-layer modules `path` (in part `me`) imports, when `me` is a domain part."""
    if me in SPEAKS_HTTP:
        return []
    layer = tuple(m + "." for m in HTTP_LAYER)
    return sorted(m for m in imports_of(path) if m in HTTP_LAYER or m.startswith(layer))


def test_domain_code_never_reaches_the_http_layer() -> None:
    """Domain code raises `lmwatch/errors.py`'s errors; only `api/` maps them to statuses and shapes."""
    found = [
        f"{path.relative_to(PACKAGE)}: {module}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for module in reaches_http(path, path.relative_to(PACKAGE).parts[0].removesuffix(".py"))
    ]
    assert found == []


def test_the_http_check_sees_a_domain_import(tmp_path: Path) -> None:
    (tmp_path / "select.py").write_text("def f():\n    from lmwatch.api.errors import ApiError\n")
    assert reaches_http(tmp_path / "select.py", "routing") == ["lmwatch.api.errors", "lmwatch.api.errors.ApiError"]
    assert reaches_http(tmp_path / "select.py", "api") == []


def test_the_check_sees_a_cycle_and_a_local_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("import lmwatch.b\n")
    (tmp_path / "b.py").write_text("def f():\n    from lmwatch.a import x\n")
    found = {p.stem: {part_of(m) for m in imports_of(p)} for p in (tmp_path / "a.py", tmp_path / "b.py")}
    assert cycles({k: {v for v in vs if v} for k, vs in found.items()}) == [["a", "b"]]
