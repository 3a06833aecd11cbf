"""Issue 12.3-12.4: the CIFAR-10 CPU preset (``linsam cifar --preset cpu``).

The MLP's closed-form 1-SAM, L-SAM and J-SAM equal the autodiff rules (float64, exact tier);
the preset runs end to end at toy size (every method, two seeds, paired intervals, the figure,
atomic files); the several-seed aggregate computes its intervals from the per-seed numbers; bad
input is refused naming the flag; claim C8 reports the CPU proxy beside "ResNet-18: not run here".
"""

import json

import numpy as np
import pytest

pytest.importorskip("flax")
pytest.importorskip("optax")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from scipy import stats as sps  # noqa: E402

from linsam import rules  # noqa: E402
from linsam.cifar import presets  # noqa: E402
from linsam.cifar import small  # noqa: E402
from linsam.cifar import train as T  # noqa: E402
from test_cifar import _cli, fast_compile, synthetic  # noqa: E402,F401  (fast_compile: autouse fixture)


def _leaves_close(a, b, rtol, atol, label):
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=label)


@pytest.mark.parametrize("depth,names", [
    (2, ("one_sam", "jreg")),  # the fast case: 1-SAM and J-reg through two hidden layers
    pytest.param(2, ("one_sam", "lsam", "jsam", "jreg"), marks=pytest.mark.slow),
    pytest.param(1, ("one_sam", "lsam", "jsam", "jreg"), marks=pytest.mark.slow),
])
def test_mlp_closed_forms_equal_autodiff_float64(depth, names):
    """Exact-identity tier (float64, rtol 1e-10): the rank-one closed forms of the MLP against
    ``method.autodiff`` (generic per-example autodiff of the same ``apply``); at rho = 0 every
    rule is GD; a perturbation that matters changes the direction (the test can fail)."""
    net = small.MLP(width=7, depth=depth, compute_dtype="float64")
    model = small.make_small_model(net)
    assert isinstance(model, small.MLPModel) and set(model.closed_forms) == {rules.OneSAM, rules.LSAM, rules.JSAM, rules.JReg}
    params = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64),
                                    small.init_small_variables(net, 3, (4, 4, 3))["params"])
    rng = np.random.default_rng(depth)
    X = jnp.asarray(rng.standard_normal((6, 4, 4, 3)))
    t = jnp.asarray(rng.integers(0, 10, 6))
    classes = tuple(rules.METHOD_CLASSES[n] for n in names)

    @jax.jit  # one program for every rule (compiling seven small ones dominates the test's time)
    def directions(params):
        gd = rules.GD().direction(model, params, X, t)
        return gd, [(c(0.3).direction(model, params, X, t), c(0.3).autodiff(model, params, X, t),
                     c(0.0).direction(model, params, X, t)) for c in classes]

    gd, outs = directions(params)
    for cls, (closed, auto, at_zero) in zip(classes, outs):
        _leaves_close(closed, auto, 1e-10, 1e-13, f"{cls.name} closed vs autodiff")
        _leaves_close(at_zero, gd, 1e-10, 1e-13, f"{cls.name} at rho 0 vs GD")
        moved = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(closed),
                                                                  jax.tree_util.tree_leaves(gd)))
        assert moved > 1e-4, f"{cls.name} at rho 0.3 equals GD: the perturbation had no effect"


def test_mlp_closed_form_refuses_an_unknown_rule():
    with pytest.raises(ValueError, match="kind must be one_sam, lsam or jsam"):
        small.mlp_sam_direction("nsam", 1, {}, jnp.zeros((1, 2, 2, 3)), jnp.zeros(1, int), 0.5)


def _toy_cpu_configs(methods, **kw):
    fields = presets.preset_fields("cpu")
    fields.update(width=8, epochs=1, batch_size=16, train_subset=32, eval_train_size=None, eval_batch_size=16,
                  log_every=100)
    fields.update(kw)
    return [T.CifarConfig(method=m, **fields) for m in methods]


