"""The client package's import graph: no cycle, REST below the live session, a light server.

Read from the source (no import), so a cycle shows here before it bites at import time.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients/python/src"
SERVER = ROOT / "src"
# Tools that drive a server through the client, shipped with the server for operators.
SERVER_TOOLS = ("realtimechat.bench", "realtimechat.ops")


def _module(path: Path, base: Path) -> str:
    parts = path.relative_to(base).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, prefix: str) -> set[str]:
    """Modules under `prefix` that `path` imports at run time (TYPE_CHECKING blocks skipped)."""
    tree = ast.parse(path.read_text())
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(prefix):
            if node.module == prefix:  # `from realtimechat_client import protocol`
                found.update(f"{prefix}.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith(prefix))
    return found


def _client_graph() -> dict[str, set[str]]:
    pkg = CLIENT / "realtimechat_client"
    return {_module(p, CLIENT): _imports(p, "realtimechat_client") for p in pkg.rglob("*.py")}


def test_the_client_package_has_no_import_cycle() -> None:
    graph = _client_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path, module]))
        if module in done:
            return
        for dep in sorted(graph.get(module, ())):
            visit(dep, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_rest_client_does_not_import_the_live_session() -> None:
    for module, deps in _client_graph().items():
        if not module.startswith("realtimechat_client.live"):
            live = {d for d in deps if d.startswith("realtimechat_client.live")}
            assert not live, f"{module} imports {live}: the live session sits above REST"


def test_the_server_imports_only_the_protocol_and_the_backoff_of_the_client() -> None:
    allowed = {"realtimechat_client.protocol", "realtimechat_client.backoff"}
    for path in (SERVER / "realtimechat").rglob("*.py"):
        module = _module(path, SERVER)
        if module.startswith(SERVER_TOOLS):
            continue
        extra = _imports(path, "realtimechat_client") - allowed
        assert not extra, f"{module} imports {extra} of the client"
