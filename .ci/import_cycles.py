"""Every import circle among Baton's modules, from the graph import-linter checks (grimp).

`make lint` fails on a circle already (the `acyclic_siblings` and layers contracts in
pyproject.toml); this lists them whole, module by module, to see what a change did:

    .venv/bin/python .ci/import_cycles.py

Two views: imports that run (what the contracts check), and with the imports made only for the
type checker (under ``TYPE_CHECKING``) added. Exits 1 when the first view has a circle.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import grimp

SERVICES = (
    "calendar",
    "executor",
    "gateway",
    "hitl",
    "planner",
    "projector",
    "scheduler",
    "webhook",
)
PACKAGES = ("baton_common", "baton_cli", *(f"baton_{s}" for s in SERVICES))


def circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root not in index:
            _visit(graph, root, index, low, stack, found)
    return found


def _visit(
    graph: grimp.ImportGraph,
    root: str,
    index: dict[str, int],
    low: dict[str, int],
    stack: list[str],
    found: list[list[str]],
) -> None:
    work: list[tuple[str, Iterator[str]]] = [(root, _imports(graph, root))]
    index[root] = low[root] = len(index)
    stack.append(root)
    while work:
        module, pending = work[-1]
        step = next(pending, None)
        if step is not None:
            if step not in index:
                index[step] = low[step] = len(index)
                stack.append(step)
                work.append((step, _imports(graph, step)))
            elif step in stack:
                low[module] = min(low[module], index[step])
            continue
        work.pop()
        if work:
            low[work[-1][0]] = min(low[work[-1][0]], low[module])
        if low[module] == index[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                found.append(sorted(group))


def _imports(graph: grimp.ImportGraph, module: str) -> Iterator[str]:
    return iter(sorted(graph.find_modules_directly_imported_by(module)))


def main() -> int:
    ran = 0
    for type_only in (False, True):
        graph = grimp.build_graph(
            *PACKAGES, exclude_type_checking_imports=not type_only, cache_dir=None
        )
        found = circles(graph)
        what = "with TYPE_CHECKING imports" if type_only else "imports that run"
        print(f"{what}: {len(found)} circle(s)")
        for group in found:
            print(f"  {len(group)} modules: {', '.join(group)}")
        ran = ran or (len(found) if not type_only else 0)
    return 1 if ran else 0


if __name__ == "__main__":
    sys.exit(main())