def test_cpu_preset_at_toy_size_writes_seeds_and_paired_intervals(tmp_path):
    """The preset's settings (MLP, no norm, constant lr, 30% noise) at toy size: 8x8 synthetic
    images, width 8, 1 epoch, two seeds, SGD and 1-SAM; OUT holds results.json only (no figure
    here: the slow test below draws it)."""
    out, work = tmp_path / "out", tmp_path / "work"
    agg = T.run_seeds(_toy_cpu_configs(["gd", "one_sam"]), [0, 1], out, dataset=synthetic(n_train=48), work_dir=work,
                      verbose=False, extra_info={"preset": "cpu"}, plot=False)
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["schema"] == "linsam.cifar.results/1+seeds" and on_disk["seeds_run"] == [0, 1]
    assert on_disk["linsam_version"] and on_disk["preset"] == "cpu" and on_disk["run"]["wall_s"] > 0
    for m in ("gd", "one_sam"):
        r = on_disk["methods"][m]
        assert r["n_seeds"] == 2 and r["model"]["arch"] == "mlp1x8" and r["config"]["arch"] == "mlp"
        for s in ("0", "1"):
            row = r["seeds"][s]
            for k in ("peak_test_acc", "peak_epoch", "final_test_acc", "final_train_acc_clean",
                      "final_train_acc_noisy", "status"):
                assert row[k] is not None, (m, s, k)
            assert row["curves"]["epoch"] == [1] and len(row["curves"]["test_acc"]) == 1
        peaks = [r["seeds"][s]["peak_test_acc"] for s in ("0", "1")]
        assert r["peak_test_acc"] == pytest.approx(np.mean(peaks))
    # seeds differ in their data and initial weights (explicit seeds, not one run repeated)
    d0 = json.loads((work / "seed_0" / "gd" / "results.json").read_text())
    d1 = json.loads((work / "seed_1" / "gd" / "results.json").read_text())
    assert d0["config"]["seed"] == 0 and d1["config"]["seed"] == 1 and d0["epochs"] != d1["epochs"]
    assert agg["paired"]["one_sam_minus_gd"]["n"] == 2


@pytest.mark.slow  # every method of the preset compiles, and the figure is drawn (about 15 s)
def test_cpu_preset_every_method_at_toy_size(tmp_path):
    methods = presets.PRESETS["cpu"]["methods"]
    out, work = tmp_path / "out", tmp_path / "work"
    agg = T.run_seeds(_toy_cpu_configs(methods), [0], out, dataset=synthetic(n_train=48), work_dir=work,
                      verbose=False)
    assert sorted(p.name for p in out.iterdir()) == ["curves.png", "results.json"]  # atomic: no temporary left
    assert (out / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert list(agg["methods"]) == list(methods) and agg["comparable"]
    assert agg["methods"]["jreg_fixed"]["seeds"]["0"]["lam_act"] > 0  # Prop. 4.1 coefficients filled in


def _fake_seed_file(work, seed, peaks):
    methods = {}
    for m, peak in peaks.items():
        ep = [dict(epoch=1, test_acc=peak - 0.01, train_acc_clean=0.5, train_acc_noisy=0.1),
              dict(epoch=2, test_acc=peak, train_acc_clean=0.6, train_acc_noisy=0.2),
              dict(epoch=3, test_acc=peak - 0.05, train_acc_clean=0.7, train_acc_noisy=0.4)]
        methods[m] = dict(peak_test_acc=peak, peak_epoch=2, final_test_acc=peak - 0.05, completed_epochs=3,
                          status="completed", config=dict(method=m, seed=seed, arch="mlp", epochs=3),
                          data=dict(n_train=10000, realised_rate=0.3), model=dict(arch="mlp1x512"), epochs=ep)
    d = work / f"seed_{seed}"
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps({"methods": methods, "comparable": True}))


def test_aggregate_seeds_intervals_from_the_per_seed_numbers(tmp_path):
    """Mean and Student-t 95% interval of the peaks; the paired gain interval from the
    seed-by-seed differences (computed here with scipy directly)."""
    gd, sam = [0.40, 0.38, 0.41], [0.43, 0.42, 0.42]
    for s in range(3):
        _fake_seed_file(tmp_path, s, {"gd": gd[s], "one_sam": sam[s]})
    agg = T.aggregate_seeds(tmp_path / "out", [0, 1, 2], work_dir=tmp_path)
    diff = np.subtract(sam, gd)
    half = sps.t.ppf(0.975, 2) * diff.std(ddof=1) / np.sqrt(3)
    g = agg["methods"]["one_sam"]["gain_over_gd"]
    assert g["mean"] == pytest.approx(diff.mean()) and g["n"] == 3
    assert (g["lo"], g["hi"]) == pytest.approx((diff.mean() - half, diff.mean() + half))
    ci = agg["methods"]["gd"]["peak_test_acc_ci"]
    half_gd = sps.t.ppf(0.975, 2) * np.std(gd, ddof=1) / np.sqrt(3)
    assert (ci["lo"], ci["hi"]) == pytest.approx((np.mean(gd) - half_gd, np.mean(gd) + half_gd))
    assert agg["methods"]["gd"]["seeds"]["1"]["final_train_acc_noisy"] == 0.4
    assert agg["methods"]["gd"]["seeds"]["1"]["peak_train_acc_noisy"] == 0.2
    assert agg["gaps"]["one_sam_minus_gd"] == pytest.approx(diff.mean())


