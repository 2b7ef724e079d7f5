"""The import graph of src/realtimechat: imports go down the layers, and none go round.

Read from the source with `ast` (every import, at module level or inside a function or
an `if TYPE_CHECKING:` block, counts: each is a dependency a reader has to follow).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = "realtimechat"
ROOT = Path(__file__).resolve().parents[2] / "src" / PACKAGE

# Top to bottom. A module may import from its own layer's package and from any layer
# below, never from a layer above; packages on one line (a set) are independent: none
# imports another.
LAYERS: list[set[str]] = [
    {"__main__"},
    {"cli"},
    # The programs the command line runs.
    {"server", "worker_process", "bench", "ops"},
    # The composition root: the one place that builds adapters and services.
    {"bootstrap"},
    {"edge", "worker"},
    {"services"},
    {"storage", "bus", "blobs", "providers"},
    {"resilience"},
    {"observability"},
    {"domain"},
    {"settings", "ids", "web"},
]

# Imports that break the rule today and are being removed by another slice of issue 14;
# the coordinator deletes each line once its fix is merged. Nothing may be added here.
ALLOWED: set[tuple[str, str]] = set()
# Import cycles (each as its sorted modules) being removed elsewhere, likewise.
ALLOWED_CYCLES: set[tuple[str, ...]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def imported(path: Path, known: dict[str, Path]) -> Iterator[str]:
    """The package's modules `path` imports (`from a import b` is `a.b` when b is a module)."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module
                for a in node.names
            ]
        else:
            continue
        for name in names:
            if name == PACKAGE or name.startswith(PACKAGE + "."):
                # `import a.b.c` also runs a and a.b; the nearest known module stands for it.
                while name not in known and "." in name:
                    name = name.rpartition(".")[0]
                yield name


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: set(imported(path, known)) - {name} for name, path in known.items()}


def top(module: str) -> str:
    """The top-level package or module of the package that `module` belongs to."""
    return module.split(".")[1] if "." in module else "(package)"


def layer_of(package: str) -> int:
    for index, layer in enumerate(LAYERS):
        if package in layer:
            return index
    raise AssertionError(f"{PACKAGE}.{package} is in no layer: add it to LAYERS")


def upward_imports(edges: dict[str, set[str]]) -> set[tuple[str, str]]:
    """Imports of a higher layer's module, or of a sibling's in the same layer."""
    found = set()
    for source, targets in edges.items():
        if source == PACKAGE:
            continue
        for target in targets:
            a, b = top(source), top(target)
            if a == b or target == PACKAGE:
                continue
            if layer_of(b) <= layer_of(a):
                found.add((source, target))
    return found


def cycles(edges: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: set[tuple[str, ...]] = set()

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.add(tuple(sorted(component)))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_package_is_in_a_layer() -> None:
    for name in modules():
        if name != PACKAGE:
            layer_of(top(name))


def test_no_import_goes_up_a_layer() -> None:
    found = upward_imports(graph())
    unexpected = sorted(found - ALLOWED)
    assert not unexpected, "imports from a layer above (or a sibling):\n" + "\n".join(
        f"  {a} -> {b}" for a, b in unexpected
    )


def test_no_import_cycles() -> None:
    unexpected = sorted(cycles(graph()) - ALLOWED_CYCLES)
    assert not unexpected, "import cycles:\n" + "\n".join(f"  {c}" for c in unexpected)


@pytest.mark.parametrize(("lower", "upper"), [("edge", "worker"), ("worker", "edge")])
def test_edge_and_worker_know_nothing_of_each_other(lower: str, upper: str) -> None:
    assert not {
        (a, b) for a, targets in graph().items() for b in targets
        if top(a) == lower and top(b) == upper
    }  # fmt: skip


def test_edge_reaches_the_object_store_only_through_its_interface() -> None:
    assert not {
        (a, b) for a, targets in graph().items() for b in targets
        if top(a) == "edge" and top(b) == "blobs" and b != f"{PACKAGE}.blobs.base"
    }  # fmt: skip


def test_the_allow_lists_hold_only_what_is_still_there() -> None:
    """So the lists shrink as the fixes land: a stale entry fails, and is deleted."""
    edges = graph()
    assert upward_imports(edges) >= ALLOWED
    assert cycles(edges) >= ALLOWED_CYCLES


def test_the_checks_see_a_violation() -> None:
    edges = {
        "realtimechat.domain.a": {"realtimechat.edge.b"},
        "realtimechat.edge.b": {"realtimechat.domain.a"},
    }
    assert upward_imports(edges) == {("realtimechat.domain.a", "realtimechat.edge.b")}
    assert cycles(edges) == {("realtimechat.domain.a", "realtimechat.edge.b")}
