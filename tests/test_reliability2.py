"""Reliability, second round (issue 23): the command line as a new user meets it.

1. Ctrl-C in the first second of `linsam simulate` gives 130 and one line, and leaves the
   previous result untouched (signal handling is installed before anything heavy is imported).
2. An empty / comment-only / description-only config is refused (exit status 2, naming the
   missing fields).
4. `linsam regimes` on a broken saved sweep: one line, exit status 2.
5. `linsam cifar` checks --out and --work-dir before the data, names the flag, leaves nothing.
6. The JSON files written are strict (tests/test_results.py: config.json).
7. A malformed --cifar-results file is an input error (exit status 2, one line), not a failing
   claim; the claims table's columns never run together.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from linsam import cli
from test_results import strict_loads, synthetic

TINY_TOML = """name = "tiny"
model = "logreg"
methods = ["gd", "one_sam"]
rhos = [0.0, 1.0]
num_seeds = 1
n = 20
steps = 10
lr = 1.0
record_every = 5

[data]
kind = "isotropic"
d = 10
"""

# the console script's code; SIGINT gets Python's usual handler (a background shell would ignore it)
_CLI = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from linsam.cli import main; sys.exit(main())")
EARLY = (0.1, 0.3, 0.5, 0.9, 1.5)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_in_the_first_seconds_exits_130_and_keeps_the_old_result(tmp_path):
    """Before: at 0.2-0.9 s the SIGINT was swallowed (`Exception ignored in: _xla_gc_callback`), the
    sweep ran on, exited 0 and overwrote the previous result; at 0.1 s a traceback."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    out = tmp_path / "res"
    out.mkdir()
    old = {"results.nc": b"previous result", "config.json": b"{}"}
    for name, data in old.items():
        (out / name).write_bytes(data)
    root = str(Path(__file__).resolve().parents[1])  # this checkout, wherever the test runs from
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    seen = []
    for sig, delay in [*((signal.SIGINT, d) for d in EARLY), (signal.SIGTERM, 0.5)]:
        t0 = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-c", _CLI, "simulate", "--config", str(cfg), "--out", str(out)],
                                env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(max(0.0, delay - (time.monotonic() - t0)))
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[linsam simulate tiny] seeds")]
        seen.append((sig.name, delay, proc.returncode, lines))
        assert proc.returncode == 128 + sig, seen
        assert len(lines) == 1 and f"linsam simulate: interrupted by {sig.name}" in lines[0], seen
        assert {p.name: p.read_bytes() for p in out.iterdir()} == old, (seen, "the previous result changed")