@pytest.mark.parametrize("extra,needle", [
    (["--noise", "1.0"], "--noise"),
    (["--noise", "-0.2"], "--noise"),
    (["--seeds", "0,0"], "--seeds"),
    (["--seeds", "0,x"], "--seeds"),
    (["--seeds", "-1"], "--seeds"),
    (["--seed", "1", "--seeds", "0,1"], "contradict"),
    (["--arch", "vgg"], "--arch"),
    (["--norm", "layer"], "--norm"),
    (["--depth", "0"], "--depth"),
    (["--arch", "cnn", "--depth", "6"], "--depth"),
    (["--data", "/nonexistent/cifar.tar.gz"], "data path"),
])
def test_cpu_preset_refuses_bad_arguments_before_work(tmp_path, capsys, extra, needle):
    argv = ["cifar", "--preset", "cpu", "--out", str(tmp_path / "out")] + extra
    if "--data" not in extra:
        argv += ["--data", str(tmp_path)]
    assert _cli(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "error" in err
    assert not (tmp_path / "out").exists()


def _c8_measured(monkeypatch, proxy):
    import paper_checks
    from paper_checks import c8_cifar as c8

    monkeypatch.setattr(c8, "CPU_PROXY_RESULTS", proxy)
    return paper_checks.run_claim("C8", paper_checks.Context(mode="tiny"))


def c8_default_is(path):
    from paper_checks import c8_cifar as c8

    return c8.default_proxy() == path


def test_c8_finds_the_shipped_proxy_under_the_working_directory_when_installed(tmp_path, monkeypatch):
    """After `pip install .` the package has no results/: C8 reads them from a clone's root."""
    from paper_checks import c8_cifar as c8

    monkeypatch.setattr(c8, "CPU_PROXY_RESULTS", tmp_path / "site-packages" / "results.json")  # not there
    target = tmp_path / "clone" / "results" / "cifar_cpu" / "results.json"
    target.parent.mkdir(parents=True)
    target.write_text("{}")
    monkeypatch.chdir(tmp_path / "clone")
    assert c8.default_proxy() == target


def test_c8_reports_the_cpu_proxy_beside_resnet_not_run(tmp_path, monkeypatch):
    from paper_checks import NOT_COMPARABLE, NOT_RUN

    for s, (g, o) in enumerate([(0.40, 0.43), (0.38, 0.42), (0.41, 0.42)]):
        _fake_seed_file(tmp_path, s, {"gd": g, "one_sam": o})
    T.aggregate_seeds(tmp_path / "out", [0, 1, 2], work_dir=tmp_path)
    proxy = tmp_path / "out" / "results.json"
    r = _c8_measured(monkeypatch, proxy)
    assert r.verdict == NOT_RUN and r.measured.startswith("ResNet-18: not run here")
    assert c8_default_is(proxy)
    assert "CPU proxy (mlp1x512" in r.measured and "3 seeds" in r.measured
    assert "1-SAM 42.3% [" in r.measured and "(vs SGD +2.7 pp [" in r.measured
    monkeypatch.chdir(tmp_path)  # nor under the working directory (the fallback after `pip install .`)
    r = _c8_measured(monkeypatch, tmp_path / "absent.json")  # no proxy shipped: the plain "not run here"
    assert r.verdict == NOT_RUN and "CPU proxy" not in r.measured
    import paper_checks

    named = paper_checks.run_claim("C8", paper_checks.Context(mode="tiny", cifar_results=proxy))
    assert named.verdict == NOT_COMPARABLE and "arch 'mlp' (paper: 'resnet')" in named.measured
    assert "CPU proxy" in named.measured


def test_shipped_cpu_results_are_the_preset():
    """results/cifar_cpu/results.json (the run C8 reports by default), when shipped, is a
    complete run of the preset: every method, >= 3 seeds, >= 10,000 images, 30% noise."""
    from paper_checks import c8_cifar as c8

    if not c8.CPU_PROXY_RESULTS.is_file():
        pytest.skip("results/cifar_cpu/results.json not shipped in this checkout")
    agg = json.loads(c8.CPU_PROXY_RESULTS.read_text())
    assert agg["schema"] == "linsam.cifar.results/1+seeds" and agg["preset"] == "cpu"
    assert list(agg["methods"]) == list(presets.PRESETS["cpu"]["methods"]) and len(agg["seeds_run"]) >= 3
    for r in agg["methods"].values():
        assert r["data"]["n_train"] >= 10000 and r["config"]["noise_rate"] == 0.3 and r["data"]["n_test"] == 10000
        assert r["n_seeds"] >= 3 and r["status"] == "completed"
