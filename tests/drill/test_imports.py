"""The drill's modules import one another one way only: no import cycle, even through a package."""

from __future__ import annotations

import ast
from pathlib import Path

DRILL = Path(__file__).resolve().parents[2] / "sidecar" / "drill"


def module_name(path: Path) -> str:
    parts = path.relative_to(DRILL.parents[1]).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports() -> dict[str, set[str]]:
    """Each drill module and the drill modules it imports (type-only imports included)."""
    modules = {module_name(p): p for p in DRILL.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            found.append([*path[path.index(node) :], node])
            return
        if node in done:
            return
        for target in sorted(graph[node]):
            visit(target, [*path, node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_no_drill_module_imports_one_that_imports_it_back() -> None:
    graph = imports()
    assert "sidecar.drill.control_plane.listwatch" in graph  # the walk saw the package
    assert cycles(graph) == []


def test_the_api_object_type_is_defined_once() -> None:
    definitions = [
        f"{p.relative_to(DRILL)}"
        for p in DRILL.rglob("*.py")
        if "\nObject = " in p.read_text(encoding="utf-8")
    ]
    assert definitions == ["control_plane/store.py"]