@pytest.mark.parametrize("text", ["", "# only a comment\n", 'description = "mine"\n', 'rhos = [0.5]\n'])
def test_a_config_that_does_not_say_what_to_run_is_refused(tmp_path, capsys, text):
    """Before: an empty file ran a 20-seed default sweep with rhos = [0.0] and exited 0."""
    cfg = tmp_path / "e.toml"
    cfg.write_text(text)
    assert cli.main(["simulate", "--config", str(cfg), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not say what to run: missing" in err[0] and "--default-sweep" in err[0], err
    missing = err[0].split("missing ")[1].split(" (")[0]
    assert missing == ("methods" if "rhos" in text else "methods, rhos")
    assert not (tmp_path / "o").exists()


def test_regimes_on_a_broken_saved_sweep_is_one_line(tmp_path, capsys):
    """Before: a raw zipfile.BadZipFile traceback, exit status 1."""
    res = synthetic().save(tmp_path / "R" / "synthetic")
    (res / "results.nc").write_bytes((res / "results.nc").read_bytes()[:200])
    assert cli.main(["regimes", "--results", str(tmp_path / "R"), "--out", str(tmp_path / "r.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("linsam regimes: error:") and "truncated or damaged" in err[0], err
    assert not (tmp_path / "r.md").exists()


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc (Linux)")
@pytest.mark.parametrize("flags, flag", [(["--out", "/proc/nope"], "--out"),
                                         (["--out", "NEW/out", "--work-dir", "/proc/nope"], "--work-dir")])
def test_cifar_checks_its_output_flags_before_the_data(tmp_path, capsys, monkeypatch, flags, flag):
    """Before: the whole data set was decoded first (18 s), then `[Errno 2] ...` without the flag;
    a bad --work-dir left an empty --out behind. The data path here does not exist: an output
    flag checked first is the only way to get its message."""
    pytest.importorskip("flax")
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    rc = cli.main(["cifar", "--preset", "tiny", "--data", str(tmp_path / "no-data"), *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith(f"linsam cifar: error: {flag} '/proc/nope'"), err
    assert time.monotonic() - t0 < 30
    assert not (tmp_path / "NEW").exists()  # nothing left behind


def test_cifar_results_json_is_strict_with_one_seed(tmp_path):
    """Before: one seed gave `-Infinity`/`Infinity` bounds in results.json."""
    pytest.importorskip("flax")
    from linsam.cifar import train
    from paper_checks import c8_cifar as c8

    agg = {"schema": "linsam.cifar.results/1+seeds", "seeds": [0], "methods": {
        m: {"peak_test_acc": p, "peak_test_acc_ci": {"mean": p, "lo": -math.inf, "hi": math.inf, "n": 1},
            "gain_over_gd": {"mean": 0.1, "lo": -math.inf, "hi": math.inf, "n": 1}, "config": {}, "data": {}}
        for m, p in (("gd", 0.5), ("one_sam", 0.6))}}
    train.write_json_atomic(tmp_path / "results.json", agg)
    back = strict_loads((tmp_path / "results.json").read_text())
    ci = back["methods"]["gd"]["peak_test_acc_ci"]
    assert ci["lo"] is None and ci["hi"] is None and "single seed" in ci["null_reasons"]["lo"]
    line = c8.proxy_summary(back, "f")
    assert "50.0% [no interval: one seed]" in line and "inf" not in line.lower()


def _c8_file(tmp_path, obj, name):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return str(p)


@pytest.mark.parametrize("obj, needle", [
    ({"foo": 1}, "no 'methods' table"),
    ({"methods": {}}, "'methods' is empty"),
    ({"methods": []}, "'methods' is a JSON list"),
    ({"methods": {"gd": {"peak_test_acc": 52.5}, "one_sam": {"peak_test_acc": 0.7}}}, "not a number in [0, 1]"),
    ({"methods": {"sam": {"peak_test_acc": 0.5}}}, "methods.sam: not a method name"),
    ({"schema": "other/1", "methods": {"gd": {}}}, "not a `linsam cifar` results schema"),
    ({"method": "gd", "summary": {}}, "holds one method's results"),
])
def test_malformed_cifar_results_are_an_input_error_not_a_failing_claim(tmp_path, capsys, obj, needle):
    """Before: a wrong schema gave rc 1 and the row "C8 fails"; {"methods": {}} gave rc 0."""
    path = _c8_file(tmp_path, obj, "bad.json")
    assert cli.main(["check", "C8", "--tiny", "-q", "--cifar-results", path]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"linsam check: error: --cifar-results {path}: ") and needle in err[0], err
    assert "fails" not in captured.out


def test_claims_table_columns_never_run_together():
    from reproduction._result import NOT_COMPARABLE, NOT_RUN, ClaimResult
    from reproduction.report import claims_text_table

    def claim(cid, verdict, must):
        return ClaimResult(id=cid, claim="c", where="w", regime="r", expected="e", measured=f"m {cid}",
                           estimate=None, ci=None, verdict=verdict, must_hold=must)

    table = claims_text_table([claim("C8", NOT_COMPARABLE, False), claim("C10", NOT_RUN, True)])
    lines = table.splitlines()
    assert "not comparable  no" in lines[1] and "not run here    yes" in lines[2], table
    starts = {ln.index("m C") for ln in lines[1:]}
    assert len(starts) == 1 and lines[0].index("measured") in starts, table  # aligned columns


def test_check_report_json_is_strict(tmp_path, capsys, monkeypatch):
    """report.json of `linsam check --out` (C8 with a one-seed CPU proxy: undefined bounds) parses
    with a strict parser."""
    proxy = tmp_path / "proxy.json"
    agg = {"schema": "linsam.cifar.results/1+seeds", "seeds": [0], "methods": {
        m: {"peak_test_acc": p, "peak_test_acc_ci": {"mean": p, "lo": None, "hi": None, "n": 1},
            "config": {}, "data": {}} for m, p in (("gd", 0.5), ("one_sam", 0.6))}}
    proxy.write_text(json.dumps(agg))
    from paper_checks import c8_cifar as c8

    monkeypatch.setattr(c8, "CPU_PROXY_RESULTS", proxy)
    out = tmp_path / "rep"
    assert cli.main(["check", "C8", "--tiny", "-q", "--out", str(out)]) == 0
    rep = strict_loads((out / "report.json").read_text())
    assert "no interval: one seed" in rep["claims"][0]["measured"], rep["claims"][0]["measured"]
    capsys.readouterr()
