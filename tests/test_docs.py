"""Docs that run: every ```python block of README.md and docs/*.md is run by Sybil (the root
conftest.py) or marked as a listing; the examples/ scripts run at toy size."""

import re
import runpy
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LISTING = re.compile(r'<!-- skip: next "listing[^"]*" -->\n```python\n')


def _docs():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_every_python_block_runs_or_is_a_listing():
    runnable = listings = 0
    for path in _docs():
        text = path.read_text()
        blocks = len(re.findall(r"^```python\n", text, re.M))
        marked = len(LISTING.findall(text))
        other_skips = len(re.findall(r"<!-- skip: next", text)) - marked
        assert other_skips == 0, f"{path.name}: a skip that is not a listing"
        runnable += blocks - marked
        listings += marked
    assert runnable >= 6 and listings >= 1, (runnable, listings)
    # Sybil collects the docs: they are on pytest's paths and the collector is configured
    assert '"docs"' in (ROOT / "pyproject.toml").read_text() and "Sybil" in (ROOT / "conftest.py").read_text()


@pytest.mark.parametrize("script", ["flax_label_noise.py", "sweep_and_plot.py", "flax_sweep.py"])
def test_examples_run_at_toy_size(script, tmp_path, monkeypatch, capsys):
    pytest.importorskip("flax")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [script, "--tiny"])
    runpy.run_path(str(ROOT / "examples" / script), run_name="__main__")
    out = capsys.readouterr().out
    accs = [float(a) for a in re.findall(r"accuracy (\d+\.\d)%", out)]
    assert len(accs) >= 2 and all(0 <= a <= 100 for a in accs), out
    if script == "sweep_and_plot.py":
        assert (tmp_path / "sweep.png").stat().st_size > 1000
