"""No import circle inside the clusterfed package: the layers read one way.

The graph is built from the source with ``ast`` (every import statement, including those
inside functions and ``if TYPE_CHECKING:`` blocks: a deferred import hides a circle, it
does not break it), and a circle is a strongly connected set of two or more modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "app"
PACKAGE = ROOT / "clusterfed"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(name: str, source: str, known: set[str], *, is_package: bool = False) -> set[str]:
    """The package's modules that module ``name`` imports (not its own ancestors: Python
    imports those first anyway, and ``__init__`` re-exports are one-way by design)."""
    package = name if is_package else name.rpartition(".")[0]
    targets: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            for alias in node.names:
                targets.append(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    found = set()
    for target in targets:
        while target and target not in known:
            target = target.rpartition(".")[0]
        if target and target != name and not name.startswith(f"{target}."):
            found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    known = set(paths)
    return {
        name: imported(
            name, path.read_text(encoding="utf-8"), known, is_package=path.name == "__init__.py"
        )
        for name, path in paths.items()
    }


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of two or more modules."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_package_has_no_import_circle() -> None:
    graph = import_graph()
    assert "clusterfed.trust.validator" in graph["clusterfed.trust.login_cluster"]
    assert circles(graph) == []


def test_the_check_finds_a_circle() -> None:
    graph = import_graph()
    graph["clusterfed.trust.validator"] = {
        *graph["clusterfed.trust.validator"],
        "clusterfed.trust.login_cluster",
    }
    assert ["clusterfed.trust.login_cluster", "clusterfed.trust.validator"] in circles(graph)
    # A type-only import counts: the old circle was one.
    source = (
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .login_cluster import X\n"
    )
    found = imported("clusterfed.trust.validator", source, set(graph))
    assert found == {"clusterfed.trust.login_cluster"}
