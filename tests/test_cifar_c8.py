"""Issue 14.5: claim C8 reading `linsam cifar`'s results file.

A file that was named but is missing or unreadable is an error (clear message, exit status 1
from `linsam check`), never "not run here" or a traceback; a run in another setting than the
paper's is "not comparable", with the reasons, never holds or fails.
"""

import json
import os
import re

import pytest

import paper_checks
from linsam import cli
from paper_checks import FAILS, HOLDS, NOT_COMPARABLE, NOT_RUN
from paper_checks import c8_cifar as c8

PAPER_CONFIG = dict(noise_kind="symmetric", noise_rate=0.3, depth=18, width=64, batch_size=128, lr=0.01,
                    weight_decay=5e-4, rho=0.01, epochs=200)


def results(sgd=0.525, one_sam=0.695, config=None, data=None, status="completed", comparable=True, base_key="gd"):
    conf = dict(PAPER_CONFIG, **(config or {}))
    info = dict(dict(n_train=50000, train_subset=False, realised_rate=0.3), **(data or {}))

    def one(peak, epoch):
        return dict(peak_test_acc=peak, peak_epoch=epoch, completed_epochs=200 if status == "completed" else 12,
                    status=status, config=conf, data=info, preset="paper")

    return {"schema": "linsam.cifar.results/1+aggregate", "comparable": comparable, "gaps": {},
            "methods": {base_key: one(sgd, 40), "one_sam": one(one_sam, 150)}}


def run_c8(path):
    return paper_checks.run_claim("C8", paper_checks.Context(mode="tiny", cifar_results=path))


def write(tmp_path, obj, name="results.json"):
    p = tmp_path / name
    p.write_text(json.dumps(obj))
    return p


def test_paper_setting_holds_or_fails():
    ok = c8.evaluate(c8.read_results(results(), "f"), {})
    assert ok.verdict == HOLDS and ok.estimate == pytest.approx(0.17) and "not comparable" not in ok.measured
    bad = c8.evaluate(c8.read_results(results(0.60, 0.62), "f"), {})
    assert bad.verdict == FAILS


def test_gd_is_the_sgd_baseline_and_old_files_still_read():
    """The CIFAR driver writes the library's names (gd, jreg_fixed); files written before the
    rename (sgd, reg) are read with their keys mapped, and the new key wins over an old one."""
    pytest.importorskip("flax")
    from linsam.cifar import train

    assert "gd" in train.METHODS and "sgd" not in train.METHODS and "jreg_fixed" in train.METHODS
    new = c8.read_results(results(0.525, 0.695), "f")
    old = results(0.525, 0.695, base_key="sgd")
    old["methods"]["reg"] = dict(old["methods"]["one_sam"], peak_test_acc=0.61)
    old_read = c8.read_results(old, "f")
    assert set(old_read["methods"]) == {"gd", "one_sam", "jreg_fixed"}
    assert old_read["methods"]["jreg_fixed"]["peak"] == 0.61
    for m in (new, old_read):
        r = c8.evaluate(m, {})
        assert r.verdict == HOLDS and r.estimate == pytest.approx(0.695 - 0.525)
        assert "SGD 52.5% (epoch 40)" in r.measured
    both = results(0.40, 0.695)
    both["methods"]["sgd"] = dict(both["methods"]["gd"], peak_test_acc=0.99)  # stale old key beside the new
    both_read = c8.read_results(both, "f")
    assert set(both_read["methods"]) == {"gd", "one_sam"}
    assert c8.evaluate(both_read, {}).estimate == pytest.approx(0.695 - 0.40)
    none = results(0.525, 0.695)
    del none["methods"]["gd"]
    m = c8.read_results(none, "f")
    assert not m["available"] and "no peak test accuracy for gd" in m["reason"]


@pytest.mark.parametrize("change,needle", [
    (dict(config=dict(width=8, epochs=2, rho=0.05)), "width 8 (paper: 64)"),
    (dict(data=dict(n_train=1024, train_subset=True)), "1024 training images"),
    (dict(config=dict(noise_rate=0.2)), "noise_rate 0.2"),
    (dict(status="time_limit"), "run time_limit after 12/200 epochs"),
    (dict(comparable=False), "different settings"),
])
def test_another_setting_is_not_comparable(change, needle):
    for sgd, one_sam in ((0.40, 0.30), (0.30, 0.60)):  # neither a failing nor a holding gap decides
        r = c8.evaluate(c8.read_results(results(sgd, one_sam, **change), "f"), {})
        assert r.verdict == NOT_COMPARABLE, r.measured
        assert r.measured.startswith("not comparable to the paper's setting") and needle in r.measured
        assert "1-SAM - SGD" in r.measured and r.estimate == pytest.approx(one_sam - sgd)


