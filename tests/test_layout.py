"""The code's shape, checked: no import cycles among domaintune's modules (imports inside
functions count too: a lazy import hides a cycle, it does not remove it), and Optuna only inside
the sweep package and the Hydra sweeper plugin."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from helpers import ROOT

SRC = ROOT / "src"


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """domaintune module -> the domaintune modules it imports (`from a import b` is a.b when b is a module)."""
    modules = {module_name(p): p for p in (SRC / "domaintune").rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                targets = [
                    f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                    for alias in node.names
                ]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node], _ = "open", stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node], _ = "done", stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_among_domaintune_modules():
    graph = import_graph()
    assert len(graph) > 30 and "domaintune.api" in graph["domaintune.runs"]  # the graph is really built
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_optuna_is_imported_only_by_the_sweep():
    found = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in (SRC / "domaintune").rglob("*.py")
        if "sweep" not in p.relative_to(SRC).parts
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if re.match(r"\s*(import|from)\s+optuna", line)
    ]
    assert found == []


def test_core_modules_do_not_know_the_sweep():
    """train, the config and the commands reach the sweep only through Hydra config nodes."""
    graph = import_graph()
    core = ["domaintune.train", "domaintune.config", "domaintune.hydra_app", "domaintune.api", "domaintune.runs"]
    assert all(not any(edge.startswith("domaintune.sweep") for edge in graph[name]) for name in core)
