"""The layout tells the architecture (issue 10): the shared contract at the bottom of the import
graph, `agent` and `controller` beside each other on it, no import cycle, no module too large.

Read from the source with `ast` (every `import` and `from ... import`, at any depth, including
imports inside functions), so a lazy import cannot hide an edge.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "agent", "controller")
MAX_LINES = 600            # no module of agent/ or controller/ over this
# What each package may import of the project's own packages.
ALLOWED = {"contract": {"contract"}, "agent": {"agent", "contract"}, "controller": {"controller", "contract"}}


def modules() -> dict[str, Path]:
    """{dotted module name: file} of the three packages (migrations' generated files excepted)."""
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The project modules `name` imports (resolving relative imports and `from pkg import mod`)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            # The longest known module that `t` names (a `from pkg import name` may name a function).
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t.split(".")[0] in PACKAGES:
                found.add(t)
    found.discard(name)
    return found


GRAPH = {name: imports_of(name, path, set(modules())) for name, path in modules().items()}


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_stands_below_it(package):
    wrong = {f"{mod} -> {dep}" for mod, deps in GRAPH.items() if mod.split(".")[0] == package
             for dep in deps if dep.split(".")[0] not in ALLOWED[package]}
    assert not wrong, f"{package} imports what it must not: {sorted(wrong)}"


def test_the_contract_imports_nothing_heavy():
    heavy = ("aiortc", "av", "aiohttp", "sqlalchemy", "asyncpg", "aiosqlite", "psutil", "jinja2", "reportlab")
    found = []
    for name, path in modules().items():
        if not name.startswith("contract"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            found += [f"{name} -> {m}" for m in mods if m.split(".")[0].lower() in heavy]
    assert not found, found


def test_no_import_cycle():
    """Tarjan's strongly connected components over the module graph: every component is one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    # A package's __init__ importing its own submodules is not a cycle between parts.
    real = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not real, f"import cycles: {real}"


def test_no_module_of_the_programs_is_too_large():
    big = {str(path.relative_to(ROOT)): n for name, path in modules().items()
           if name.split(".")[0] in ("agent", "controller")
           and (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_graph_is_read_at_all():
    """Guards the tests above against reading nothing: known edges are found."""
    assert "contract.wire" in GRAPH["controller.hub"] or any(
        "contract.wire" in deps for mod, deps in GRAPH.items() if mod.startswith("controller."))
    assert any("contract.quality" in deps for mod, deps in GRAPH.items() if mod.startswith("agent."))
    assert len(GRAPH) > 40
