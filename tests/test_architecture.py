"""The layout holds: layer contract, no import cycle, modules of a readable size.

``docs/architecture.md`` describes the layers; the contract itself lives in ``pyproject.toml``
(``[tool.importlinter]``) so that ``lint-imports`` on the command line and this test check the
same thing. grimp counts imports inside functions too, so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "physeg"

# Modules allowed past MAX_LINES, each with the reason it is one cohesive job.
MAX_LINES = 600
LONG_MODULES: dict[str, str] = {
    "physeg/families/heat/blockwise.py": "one pipeline: lazy open, streaming normalisation, "
    "fixed-means map_overlap iteration with change tracking, blockwise output",
}


def test_import_linter_contracts_are_kept():
    importlinter_cli = pytest.importorskip("importlinter.cli", reason="pip install import-linter")
    code = importlinter_cli.lint_imports(config_filename=str(REPO / "pyproject.toml"),
                                         no_cache=True, no_logo=True)
    assert code == 0, "an import breaks the layers; run `lint-imports` for the chain"


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; returns components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_strongly_connected_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert _strongly_connected(graph) == [["a", "b", "c"]]
    assert _strongly_connected({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules():
    grimp = pytest.importorskip("grimp")
    g = grimp.build_graph("physeg")
    # a package's __init__ importing its own submodules is not a cycle of the layout; count
    # module-to-module imports only, with packages standing for their __init__ files
    graph = {m: set(g.find_modules_directly_imported_by(m)) for m in g.modules}
    cycles = _strongly_connected(graph)
    assert not cycles, f"import cycles: {cycles}"


def test_modules_stay_readable():
    too_long = {}
    for path in SRC.rglob("*.py"):
        n = len(path.read_text().splitlines())
        rel = path.relative_to(SRC.parent).as_posix()
        if n > MAX_LINES and rel not in LONG_MODULES:
            too_long[rel] = n
    assert not too_long, f"split these modules or state why each is one job: {too_long}"
