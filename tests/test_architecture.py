"""The layering of job/, read from the source with ``ast`` (no module is imported).

The import graph has an edge for every ``import``/``from ... import`` of a job module, at the top of a
module or inside a function, class or ``try`` block; imports under ``if TYPE_CHECKING:`` count for the
layering rules but not for cycles (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "job"

# The entry points: only they may know about the CLI and its commands.
ENTRY = ("job.commands", "job.cli", "job.pipeline")
LOWER_PACKAGES = ("job.stages", "job.store", "job.report", "job.models", "job.sources", "job.validation")

# Import cycles accepted for now, as frozensets of module names, each with its reason.
ALLOWED_CYCLES: dict[frozenset[str], str] = {
    frozenset({"job.analytics", "job.backtest", "job.execution", "job.metrics", "job.scoreboard",
               "job.significance", "job.strategy"}):
        "job.metrics.summarise builds the metrics document from analytics, execution, scoreboard, "
        "significance and strategy (function-level imports) while those modules use metrics' formulas "
        "at the top. To remove: move summarise (and its helpers) into a module of its own above them.",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(JOB.rglob("*.py")) if "__pycache__" not in p.parts}


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _resolve(name: str) -> str | None:
    """The job module ``name`` denotes: itself, or its longest prefix that is a module."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str, path: Path) -> list[tuple[str, bool]]:
    """(imported job module, runs at runtime) for every import statement of ``module``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: list[tuple[str, bool]] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            out.extend((m, runtime) for alias in node.names if (m := _resolve(alias.name)))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                target = _resolve(f"{source}.{alias.name}") if f"{source}.{alias.name}" in MODULES else _resolve(source)
                if target:
                    out.append((target, runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return [(m, rt) for m, rt in out if m != module]


GRAPH = {m: _imports(m, p) for m, p in MODULES.items()}


def _under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_the_graph_is_read():
    assert "job.pipeline" in MODULES and "job.metrics" in MODULES
    assert any(target == "job.metrics" for target, _ in GRAPH["job.scoreboard"])


@pytest.mark.parametrize("package", LOWER_PACKAGES)
def test_lower_layers_do_not_import_the_entry_points(package):
    bad = sorted(f"{m} -> {t}" for m, edges in GRAPH.items() if _under(m, package)
                 for t, _ in edges if any(_under(t, e) for e in ENTRY))
    assert not bad, "modules below the entry points import them:\n" + "\n".join(bad)


def test_pipeline_does_not_import_the_cli():
    bad = sorted({t for t, _ in GRAPH["job.pipeline"] if _under(t, "job.commands") or _under(t, "job.cli")})
    assert not bad, f"job.pipeline imports {bad}"


def _cycles() -> list[frozenset[str]]:
    """Strongly connected components of more than one module (Tarjan), runtime edges only."""
    edges = {m: sorted({t for t, runtime in e if runtime}) for m, e in GRAPH.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(edges):
        if v not in index:
            strong(v)
    return found


def test_no_import_cycles_but_the_listed_ones():
    unexpected = [sorted(c) for c in _cycles() if c not in ALLOWED_CYCLES]
    assert not unexpected, "import cycles among job modules:\n" + "\n".join(" <-> ".join(c) for c in unexpected)