def test_the_tiny_smoke_run_is_not_comparable():
    """The results of `linsam cifar --preset tiny` used to give "fails" without a word."""
    from linsam.cifar import presets

    tiny = {k: v for k, v in presets.preset_fields("tiny").items() if k in PAPER_CONFIG}
    r = c8.evaluate(c8.read_results(results(0.2, 0.19, config=tiny, data=dict(n_train=1024, train_subset=True)),
                                    "f"), {})
    assert r.verdict == NOT_COMPARABLE and "not comparable" in r.measured and "epochs 2 (paper: 200)" in r.measured


def _unreadable(tmp_path):
    d = tmp_path / "a_directory.json"
    d.mkdir()
    latin = tmp_path / "latin1.json"
    latin.write_bytes(b'{"methods": "\xe9"}')
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    listing = write(tmp_path, [1, 2], "list.json")
    no_table = write(tmp_path, {"schema": "x"}, "no_table.json")
    bad_peak = write(tmp_path, results(sgd="high"), "bad_peak.json")
    cases = [(tmp_path / "missing.json", "no such file"), (d, "not a file"), (latin, "not UTF-8"),
             (broken, "not valid JSON"), (listing, "not a results object"), (no_table, "no 'methods' table"),
             (bad_peak, "not a number")]
    if hasattr(os, "geteuid") and os.geteuid() != 0:  # root reads anything
        locked = write(tmp_path, results(), "locked.json")
        locked.chmod(0)
        cases.append((locked, "cannot be read"))
    return cases


def test_missing_or_unreadable_file_is_an_error(tmp_path):
    for path, needle in _unreadable(tmp_path):
        r = run_c8(path)
        assert r.verdict == FAILS and r.must_hold and not r.ok, (path, r.verdict)
        assert r.measured.startswith("error: --cifar-results") and needle in r.measured, r.measured
    assert run_c8(None).verdict == NOT_RUN and run_c8(None).ok  # no file named: not run here, no error


def test_check_command_exits_nonzero_on_a_bad_file(tmp_path, capsys):
    for path, needle in _unreadable(tmp_path)[:4]:
        # refused before any work: exit status 2 and one line naming the file and the reason
        assert cli.main(["check", "C8", "--tiny", "-q", "--cifar-results", str(path)]) == 2, path
        captured = capsys.readouterr()
        assert needle in captured.err and "--cifar-results" in captured.err
        assert "Traceback" not in captured.out + captured.err
    good = write(tmp_path, results())
    assert cli.main(["check", "C8", "--tiny", "-q", "--cifar-results", str(good)]) == 0
    assert re.search(r"^C8 +holds +no  ", capsys.readouterr().out, re.M)


def test_c8_reads_the_cpu_study_beside_the_papers_numbers(tmp_path):
    """The CPU study (issue 20) in C8's measured text: gains over tuned SGD and fractions of 1-SAM's
    gain with their intervals, the paper's values beside them, and the TOST verdicts."""
    import json

    from paper_checks import c8_cifar as c8
    from linsam.cifar.study import PAPER

    g = lambda m, lo, hi: {"mean": m, "lo": lo, "hi": hi, "n": 5}  # noqa: E731
    rep = {"config": {"width": 512, "n_train": 10000, "n_val": 5000, "epochs": 15, "report_seeds": [0, 1, 2, 3, 4]},
           "paper_gains": {m: PAPER[m] - PAPER["gd"] for m in PAPER if m != "gd"},
           "paper_fractions": {m: (PAPER[m] - PAPER["gd"]) / (PAPER["one_sam"] - PAPER["gd"])
                               for m in ("jsam", "lsam", "jreg_fixed")},
           "depths": {"1": {"rows": {"one_sam": {"gain_over_tuned_sgd": g(0.031, 0.01, 0.05)},
                                     "jsam": {"gain_over_tuned_sgd": g(0.03, 0.01, 0.05)}},
                            "fractions_of_1sam_gain": {"jsam_at_1sam": {"estimate": 0.9, "lo": 0.5, "hi": 1.3, "n": 5}},
                            "best_simple_control": "gce",
                            "tost": {"one_sam": {"vs": "gce", "mean": 0.004, "verdict": "inconclusive"}}}}}
    path = tmp_path / "study.json"
    path.write_text(json.dumps(rep))
    out = c8.measure(type("Ctx", (), {"cifar_results": None})(), {"cpu_study": str(path)})
    text = out["study"]
    assert "+3.1 pp [+1.0, +5.0]; paper +17.0" in text and "0.90 [0.50, 1.30]; paper 0.98" in text
    assert "inconclusive" in text and "depth 1" in text
    bad = tmp_path / "bad.json"
    bad.write_text("[1]")
    assert "unreadable" in c8.measure(type("Ctx", (), {"cifar_results": None})(), {"cpu_study": str(bad)})["study"]
