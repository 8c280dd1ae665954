"""The package is a downward stack: every import of ``qfm_iqm`` (module level or inside a function, as the AST shows
it) points to the importing module's own layer or a lower one, and the modules' import graph has no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# Lowest first. The ground floor imports nothing of the package; the package's own doors (qfm_iqm.create_metric,
# python -m qfm_iqm) are the top.
LAYERS = [{"settings", "registry", "io", "version"}, {"data", "features"}, {"method"}, {"evaluation"}, {"deploy"},
          {"pipeline"}, {"", "__main__"}]


def _modules() -> dict[str, Path]:
    return {".".join(p.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__"): p
            for p in sorted((SRC / "qfm_iqm").rglob("*.py"))}


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from a import b`` counts ``a.b`` when that is a module)."""
    graph = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("qfm_iqm"):
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                          for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names if a.name.startswith("qfm_iqm")}
        graph[name] = found - {name}
    return graph


def _layer(module: str) -> int:
    top = module.removeprefix("qfm_iqm").removeprefix(".").split(".")[0]
    return next(i for i, layer in enumerate(LAYERS) if top in layer)


def test_every_import_points_down_or_sideways() -> None:
    graph = _imports(_modules())
    upward = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(b) > _layer(a))
    assert not upward, f"imports that point up the stack: {upward}"
    ground = sorted(f"{a} -> {b}" for a, targets in graph.items() for b in targets if _layer(a) == 0)
    assert not ground, f"the ground floor imports the package: {ground}"


def test_the_import_graph_has_no_cycle() -> None:
    graph = _imports(_modules())
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path[path.index(nxt):], nxt])}")
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
