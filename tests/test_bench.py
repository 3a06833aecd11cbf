"""The benchmark command keeps working: tiny mode runs, and the report has its structure.

Timings are never asserted (machines are noisy): only that every section, every target row
and every table is there and well-formed, and that the NumPy baseline the speedups are
measured against follows the same trajectory and metrics as the engine (float64, rtol 1e-10:
the same arithmetic in another order).
"""

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from linsam import simulate as sim
from bench import benchmark

SECTIONS = [
    "## Machine",
    "## Targets",
    "## Machine limits (measured in this run)",
    "## The default workload through `linsam.simulate`",
    "## NumPy per-run loop",
    "## The rho sweep",
    "## Closed form vs generic autodiff",
    "## Peak memory of the default workload",
    "## CIFAR-10 CPU preset: training time per epoch",
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


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_tiny_report_written_atomically(tiny):
    res, out = tiny
    assert out.read_text() == res["text"]
    leftovers = [p.name for p in out.parent.iterdir() if p.name != out.name]
    assert leftovers == [], f"temporary files left behind: {leftovers}"


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_report_sections_in_order(tiny):
    text = tiny[0]["text"]
    pos = [text.find(s) for s in SECTIONS]
    assert all(p >= 0 for p in pos), [s for s, p in zip(SECTIONS, pos) if p < 0]
    assert pos == sorted(pos)
    assert "Tiny mode" in text


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_machine_is_described(tiny):
    text = tiny[0]["text"]
    for label in ("| CPU |", "| cores |", "| memory |", "| JAX |", "| JAX backend |", "load average", "at end",
                  "other processes during the run"):
        assert label in text, label


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_tables_are_well_formed(tiny):
    tabs = tables(tiny[0]["text"])
    assert len(tabs) == len(SECTIONS) - 1  # every section but the formulas has one table
    for tab in tabs:
        widths = {len(r) for r in tab}
        assert len(widths) == 1, f"ragged table starting {tab[0]}"
        assert len(tab) >= 2, f"empty table {tab[0]}"


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_targets_table(tiny):
    res = tiny[0]
    targets = next(t for t in tables(res["text"]) if t[0][0] == "target")
    assert targets[0] == ["target", "dtype", "form", "measured", "goal", "met"]
    rows = targets[1:]
    names = [r[0] for r in rows]
    assert [r[2] for r in rows if r[0].startswith("default workload")][:2] == ["auto (dual)", "primal (primal)"]
    assert any(r[0].startswith("rho sweep") and r[1] == "float32" for r in rows)
    assert any(n.startswith("closed form vs autodiff, 1-SAM logistic") for n in names)
    assert any(n.startswith("CIFAR CPU preset: 1-SAM epoch / SGD epoch") for n in names)
    for r in rows:
        assert re.match(r"^\d+(\.\d+)?x?( \(.*\))?$", r[3]), f"unparseable measurement {r[3]!r}"
        assert r[5] in ("yes", "**no**")


@pytest.mark.slow  # the whole tiny bench (~1 min of compilation); CI keeps the baseline and workload tests
def test_result_numbers_are_positive_and_finite(tiny):
    res = tiny[0]
    for dt in ("float64", "float32"):
        g = res["limits"][f"gemm_{dt}"]
        assert g["limit"] > 0 and np.isfinite(g["limit"])
    assert res["limits"]["copy"]["limit"] > 0
    assert {(r["dtype"], r["form"]) for r in res["rho"]} == {(d, f) for d in ("float32", "float64")
                                                             for f in ("primal", "auto")}
    for r in res["rho"] + res["default"]["rows"]:
        assert r["warm"] > 0 and r["cold"] > 0
    assert res["numpy"]["total"] > 0
    assert [r["rule"] for r in res["autodiff"]] == ["1-SAM logistic", "1-SAM DLN", "J-SAM DLN"]
    cc = res["cifar_cpu"]
    assert cc["available"] and [r["method"] for r in cc["rows"]] == ["gd", "one_sam"]
    assert all(r["epoch_s"] > 0 and np.isfinite(r["epoch_s"]) for r in cc["rows"]) and cc["ratio"] > 0
    d = res["default"]
    assert d["rss_after"] >= d["rss_before"] > 0 and d["estimate"]["host"] > 0


def test_numpy_baseline_follows_the_engine():
    """The NumPy loop (the speedup baseline) trains the same runs and records the same metrics
    as ``simulate``: float64, rtol 1e-10."""
    from simcases import TINY

    cfg = TINY.replace(num_seeds=1, seed_chunk=0)
    ms, times = benchmark.numpy_simulate(cfg)
    res = sim.simulate(cfg)
    assert len(times) == 2 and set(ms) == set(res.metrics)
    for k in ms:
        np.testing.assert_allclose(ms[k], res.metrics[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_cifar_cpu_cost_section_at_toy_size(monkeypatch):
    """The CIFAR CPU-preset cost measurement runs on synthetic images (no dataset) with the
    preset's network and the driver's compiled step."""
    pytest.importorskip("flax")
    from linsam.cifar import train as ctrain

    monkeypatch.setitem(ctrain.COMPILER_OPTIONS, "xla_backend_optimization_level", 0)  # fast compile
    cfg = dataclasses.replace(benchmark.BenchConfig.tiny(), cifar_images=128, cifar_width=8)
    cc = benchmark.measure_cifar_cpu(cfg)
    assert cc["available"], cc
    gd, sam = cc["rows"]
    assert (gd["method"], sam["method"]) == ("gd", "one_sam")
    assert gd["network"] == sam["network"] == "mlp1x8"  # the cpu preset's architecture at the toy width
    assert gd["steps"] == sam["steps"] == 1 and gd["images"] == 128
    assert cc["ratio"] == pytest.approx(sam["epoch_s"] / gd["epoch_s"])


def test_default_workload_is_the_issue_workload():
    cfg = benchmark.default_workload(benchmark.BenchConfig.full())
    assert (cfg.methods, cfg.rhos, cfg.num_seeds, cfg.dtype) == (("gd", "one_sam"), (4.0, 12.0), 4, "float32")
    assert (cfg.n, cfg.data.d, cfg.steps) == (500, 2000, 3000)


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


def test_the_benchmark_lives_outside_the_library():
    """Code that serves the benchmark is not in ``linsam`` (STYLE item 18), and the library never imports it."""
    root = Path(__file__).resolve().parents[1]
    assert not (root / "linsam" / "_src" / "benchmark.py").exists()
    assert Path(benchmark.__file__).resolve().parent == root / "bench"
    offenders = [str(p.relative_to(root)) for p in (root / "linsam").rglob("*.py")
                 if (root / "linsam" / "cli") not in p.parents
                 and re.search(r"^\s*(from|import)\s+bench\b", p.read_text(), re.M)]
    assert not offenders, f"library modules import the benchmark: {offenders}"
