"""``linsam reproduce`` end to end in the tiny mode, and the ``check`` / ``figures`` subcommands.

The real ``linsam reproduce --quick`` is run by CI separately; here the tiny mode (3 seeds, 20
steps, derivations D1 and D2 only) checks the plumbing: report.md with the claims table and a
caption per figure, report.json, the figure files, the exit status rule, the arguments.
"""

from __future__ import annotations

import json
import re

import pytest

from linsam import cli
from reproduction.report import Run, write_report


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    rc = cli.main(["reproduce", "--tiny", "--out", str(out), "-q"])
    return rc, out


def test_reproduce_tiny_writes_report_and_figures(tiny_run):
    rc, out = tiny_run
    md = (out / "report.md").read_text()
    rep = json.loads((out / "report.json").read_text())
    assert "| claim | where in the paper | regime | expected | measured (95% CI) | verdict |" in md
    for cid in [f"C{k}" for k in range(1, 11)]:
        assert f"**{cid}**" in md
    ids = [c["id"] for c in rep["claims"]]
    assert [i for i in ids if i in {f"C{k}" for k in range(1, 11)}] == [f"C{k}" for k in range(1, 11)]
    assert rep["mode"] == "tiny" and rep["seed"] == 0 and rep["linsam_version"]
    assert not rep["errors"]
    assert [f["id"] for f in rep["figures"]] == [f"F{k}" for k in (1, 2, 3, 4, 5, 6, 7, 9, 8)]
    for f in rep["figures"]:
        assert f"*{f['caption']}*" in md  # one caption line per figure
        for p in f["paths"]:
            assert (out / "figures" / p.split("/")[-1]).stat().st_size > 1000
    assert {d["name"] for d in rep["derivations"]} == {"D1", "D2"} and all(d["holds"] for d in rep["derivations"])
    by_id = {c["id"]: c for c in rep["claims"]}
    assert by_id["C1"]["verdict"] == "holds" and by_id["C2"]["verdict"] == "holds"  # exact claims hold at any size
    assert by_id["C8"]["verdict"] == "not run here"
    must_ok = all(c["verdict"] == "holds" for c in rep["claims"] if c["must_hold"])
    assert rc == rep["exit_status"] == (0 if must_ok else 1)
    # the paper's sweeps, and C10 / F8's regime (hetero_norm, shrunk in tiny mode)
    assert rep["sweeps"] and all(s["name"].startswith(("reproduce_", "hetero_norm_")) for s in rep["sweeps"])
    assert not list(out.glob(".*.tmp"))
    assert not [p for p in out.rglob(".*")]  # no temp file, no staging directory left
    assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "figures"}
    assert all(str(out / "figures") in p for f in rep["figures"] for p in f["paths"])  # final paths, not staging


def _run_with(claims, derivations=(), errors=()):
    return Run(mode="tiny", seed=0, claims=claims, derivations=list(derivations), figures=[], sweeps=[], settings={},
               timings={}, errors=list(errors), total_s=0.0)


def _claim(verdict, must):
    from paper_checks import ClaimResult, ClaimSpec

    spec = ClaimSpec("C9", "claim | with pipe", "nowhere", "x", must)
    return ClaimResult.from_spec(spec, regime="r", measured="||v|| down", estimate=1.0, ci=(0.5, 1.5), verdict=verdict)


def test_exit_status_rule():
    assert _run_with([_claim("holds", True), _claim("fails", False), _claim("not run here", False)]).exit_status == 0
    assert _run_with([_claim("fails", True)]).exit_status == 1
    assert _run_with([_claim("not run here", True)]).exit_status == 1  # not run is never a pass
    assert _run_with([_claim("holds", True)], derivations=[dict(name="D1", holds=False, claims=[], seconds=0, title="")]
                     ).exit_status == 1
    assert _run_with([_claim("holds", True)], errors=["F3: boom"]).exit_status == 1


def test_report_escapes_pipes_and_is_written_atomically(tmp_path, monkeypatch):
    md, js = write_report(_run_with([_claim("holds", True)]), tmp_path)
    text = md.read_text()
    assert "claim \\| with pipe" in text and "\\|\\|v\\|\\| down" in text
    before = js.read_text()
    import reproduction.report as report

    monkeypatch.setattr(report, "to_json", lambda run: {"x": float("nan")})  # cannot be encoded
    with pytest.raises(ValueError):
        write_report(_run_with([_claim("fails", True)]), tmp_path)
    assert js.read_text() == before and md.read_text() == text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]


def test_check_subcommand_with_cifar_results(tmp_path, capsys):
    res = tmp_path / "cifar.json"
    res.write_text(json.dumps({"schema": "linsam.cifar.results/1+aggregate", "methods": {
        "sgd": {"peak_test_acc": 0.525, "peak_epoch": 30, "config": {"noise_rate": 0.3, "epochs": 200}},
        "one_sam": {"peak_test_acc": 0.695, "peak_epoch": 150, "config": {"noise_rate": 0.3, "epochs": 200}}}}))
    assert cli.main(["check", "C8", "--tiny", "-q", "--cifar-results", str(res)]) == 0
    assert re.search(r"^C8 +holds +no  ", capsys.readouterr().out, re.M)
    assert cli.main(["check", "C8", "--tiny", "-q"]) == 0  # not run here: not must-hold, not a failure
    assert "not run here" in capsys.readouterr().out


def test_check_subcommand_writes_report_and_refuses_bad_input(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("headline_rhoo = 1.0\n")
    assert cli.main(["check", "C4", "--tiny", "-q", "--config", str(bad)]) == 2
    assert "headline_rhoo" in capsys.readouterr().err
    assert cli.main(["check", "C42", "--tiny", "-q"]) == 2
    assert cli.main(["check", "C3", "C4", "--tiny", "-q", "--config", str(bad)]) == 2  # which one? say ID=FILE
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--seed", "-1"])
    with pytest.raises(SystemExit):
        cli.main(["reproduce", "--quick", "--full"])
    assert cli.main(["check", "--list"]) == 0 and "C5" in capsys.readouterr().out
    assert cli.main(["figures", "--list"]) == 0 and "F9" in capsys.readouterr().out


def test_same_seed_same_numbers(tmp_path, capsys):
    assert cli.main(["check", "C4", "--tiny", "-q", "--out", str(tmp_path / "a")]) in (0, 1)
    assert cli.main(["check", "C4", "--tiny", "-q", "--out", str(tmp_path / "b")]) in (0, 1)
    a = json.loads((tmp_path / "a" / "report.json").read_text())["claims"][0]
    b = json.loads((tmp_path / "b" / "report.json").read_text())["claims"][0]
    assert a["measured"] == b["measured"] and a["details"] == b["details"]
    cli.main(["check", "C4", "--tiny", "-q", "--seed", "1", "--out", str(tmp_path / "c")])
    c = json.loads((tmp_path / "c" / "report.json").read_text())["claims"][0]
    assert c["details"] != a["details"]  # another seed: other data


def test_figures_subcommand(tmp_path, capsys):
    assert cli.main(["figures", "F1", "--tiny", "-q", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "f1_lemma31.png").exists() and (tmp_path / "f1_lemma31.pdf").exists()
    assert "F1." in capsys.readouterr().out
