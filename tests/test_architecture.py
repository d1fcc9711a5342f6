"""The layers of src/ import one way and without cycles (docs/architecture.md draws them).

Every import counts, also those inside functions: a lazy import hides a cycle from Python, not from a reader."""
from __future__ import annotations

import ast
from pathlib import Path


SRC = Path(__file__).resolve().parents[1] / "src"

# a layer may import the layers listed for it (and itself): data < model < train / infer < tasks < cli, the entry
# points' shared code; config, files, the modality spec and what every command shares (exit statuses, --set) are the
# base every layer reads, metrics stand beside
BASE = {"src.config", "src.files", "src.modality", "src.commands"}
MAY_IMPORT = {
    "src.commands": set(),
    "src.config": {"src.commands"},
    "src.config_docs": {"src.config", "src.files", "src.commands", "src.tasks"},  # the reference page, generated
    "src.files": set(),
    "src.compile_cache": {"src.config"},  # the entry points' graph cache: they and tasks/cli start it
    "src.modality": {"src.config"},
    "src.metrics": BASE | {"src.data"},
    "src.data": BASE,
    "src.model": BASE | {"src.data"},
    "src.train": BASE | {"src.data", "src.model"},
    "src.infer": BASE | {"src.data", "src.model", "src.metrics"},
    "src.tasks": BASE | {"src.data", "src.model", "src.train", "src.infer", "src.metrics", "src.compile_cache"},
    "src.cli": BASE | {"src.data", "src.model", "src.train", "src.infer", "src.tasks", "src.compile_cache"},
    "src.api": BASE | {"src.data", "src.infer", "src.train", "src.tasks"},  # the Python API: beside cli
    "src.serve": BASE | {"src.api", "src.data", "src.cli"},  # the HTTP server, on the API
}


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict:
    return {module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(path: Path, known) -> set:
    """The src modules `path` imports (`from src.a import b` counts as src.a.b when b is a module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("src")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("src") and node.level == 0:
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                found.add(sub if sub in known else node.module)
    return {m for m in found if m in known}


def import_graph() -> dict:
    known = modules()
    return {name: imports_of(path, known) - {name} for name, path in known.items()}


def find_cycle(graph: dict):
    """One import cycle as a list of modules, or None (depth-first search, white/grey/black)."""
    state, stack = {}, []

    def visit(node):
        state[node] = "grey"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "grey":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "black"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def layer_of(module: str) -> str:
    return next(layer for layer in sorted(MAY_IMPORT, key=len, reverse=True)
                if module == layer or module.startswith(layer + "."))


def test_no_import_cycle_in_src():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_layers_import_downwards_only():
    wrong = [f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
             if layer_of(d) != layer_of(m) and layer_of(d) not in MAY_IMPORT[layer_of(m)]]
    assert not wrong, "\n".join(sorted(wrong))


def test_every_src_module_has_a_layer():
    for name in modules():
        if name != "src":
            assert layer_of(name) in MAY_IMPORT, name


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
