"""The benchmark command keeps working: tiny mode runs, and the report has its structure.

Timings are never asserted (machines are noisy): only that every section, every target row
and every table is there and well-formed, and that the NumPy baseline the speedups are
measured against follows the same trajectory as the fast sweep (exact tier, float64).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linsam import fastsweep as fs
from linsam._src import benchmark

SECTIONS = [
    "## Machine",
    "## Targets",
    "## Machine limits (measured in this run)",
    "## Linear 1-SAM sweeps",
    "## NumPy per-run loop",
    "## Closed form vs generic autodiff",
    "## Scaling",
    "## Peak memory of the default sweep",
    "## Profile of one float32 step",
    "## How the numbers are counted",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "BENCHMARKS.md"
    res = benchmark.run_bench(benchmark.BenchConfig.tiny(), out=out, log=lambda msg: None)
    return res, out


def tables(text):
    """Markdown tables as lists of rows (lists of cells), header first, separator dropped."""
    out, cur = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            cur.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif cur:
            out.append([r for r in cur if not all(set(c) <= {"-"} for c in r)])
            cur = []
    return out


def test_tiny_report_written_atomically(tiny):
    res, out = tiny
    assert out.read_text() == res["text"]
    leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


def test_report_sections_in_order(tiny):
    text = tiny[0]["text"]
    pos = [text.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in pos), [s for s, p in zip(SECTIONS, pos) if p < 0]
    assert pos == sorted(pos)
    assert "Tiny mode" in text


def test_machine_is_described(tiny):
    text = tiny[0]["text"]
    for label in ("| CPU |", "| cores |", "| memory |", "| JAX |", "| JAX backend |", "load average", "at end",
                  "other processes during the run"):
        assert label in text, label


def test_tables_are_well_formed(tiny):
    tabs = tables(tiny[0]["text"])
    assert len(tabs) == len(SECTIONS) - 1  # every section but the formulas has one table
    for tab in tabs:
        widths = {len(r) for r in tab}
        assert len(widths) == 1, f"ragged table starting {tab[0]}"
        assert len(tab) >= 2, f"empty table {tab[0]}"


def test_targets_table(tiny):
    res = tiny[0]
    targets = next(t for t in tables(res["text"]) if t[0][0] == "target")
    assert targets[0] == ["target", "dtype", "form", "measured", "goal", "met"]
    rows = targets[1:]
    names = [r[0] for r in rows]
    for dt in ("float32", "float64"):
        assert any(r[0].startswith("(a)") and r[1] == dt for r in rows)
        assert any(r[0].startswith("(b)") and r[1] == dt for r in rows)
        assert any(r[0].startswith("(c) sweep (a)") and r[1] == dt and r[2] == "primal" for r in rows)
        assert any(r[0].startswith("(c) sweep (b)") and r[1] == dt and r[2] == "primal" for r in rows)
    assert any(n.startswith("closed form vs autodiff, 1-SAM logistic") for n in names)
    for r in rows:
        assert re.match(r"^\d+(\.\d+)?x?( \(.*\))?$", r[3]), f"unparseable measurement {r[3]!r}"
        assert r[5] in ("yes", "**no**")


def test_result_numbers_are_positive_and_finite(tiny):
    res = tiny[0]
    for dt in ("float64", "float32"):
        g = res["limits"][f"gemm_{dt}"]
        assert g["limit"] > 0 and np.isfinite(g["limit"])
    assert res["limits"]["copy"]["limit"] > 0
    kinds = {(r["sweep"], r["dtype"], r["variant"]) for r in res["sweeps"]}
    for dt in ("float32", "float64"):
        assert {("a", dt, "primal"), ("b", dt, "streaming"), ("b", dt, "primal")} <= kinds
    for r in res["sweeps"]:
        assert r["per_step"] > 0 and r["flops"] > 0 and r["bytes"] > 0
    for r in res["numpy"]:
        assert r["speedup_primal"] > 0
    assert [r["rule"] for r in res["autodiff"]] == ["1-SAM logistic", "1-SAM logistic, sweep step", "1-SAM DLN", "J-SAM DLN"]
    assert [r["axis"] for r in res["scaling"]] == ["n", "d", "R"]
    assert all(np.isfinite(r["exponent"]) for r in res["scaling"])
    mem = res["memory"]
    assert mem["rss_after"] >= mem["rss_before"] > 0 and mem["data_bytes"] > 0


@pytest.mark.parametrize("shared", [True, False])
def test_numpy_baseline_follows_the_fast_sweep(shared):
    """The NumPy loop (the speedup baseline) does the same steps and metrics: float64, rtol 1e-10."""
    X, t, noisy = benchmark.make_data(5, None if shared else 3, 20, 12, "float64")
    rho = np.array([0.0, 0.2, 0.7])
    kw = dict(lr=0.5, steps=12, record_every=4)
    if shared:
        fast = fs.logreg_sweep(X, t, rho, noisy=noisy, **kw)
        w, ms = benchmark.numpy_reference_sweep(X, t, rho, 0.5, 12, 4, noisy)
        fw, fm = fast.w, fast.metrics
    else:
        fast = fs.logreg_sweep(X, t, [0.2], noisy=noisy, **kw)  # seed sweep: one run per dataset
        w, ms = benchmark.numpy_reference_sweep(X, t, np.full(3, 0.2), 0.5, 12, 4, noisy)
        fw, fm = fast.w[:, 0], {k: v[:, 0] for k, v in fast.metrics.items()}
    np.testing.assert_allclose(fw, w, rtol=1e-10, atol=1e-13)
    assert set(ms) == set(fm)
    for k in ms:
        np.testing.assert_allclose(fm[k], ms[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_cli_registration():
    from linsam import cli

    args = cli.build_parser().parse_args(["bench", "--tiny", "--out", "x.md", "--quiet"])
    assert args.tiny and args.out == "x.md" and args.quiet and callable(args.func)


def test_python_dash_m_bench_help():
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--help"], cwd=root, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, PYTHONPATH=str(root)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "--tiny" in proc.stdout and "--out" in proc.stdout


def test_busy_machine_is_flagged():
    assert benchmark._busy(None, 2) == "" and benchmark._busy(0.1, 2) == ""
    assert "1.50 of 2 cores" in benchmark._busy(1.5, 2)
    a, b = benchmark._cpu_seconds(), benchmark._cpu_seconds()
    other = benchmark.other_cpu(a, b, 1.0)
    assert other is None or other >= 0.0
