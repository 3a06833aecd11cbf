"""Tests of linsam.simulate: the scan equals a hand-written loop, sweeps equal single runs,
metrics equal autodiff per-example gradients, results round-trip, bad configs are refused.

Tolerance tiers: exact identities in float64 (rtol 1e-10: the same arithmetic in another
order); no statistical checks here (those live in the regime map).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import dln, logreg, models, rules
from linsam import simulate as sim
from linsam._src.engine.scan import batch as _batch
from linsam.data import MixtureSpec, NoiseSpec
from simcases import TINY, TINY_DLN, TINY_TOML, dln_result, logreg_result

EXACT = dict(rtol=1e-10, atol=1e-12)  # float64 identity, different summation order


@pytest.fixture(scope="module")
def tiny_logreg():
    return logreg_result()


@pytest.fixture(scope="module")
def tiny_dln():
    return TINY_DLN, dln_result()


def _manual(cfg, method, rho, seed, model):
    """A plain Python loop with the validated public rules: the reference trajectory."""
    ds = sim.training_data(cfg, seed)
    p = sim.initial_params(cfg, seed)
    out = [p]
    hyper = dict(lam_last=cfg.lam_last, lam_act=cfg.lam_act) if method == "jreg_fixed" else {}
    value = rules.method(method, **hyper) if method in ("gd", "jreg_fixed") else rules.method(method, rho=rho)
    for _ in range(cfg.steps):
        u = rules.direction(value, model, p, ds.X, ds.noisy)
        p = jax.tree_util.tree_map(lambda a, g: a - cfg.lr * g, p, u)
        out.append(p)
    return [out[s] for s in sim.record_steps(cfg)]


def test_record_steps():
    np.testing.assert_array_equal(sim.record_steps(TINY), [0, 1, 2, 4, 6])


def test_logreg_scan_equals_python_loop(tiny_logreg):
    res = tiny_logreg
    assert res.metrics["test_acc"].shape == (2, 3, 2, 5)
    for mi, method in enumerate(TINY.methods):
        for ri, rho in enumerate(TINY.rhos):
            for si, seed in enumerate(res.axes["seed"]):
                ref = _manual(TINY, method, rho, int(seed), models.LogReg())
                np.testing.assert_allclose(res.params[mi, ri, si], np.stack(ref), **EXACT, err_msg=f"{method} rho={rho}")


def test_dln_scan_equals_python_loop(tiny_dln):
    cfg, res = tiny_dln
    for mi, method in enumerate(cfg.methods):
        ref = _manual(cfg, method, 0.7, 1, models.DLN(hidden=cfg.hidden))
        np.testing.assert_allclose(res.params.v[mi, 1, 1], np.stack([p.v for p in ref]), **EXACT, err_msg=method)
        np.testing.assert_allclose(res.params.W[mi, 1, 1], np.stack([p.W for p in ref]), **EXACT, err_msg=method)


def test_sweep_slice_equals_single_run(tiny_logreg):
    traj = sim.run(TINY, "one_sam", 0.7, 1, keep_params=True)
    for k, v in traj.metrics.items():
        np.testing.assert_allclose(v, tiny_logreg.sel(k, method="one_sam", rho=0.7, seed=1), **EXACT, err_msg=k)
    np.testing.assert_array_equal(traj.steps, tiny_logreg.axes["step"])


def test_gd_trajectory_does_not_depend_on_rho(tiny_logreg):
    acc = tiny_logreg.sel("test_acc", rule="gd")
    np.testing.assert_array_equal(acc[0], acc[1])
    # ... while its rho-dependent metrics do (evaluated at each rho)
    np.testing.assert_array_equal(acc[0], acc[2])
    w = tiny_logreg.sel("sam_weight_clean", rule="gd")
    np.testing.assert_array_equal(w[0], 1.0)
    assert np.all(w[1] > 1.0) and np.all(w[2] > w[1])


def test_metrics_equal_autodiff_per_example_grads(tiny_logreg, tiny_dln):
    """sam_grad_norm_* is the norm of the true per-example gradient at w + eps_i."""
    cases = [(TINY, tiny_logreg, models.LogReg(), lambda p: p), (*tiny_dln, models.DLN(hidden=3), lambda p: p)]
    for cfg, res, model, _ in cases:
        seed = int(res.axes["seed"][0])
        ds = sim.training_data(cfg, seed)
        rho = 0.7
        mi = res.axes["rule"].index("one_sam")
        p = jax.tree_util.tree_map(lambda a: jnp.asarray(a[mi, 1, 0, 3]), res.params)
        g = rules.per_example_grads(model, p, ds.X, ds.noisy)
        gnorm = jnp.sqrt(sum(jnp.sum(x.reshape(x.shape[0], -1) ** 2, axis=1) for x in jax.tree_util.tree_leaves(g)))

        def perturbed_norm(i):
            gi = jax.tree_util.tree_map(lambda a: a[i], g)
            eps = jax.tree_util.tree_map(lambda a: rho * a / gnorm[i], gi)
            q = jax.tree_util.tree_map(jnp.add, p, eps)
            gq = jax.grad(lambda q: rules.example_loss(model, q, ds.X[i], ds.noisy[i]))(q)
            return rules.safe_norm(gq)

        sam_norms = jnp.stack([perturbed_norm(i) for i in range(cfg.n)])
        clean, noisy = ~ds.mask, ds.mask
        got = {k: res.metrics[k][mi, 1, 0, 3] for k in res.metrics}
        np.testing.assert_allclose(got["grad_norm_clean"], gnorm[clean].mean(), **EXACT)
        np.testing.assert_allclose(got["grad_norm_noisy"], gnorm[noisy].mean(), **EXACT)
        np.testing.assert_allclose(got["sam_grad_norm_clean"], sam_norms[clean].mean(), **EXACT)
        np.testing.assert_allclose(got["sam_grad_norm_noisy"], sam_norms[noisy].mean(), **EXACT)
        np.testing.assert_allclose(got["sam_grad_norm_ratio"], sam_norms[clean].mean() / sam_norms[noisy].mean(), **EXACT)
        losses = jax.vmap(lambda x, t: rules.example_loss(model, p, x, t))(ds.X, ds.noisy)
        np.testing.assert_allclose(got["loss_noisy"], losses[noisy].mean(), **EXACT)


def test_dln_norm_metrics(tiny_dln):
    cfg, res = tiny_dln
    ds = sim.training_data(cfg, int(res.axes["seed"][1]))
    p = dln.DLNParams(*(jnp.asarray(a[2, 0, 1, -1]) for a in res.params))
    got = {k: res.metrics[k][2, 0, 1, -1] for k in res.metrics}
    np.testing.assert_allclose(got["v_norm"], jnp.linalg.norm(p.v), **EXACT)
    np.testing.assert_allclose(got["W_norm"], jnp.linalg.norm(p.W), **EXACT)
    np.testing.assert_allclose(got["act_norm"], jnp.linalg.norm(ds.X @ p.W.T, axis=1).mean(), **EXACT)
    np.testing.assert_allclose(got["w_norm"], jnp.linalg.norm(p.W.T @ p.v), **EXACT)


def test_train_accuracy_metrics(tiny_logreg):
    ds = sim.training_data(TINY, 0)
    w = jnp.asarray(tiny_logreg.params[1, 1, 0, -1])
    z = ds.noisy * (ds.X @ w)
    got = tiny_logreg.sel("train_acc_noisy", rule="one_sam", rho=0.7, seed=0)[-1]
    np.testing.assert_allclose(got, np.mean(np.asarray(z[ds.mask]) > 0), **EXACT)  # numpy mean: float64 reference
    assert ds.rate == 3 / 12


def test_zero_init_dln_stays_put_without_nan():
    # same static signature as TINY_DLN (init_scale is traced): no new compilation
    res = sim.simulate(TINY_DLN.replace(init_scale=0.0), keep_params=True)
    for leaf in res.params:
        assert np.all(leaf == 0.0)
    assert np.all(res.metrics["test_acc"] == 0.5)
    assert np.all(np.isfinite(res.metrics["train_acc"]))


def test_minibatch_epochs_use_every_example_once():
    n, B = 10, 3
    X = jnp.arange(n, dtype=jnp.float32)[:, None]
    t = jnp.ones(n)
    key = jax.random.PRNGKey(0)
    seen = np.concatenate([np.asarray(_batch(key, i, X, t, B)[0][:, 0]) for i in range(3)])
    assert len(set(seen.tolist())) == 9  # one epoch = 3 disjoint batches
    nxt = np.asarray(_batch(key, 3, X, t, B)[0][:, 0])
    assert not np.array_equal(nxt, seen[:3])  # a new epoch reshuffles


def test_save_load_roundtrip(tiny_logreg, tmp_path):
    out = tiny_logreg.save(tmp_path / "res")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "params.npz", "results.nc"]  # params kept
    back = sim.SweepResult.load(out)
    assert back.config == TINY and back.axes["rule"] == list(TINY.methods)
    for k, v in tiny_logreg.metrics.items():
        np.testing.assert_array_equal(back.metrics[k], v)
    np.testing.assert_array_equal(back.noise_rate, tiny_logreg.noise_rate)
    info = json.loads((out / "config.json").read_text())
    assert info["linsam_version"] and info["axes"] == ["rule", "rho", "seed", "step"]


def test_config_dict_roundtrip():
    cfg = TINY.replace(meta=(("role", "report"),), data=MixtureSpec("anisotropic", 6, 1.0, mean_coords=(2, 4)),
                       noise=NoiseSpec("boundary", 0.2, temperature=0.3))
    assert sim.SimConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_shipped_configs_parse():
    names = sim.shipped_configs()
    assert "default" in names
    for name in names:
        cfg = sim.load_config(name)
        assert cfg.name == name, f"{name}.toml must set name = {name!r}"


def test_default_sweep_is_the_issue_sweep():
    cfg = sim.load_config("default")
    assert (len(cfg.methods), len(cfg.rhos), cfg.num_seeds) == (2, 8, 20)
    assert (cfg.n, cfg.data.d, cfg.steps) == (500, 2000, 3000)


@pytest.mark.parametrize(
    "changes, msg",
    [
        (dict(n=1), "n must be an integer >= 2"),
        (dict(steps=0), "steps must be an integer >= 1"),
        (dict(record_every=0), "record_every must be an integer >= 1"),
        (dict(record_every=-2), "record_every must be an integer >= 1"),
        (dict(steps=7, record_dense=0), "must be a multiple of record_every"),
        (dict(methods=("gd", "sam")), "methods must be one of"),
        (dict(model="cnn"), "model must be one of"),  # ("mlp" is a model since issue 12)
        (dict(rhos=(-0.1,)), "rhos must be a finite number >= 0"),
        (dict(lr=0.0), "lr must be a finite number > 0"),
        (dict(batch_size=13), "batch_size must be an integer in"),
        (dict(noise=NoiseSpec("symmetric", 1.0)), r"noise.rate must be in \[0, 1\)"),
        (dict(noise=NoiseSpec("symmetric", -0.1)), r"noise.rate must be in \[0, 1\)"),
        (dict(data=MixtureSpec("spiral", 5)), "data.kind must be one of"),
        (dict(num_seeds=0), "num_seeds must be an integer >= 1"),
    ],
)
def test_bad_config_refused_before_work(changes, msg):
    with pytest.raises(ValueError, match=msg):
        sim.simulate(dataclasses.replace(TINY, **changes))  # simulate validates first


def test_unknown_config_keys_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown config key"):
        sim.SimConfig.from_dict({"n": 10, "stpes": 5})
    with pytest.raises(ValueError, match=r"unknown \[noise\] key"):
        sim.SimConfig.from_dict({"noise": {"rate": 0.1, "kind": "symmetric", "temp": 1}})
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\nsteps = -1\n')
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sim.load_config(bad)


def test_cli_simulate_sgd_and_regimes(tmp_path):
    """The CLI end to end, on the mini-batch (SGD) version of TINY: run twice (bit-identical),
    differs from full batch, same start; then the regime report from the saved results."""
    from linsam import cli

    cfg_path = tmp_path / "tiny.toml"
    cfg_path.write_text(TINY_TOML.replace("n = 12\n", "n = 12\nbatch_size = 4\n"))
    out = tmp_path / "res"
    for target in ("tiny_cli", "again"):
        assert cli.main(["simulate", "--config", str(cfg_path), "--out", str(out / target)]) == 0
    assert (out / "tiny_cli" / "results.nc").exists()
    a, b = sim.SweepResult.load(out / "tiny_cli"), sim.SweepResult.load(out / "again")
    assert a.config.batch_size == 4
    np.testing.assert_array_equal(a.metrics["test_acc"], b.metrics["test_acc"])
    full = logreg_result()
    assert not np.allclose(a.metrics["w_norm"][..., -1], full.metrics["w_norm"][..., -1])
    np.testing.assert_array_equal(a.metrics["w_norm"][..., 0], full.metrics["w_norm"][..., 0])  # same start
    (out / "again" / "config.json").unlink()  # one run per regime in the report
    doc = tmp_path / "regimes.md"
    assert cli.main(["regimes", "--results", str(out), "--out", str(doc)]) == 0
    text = doc.read_text()
    assert "tiny regime" in text and "1-SAM" in text and "| 0.7 (fixed) |" in text and "validation-selected" in text


def test_zero_init_first_gd_step_is_the_mean_classifier():
    """From w = 0 the first GD step is lr/2 * mean_i t_i x_i: its test accuracy is the mean
    classifier's (the reference line of the regime map). 1-SAM's first step weights example i
    by sigma(rho ||x_i||): the same direction only at rho = 0 (or equal norms)."""
    res = sim.simulate(TINY.replace(init_scale=0.0), keep_params=True)  # init_scale is traced: no recompile
    ref = sim.mean_classifier_accuracy(TINY)
    assert res.axes["step"][1] == 1
    for ri in range(3):
        np.testing.assert_allclose(res.sel("test_acc", rule="gd")[ri, :, 1], ref, **EXACT)
    np.testing.assert_allclose(res.sel("test_acc", rule="one_sam", rho=0.0)[:, 1], ref, **EXACT)
    assert not np.allclose(res.sel("test_acc", rule="one_sam", rho=1.5)[:, 1], ref)


def test_initialisation_matches_the_core_definition():
    """The simulator's init is the core's init formula (same key, float64)."""
    _, k_init, _ = jax.random.split(jax.random.PRNGKey(3), 3)
    np.testing.assert_allclose(sim.initial_params(TINY, 3), logreg.init(k_init, 5, 1.0), **EXACT)
    p = sim.initial_params(TINY_DLN, 3)
    q = dln.init(k_init, 5, 3, 1.0)
    np.testing.assert_allclose(p.v, q.v, **EXACT)
    np.testing.assert_allclose(p.W, q.W, **EXACT)


def test_shipped_regime_configs_shrink_and_validate():
    """Every shipped sweep config, shrunk to CI size, is a valid config (the runs themselves:
    ``pytest -m slow``)."""
    for name in sim.shipped_configs():
        cfg = _shrink(sim.load_config(name))
        assert cfg.validate() is cfg


def _shrink(cfg):
    d = max(6, cfg.num_classes)
    data = cfg.data._replace(d=d, mean_coords=tuple(min(c, 5) for c in cfg.data.mean_coords),
                             num_spikes=min(cfg.data.num_spikes, d))
    noise = cfg.noise._replace(group_coord=min(cfg.noise.group_coord, 5))
    return cfg.replace(n=16, steps=4, record_every=2, record_dense=2, num_seeds=2, seed_chunk=0,
                       rhos=cfg.rhos[:2], hidden=min(cfg.hidden, 3), data=data, noise=noise)


@pytest.mark.slow
@pytest.mark.parametrize("name", sim.shipped_configs())
def test_shipped_configs_run_small(name):
    res = sim.simulate(_shrink(sim.load_config(name)))
    assert np.all(np.isfinite(res.metrics["test_acc"]))


@pytest.mark.slow
def test_default_sweep_full(tmp_path):
    """The issue's default sweep, full size (minutes on 2 CPU cores)."""
    from linsam import cli

    assert cli.main(["simulate", "--default-sweep", "--out", str(tmp_path / "default")]) == 0
    res = sim.SweepResult.load(tmp_path / "default")
    assert res.metrics["test_acc"].shape == (2, 8, 20, len(sim.record_steps(res.config)))
