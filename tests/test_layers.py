"""The floors of the house (``../shared/STYLE.md`` item 15), checked on the import graph.

library (``linsam``, except the command line ``linsam.cli``)
  < reproduction floor (``reproduction``, ``paper_checks``, ``figures``, ``derivations``)
  < command line (``linsam.cli``).

Nothing imports a floor above its own, and ``figures`` never reaches into ``paper_checks``
(what both need lives in ``reproduction``). Every ``import``/``from ... import`` statement is
read with :mod:`ast`, including the lazy ones inside functions.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REPRODUCTION = ("reproduction", "paper_checks", "figures", "derivations")


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append(node.module)
    return out


def _top(name: str) -> str:
    return name.split(".")[0]


def _library_files():
    for p in sorted((ROOT / "linsam").rglob("*.py")):
        if (ROOT / "linsam" / "cli") in p.parents:
            continue
        yield p


def test_there_is_a_library_to_check():
    files = list(_library_files())
    assert len(files) > 10, files


@pytest.mark.parametrize("path", list(_library_files()), ids=lambda p: str(p.relative_to(ROOT)))
def test_library_imports_nothing_above_it(path):
    bad = [m for m in _imports(path) if _top(m) in REPRODUCTION or m.startswith("linsam.cli")]
    assert not bad, f"{path.relative_to(ROOT)} (library) imports from a floor above it: {bad}"


@pytest.mark.parametrize("path", sorted((ROOT / "figures").glob("*.py")), ids=lambda p: p.name)
def test_figures_do_not_reach_into_paper_checks(path):
    bad = [m for m in _imports(path) if _top(m) == "paper_checks"]
    assert not bad, f"figures/{path.name} imports paper_checks ({bad}); shared pieces live in reproduction/"


@pytest.mark.parametrize("floor", REPRODUCTION)
def test_reproduction_floor_never_imports_the_command_line(floor):
    for path in sorted((ROOT / floor).rglob("*.py")):
        bad = [m for m in _imports(path) if m.startswith("linsam.cli")]
        assert not bad, f"{path.relative_to(ROOT)} imports the command line: {bad}"


def test_the_checker_sees_a_violation(tmp_path):
    """The scan must be able to fail: an upward import written in a function body is found."""
    p = tmp_path / "m.py"
    p.write_text("def f():\n    from paper_checks import run_claim\n    import figures.f1_lemma31\n")
    assert [_top(m) for m in _imports(p)] == ["paper_checks", "figures"]


# ----------------------------------------------------------------------------- no import circles inside linsam


def _linsam_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the linsam modules it imports (every statement, the lazy ones in functions
    included; ``from pkg import mod`` counts the module ``pkg.mod``; relative imports resolved)."""
    files = {}
    for p in sorted((root / "linsam").rglob("*.py")):
        parts = p.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p

    def resolve(name):
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for mod, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
                    base = ".".join(pkg[: len(pkg) - (node.level - 1)] + ([node.module] if node.module else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in files]
                targets = subs + ([base] if len(subs) < len(node.names) else [])
            else:
                continue
            edges |= {r for r in map(resolve, (t for t in targets if t.split(".")[0] == "linsam")) if r and r != mod}
        graph[mod] = edges
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles_inside_linsam():
    graph = _linsam_graph(ROOT)
    assert len(graph) > 30 and "linsam._src.engine.sweep" in graph, sorted(graph)[:5]
    assert "linsam._src.engine.config" in graph["linsam._src.engine.sweep"]
    circles = _circles(graph)
    assert not circles, f"import circles inside linsam (each a set of modules that import each other): {circles}"


def test_the_circle_check_sees_a_circle(tmp_path):
    """It must be able to fail: a lazy import back (a -> b at top level, b -> a inside a function,
    as configs.py <-> simulate.py was) and a relative import are found."""
    pkg = tmp_path / "linsam"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "a.py").write_text("from linsam.sub.b import f\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import a\n")
    (pkg / "c.py").write_text("from linsam.sub import a\n")
    assert _circles(_linsam_graph(tmp_path)) == [["linsam.sub.a", "linsam.sub.b"]]
