"""The package's import graph, read from the source: no module imports another in a loop, and
the worker never imports the producer side (nor the operator tools, the CLI or the dev tools)."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import imageq

ROOT = Path(imageq.__file__).parent
WORKER_MAY_NOT_IMPORT = (
    "imageq.producers",
    "imageq.ops",
    "imageq.cli",
    "imageq.devenv",
    "imageq.simulator",
)


def _modules() -> dict[str, Path]:
    """Every module of the package, by dotted name (through the links in imageq/)."""
    found = {}
    paths = [
        Path(folder, name)
        for folder, _, names in os.walk(ROOT, followlinks=True)
        for name in names
        if name.endswith(".py")
    ]
    for path in sorted(paths):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(["imageq", *parts])] = path
    return found


MODULES = _modules()


def _runtime_imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs: at module level or in a function; not under TYPE_CHECKING."""
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node.body = []  # before the walk reaches them: ast.walk queues children lazily
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node


def _imported(module: str, path: Path) -> set[str]:
    """The package's modules that importing `module` runs, parent packages included."""
    targets: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            assert node.level == 0, f"{module}: relative import"
            base = node.module or ""
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            parts = name.split(".")
            # `import a.b.c` runs a, a.b and a.b.c
            targets.update(".".join(parts[:n]) for n in range(1, len(parts) + 1))
    return {target for target in targets if target in MODULES and target != module}


GRAPH = {module: _imported(module, path) for module, path in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    found.append(sorted(component))
    return found


def test_the_graph_covers_the_package() -> None:
    """The walk sees the worker, the producers and the settings (a guard on the test itself)."""
    assert {"imageq.worker.app", "imageq.producers.api", "imageq.config.settings"} <= set(GRAPH)
    assert "imageq.worker.domain.job" in GRAPH["imageq.worker.store.job_store"]


def test_no_module_imports_another_in_a_loop() -> None:
    """No strongly connected component of more than one module."""
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_a_loop() -> None:
    """The finder itself: a -> b -> c -> a is one loop; d hangs off it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m.startswith("imageq.worker")))
def test_the_worker_never_imports_the_producer_side(module: str) -> None:
    """A worker module imports nothing of producers, ops, cli, devenv or the simulator."""
    assert not {target for target in GRAPH[module] if target.startswith(WORKER_MAY_NOT_IMPORT)}, (
        module
    )
