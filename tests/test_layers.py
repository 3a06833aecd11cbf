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
