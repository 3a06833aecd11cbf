"""Configs by composition (linsam._src.configs) and the folded settings of the checks and figures.

The expected values are fixtures generated once from the files before the change (one TOML per
run, read by the old loader): every old name must resolve to the same SimConfig.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from linsam import simulate
from linsam._src import configs
from reproduction import _config

FIXTURES = Path(__file__).parent / "fixtures"
OLD = json.loads((FIXTURES / "configs_before_issue10.json").read_text())["configs"]
OLD_SETTINGS = json.loads((FIXTURES / "settings_before_issue10.json").read_text())["settings"]
LOADERS = [configs.load_config, simulate.load_config]  # the library's public name and its home


def _same(got, want, where):
    """Equal, floats to rounding (they are in fact equal bit for bit)."""
    if isinstance(want, dict):
        assert set(got) == set(want), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), where
        for i, (g, w) in enumerate(zip(got, want)):
            _same(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=1e-15, abs=0.0), where
    else:
        assert got == want and type(got) is type(want), where


#: Runs that issue 11 (controls and new regimes) added: three regime files, two of them
#: extending the first, and the `controls` variants that report iso_rand / iso_zero.
ISSUE11_RUNS = {"aniso_power_select", "aniso_power_report", "aniso_spiked_select", "aniso_spiked_report",
                "hetero_norm_select", "hetero_norm_report", "iso_rand_report", "iso_zero_report"}
#: (issue 19: the DLN regime's meta gained blowup_norm.)
#: Runs whose settings issue 11 changed on purpose (controls added, iso_rand's grid extended past
#: its old edge rho* = 12, shorter runs: every peak is before step 300), by the fields it changed.
ISSUE11_CHANGED = {"iso_rand_select": {"methods", "rhos", "steps", "knob_scale"},
                   "iso_zero_select": {"methods", "rhos", "steps", "knob_scale"},
                   "dln_select": {"methods", "knob_scale", "meta"}, "dln": {"methods", "knob_scale", "meta"},
                   "dln_smalllr": {"knob_scale", "meta"}, "iso_rand_biglr": {"steps", "knob_scale"},
                   "default": {"knob_scale", "meta"}, "iso_zero": {"knob_scale", "meta", "steps"},
                   **{f"struct_{k}": {"rhos", "steps", "knob_scale", "meta"}
                      for k in ("bernoulli", "boundary", "class_conditional", "subgroup")}}
#: [data] fields issue 11 added, at their defaults (spiked spectrum, heterogeneous norms).
NEW_DATA_FIELDS = {"num_spikes": 1, "spike": 1.0, "norm_ratio": 1.0, "norm_frac": 0.0}
#: top-level fields issue 12 added (the MLP's second width, the held-out test sample), and issue 11
#: the softmax model's class count, at their defaults.
NEW_TOP_FIELDS = {"hidden2": 0, "test_size": 10000, "num_classes": 2, "val_size": 0}  # + issue 19's validation split


def test_toml_files_and_every_old_run_is_shipped():
    files = sorted(configs.configs_dir().rglob("*.toml"))
    assert len(files) <= 16, [f.name for f in files]  # 12, plus one per regime that issue 11 added
    for lib in (configs, simulate):
        assert set(lib.shipped_configs()) >= set(OLD)
        assert ISSUE11_RUNS <= set(lib.shipped_configs())


@pytest.mark.parametrize("name", sorted(OLD))
def test_every_old_config_resolves_to_the_same_simconfig(name):
    got = simulate.load_config(name).to_dict()
    want = dict(OLD[name])
    for d in (got, want):
        d.pop("description")  # free text; the old ones named files that no longer exist
    for k, v in NEW_DATA_FIELDS.items():
        assert got["data"].pop(k) == v, name
    for k, v in NEW_TOP_FIELDS.items():
        assert got.pop(k) == v, name
    changed = ISSUE11_CHANGED.get(name, set())
    if "knob_scale" not in changed:
        assert got.pop("knob_scale") == {}, name
    for k in changed:
        got.pop(k, None)
        want.pop(k, None)
    _same(got, want, name)


def test_references_by_table_and_keyword_agree_with_the_names():
    same = [("reproduce_linear@quick", {}, "reproduce_linear_quick"),
            ("reproduce_linear", {"mode": "tiny"}, "reproduce_linear_tiny"),
            ("reproduce_linear_zero_init@full", {}, "reproduce_linear_zero_init_full"),
            ("iso_rand", {"seeds": "select"}, "iso_rand_select"),
            ("iso_rand@report", {}, "default"),
            ("iso_rand@biglr", {}, "iso_rand_biglr"),
            ("iso_rand@subgroup", {}, "struct_subgroup"),
            ("dln@report", {}, "dln")]
    for ref, kw, name in same:
        assert configs.load_config(ref, **kw) == configs.load_config(name), ref
    assert configs.load_config(configs.configs_dir() / "reproduce_dln.toml", mode="quick").name == "reproduce_dln_quick"


def test_rules_follow_the_mode():
    for mode, d in (("tiny", 20), ("quick", 100)):
        data = configs.load_config("reproduce_linear", mode=mode).data
        assert data.d == d and data.sigma == 1 / math.sqrt(d) and data.mean_norm == pytest.approx(1.5 * data.sigma)


#: What every config must say (configs.REQUIRED); added at the top unless ``text`` sets it.
_WHAT = {"methods": 'methods = ["gd"]', "rhos": "rhos = [0.0]"}


def _write(tmp_path, text, name="cfg.toml", complete=False):
    p = tmp_path / name
    if complete:
        top = text.split("\n[", 1)[0]
        text = "".join(f"{line}\n" for key, line in _WHAT.items() if not re.search(rf"^{key}\s*=", top, re.M)) + text
    p.write_text(text)
    return p


@pytest.mark.parametrize("load", LOADERS)
def test_malformed_toml_names_the_file(tmp_path, load):
    p = _write(tmp_path, "steps = [\n")
    with pytest.raises(ValueError, match=str(p).replace(".", r"\.") + ".*not valid TOML"):
        load(p)


@pytest.mark.parametrize("load", LOADERS)
@pytest.mark.parametrize("text,field", [('rhos = "a"', "rhos"), ("rhos = [1.0, \"a\"]", "rhos"),
                                        ('methods = [1]', "methods"), ('lr = "fast"', "lr"),
                                        ("lam_scale_by_rho = 1", "lam_scale_by_rho"), ('model = 3', "model"),
                                        ('[data]\nsigma = "1/sqrt(dd)"', "data.sigma"), ("n = [3]", "n")])
def test_a_wrong_type_names_the_field_and_the_file(tmp_path, load, text, field):
    p = _write(tmp_path, text + "\n")
    with pytest.raises(ValueError) as err:
        load(p)
    assert str(p) in str(err.value) and field in str(err.value)


def test_a_name_cannot_leave_the_output_directory(tmp_path):
    for bad in ("../evil", "a/b", "..", ".hidden", ""):
        with pytest.raises(ValueError, match="name must be a plain file name"):
            configs.load_config(_write(tmp_path, f'name = "{bad}"\n'))
    assert configs.load_config(_write(tmp_path, 'name = "ok-1.2_x"\n', complete=True)).name == "ok-1.2_x"


def test_rules_are_arithmetic_only(tmp_path):
    lookup = {"d": 4.0}.__getitem__
    assert configs.evaluate_rule("2*sqrt(d) - 1/d + d**0.5 + -exp(0) + log(1) + pi*0", lookup, "x") == 4 - 0.25 + 2 - 1
    for bad in ("__import__('os')", "d.real", "(lambda: 1)()", "[1][0]", "d if d else 1", "sqrt(d, 2)", "1/0",
                "10.0**400", "'a'"):
        with pytest.raises(ValueError, match="^x: "):
            configs.evaluate_rule(bad, lookup, "x")
    cyc = _write(tmp_path, '[data]\nsigma = "2*mean_norm"\nmean_norm = "sigma"\n')
    with pytest.raises(ValueError, match="refers to itself"):
        configs.load_config(cyc)
    whole = _write(tmp_path, 'n = "10*4"\nsteps = "n/3"\n')
    with pytest.raises(ValueError, match="steps.*not an integer"):
        configs.load_config(whole)
    ok = configs.load_config(_write(tmp_path, 'n = "10*4"\nsteps = "n/4"\nrecord_every = 1\n', complete=True))
    assert (ok.n, ok.steps) == (40, 10) and isinstance(ok.n, int)


def test_composition_extends_modes_seeds_and_variants(tmp_path):
    user = _write(tmp_path, 'extends = "reproduce_linear"\nlr = 3.0\n[modes.tiny]\nsteps = 10\n', "mine.toml")
    with pytest.raises(ValueError, match=r"pick a mode: one of \['tiny', 'quick', 'full'\]"):
        configs.load_config(user)
    cfg = configs.load_config(user, mode="tiny")
    base = configs.load_config("reproduce_linear_tiny")
    assert cfg == base.replace(name="mine_tiny", lr=3.0, steps=10)
    assert configs.file_modes(user) == ("tiny", "quick", "full") and configs.file_modes("reproduce_linear_tiny") == ()
    with pytest.raises(ValueError, match="no table 'medium'"):
        configs.load_config("reproduce_linear@medium")
    with pytest.raises(ValueError, match="both pick"):
        configs.load_config("iso_rand@select,report")
    with pytest.raises(ValueError, match="not found.*shipped: .*default"):
        configs.load_config("no_such_config")
    loop = _write(tmp_path, 'extends = "loop.toml"\n', "loop.toml")
    with pytest.raises(ValueError, match="extends cycle"):
        configs.load_config(loop)
    # a variant runs on the seed set it names, under its own name, not the seed set's
    biglr, report = configs.load_config("iso_rand_biglr"), configs.load_config("default")
    assert (biglr.seed_offset, biglr.num_seeds) == (report.seed_offset, report.num_seeds) and biglr.lr == 16 * report.lr


def test_folded_settings_equal_the_old_files():
    for key, want in OLD_SETTINGS.items():
        kind, ident, mode = key.split(":")
        if (kind, ident) == ("checks", "C5"):
            continue  # redefined by issue 11 (at 1-SAM's rho* selected on its own seeds, one row per model)
        got = _config.load_settings(kind, ident, mode)
        got.pop("_source")
        for k in ("sweep", "negative_sweep"):
            if k in want:  # the old files named the mode's run; the folded ones name the file
                assert got[k].endswith(f"@{mode}") and configs.load_config(got[k]).name == want[k], key
                got[k] = want[k]
        if (kind, ident) == ("checks", "C7"):  # issue 19: validation-selected stopping, not the oracle peak
            assert got["statistic"] == "selected" and want["statistic"] == "peak", key
            got["statistic"] = want["statistic"]
        if kind == "figures" and ident in ("F2", "F3"):
            got.pop("predict", None)  # added later (issue 13: the a-priori prediction drawn over the bands)
        if kind == "reproduce":  # issue 12 inserted claim C6-MLP right after C6
            assert got["checks"][got["checks"].index("C6") + 1] == "C6-MLP", key
            got["checks"] = [c for c in got["checks"] if c != "C6-MLP"]
        if kind == "reproduce":  # issue 11 appended claim C10 and figure F8 to the lists
            assert got["checks"][-1] == "C10" and got["figures"][-1] == "F8", key
            got["checks"], got["figures"] = got["checks"][:-1], got["figures"][:-1]
        if kind == "reproduce":  # issue 13 appended claim C9 and figure F9 to the lists; the rest is unchanged
            assert got["checks"][-1] == "C9" and got["figures"][-1] == "F9", key
            got["checks"], got["figures"] = got["checks"][:-1], got["figures"][:-1]
        assert got == want, key


def test_a_user_sweep_reference_keeps_its_own_choice(tmp_path):
    pinned = _write(tmp_path, 'sweep = "reproduce_linear_full"\n')
    assert _config.load_settings("checks", "C4", "tiny", pinned)["sweep"] == "reproduce_linear_full"
    with pytest.raises(ValueError, match=r"no entry \[C42\]"):
        _config.load_settings("checks", "C42", "tiny")
