"""The MLP and the XOR data through the sweep engine (issue 12).

Fast tests call the pieces (config, data, record_metrics) directly; the end-to-end sweep, which
compiles the scan backend (~10 s), is marked slow.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import simulate
from linsam.data import MixtureSpec, NoiseSpec, XorMixture, sample_binary, xor_mixture
from linsam.models import MLP
from linsam._src.engine import metrics, sweep
from linsam._src.engine.config import model_of


def mlp_config(**over):
    base = dict(name="mlp_t", model="mlp", methods=["gd", "one_sam"], rhos=[0.3], num_seeds=2, n=20, steps=6,
                lr=0.5, init_scale=1.0, hidden=4, record_every=3, test_size=300, dtype="float64",
                data=dict(kind="xor", d=3, mean_norm=1.0, sigma=0.5), noise=dict(kind="symmetric", rate=0.2))
    base.update(over)
    return simulate.SimConfig.from_dict(base)


def test_xor_labels_and_bayes_accuracy(getkey):
    """Labels are the sign product of the cluster signs; the Bayes rule sign(x1 x2) scores the
    closed-form accuracy (statistical tier: 40,000 draws, |error| < 4 standard errors)."""
    mix = xor_mixture(4, 1.0, 0.7)
    X, t = (np.asarray(a) for a in mix.sample(getkey(), 40_000, dtype=jnp.float64))
    acc = float(np.mean(np.sign(X[:, 0] * X[:, 1]) == t))
    p = float(mix.bayes_accuracy())
    assert abs(acc - p) < 4 * np.sqrt(p * (1 - p) / 40_000)
    # no linear direction separates it: the class means are both 0
    for s in (1.0, -1.0):
        assert np.all(np.abs(X[t == s].mean(0)) < 0.05)
    ds = sample_binary(getkey(), mix, 200, NoiseSpec("symmetric", 0.25))
    noisy, clean, mask = (np.asarray(a) for a in (ds.noisy, ds.clean, ds.mask))
    assert ds.rate == 0.25 and np.all(noisy[~mask] == clean[~mask]) and np.all(noisy[mask] == -clean[mask])


def test_xor_spec_and_refusals():
    assert isinstance(MixtureSpec(kind="xor", d=3, mean_norm=1.0).build(), XorMixture)
    with pytest.raises(ValueError, match="d"):
        xor_mixture(1, 1.0)
    with pytest.raises(ValueError, match="norm_frac"):
        MixtureSpec(kind="xor", d=3, norm_frac=0.5, norm_ratio=2.0).build()


def test_config_model_and_refusals():
    assert model_of(mlp_config()) == MLP(hidden=(4,))
    assert model_of(mlp_config(hidden2=3)) == MLP(hidden=(4, 3))
    with pytest.raises(ValueError, match="hidden2"):
        mlp_config(model="dln", hidden2=3)
    with pytest.raises(ValueError, match="hidden2"):
        mlp_config(hidden2=-1)
    with pytest.raises(ValueError, match="test_size"):
        mlp_config(test_size=0)
    est = sweep.estimate_memory(mlp_config(hidden2=3))
    assert est["device"] > 0


def test_which_runs_use_a_test_sample():
    """The linear models on Gaussian mixtures keep the exact population accuracy (and the linear
    backend); the MLP, and any model on XOR data, use the held-out sample (scan backend)."""
    iso = dict(kind="isotropic", d=3, mean_norm=1.0)
    assert not sweep.uses_test_sample(mlp_config(model="logreg", init_scale=0.0, data=iso))
    assert sweep.backend_of(mlp_config(model="logreg", init_scale=0.0, data=iso), "gd") == "linear"
    assert sweep.uses_test_sample(mlp_config(data=iso))
    xor_logreg = mlp_config(model="logreg", init_scale=0.0)
    assert sweep.uses_test_sample(xor_logreg) and sweep.backend_of(xor_logreg, "gd") == "scan"


def test_held_out_sample_is_fixed_clean_and_keyed_apart():
    cfg = mlp_config()
    X1, t1 = simulate.held_out_sample(cfg, 5)
    X2, t2 = simulate.held_out_sample(cfg, 5)
    np.testing.assert_array_equal(X1, X2)
    assert X1.shape == (cfg.test_size, cfg.data.d) and set(np.unique(np.asarray(t1))) <= {-1.0, 1.0}
    X3, _ = simulate.held_out_sample(cfg, 6)
    assert not np.allclose(X1, X3)
    train = simulate.training_data(cfg, 5)
    assert not np.any(np.isin(np.asarray(train.X[:, 0]), np.asarray(X1[:, 0])))  # a different key


def test_record_metrics_sampled_accuracy_and_mlp_norms(getkey):
    """test_acc on the sample = the fraction of t f > 0 (ties 1/2), computed by hand; the MLP's
    norms are recorded under the DLN's names."""
    cfg = mlp_config()
    model = model_of(cfg)
    ds = simulate.training_data(cfg, 0)
    p = simulate.initial_params(cfg, 0)
    test = simulate.held_out_sample(cfg, 0)
    out = jax.jit(lambda p: metrics.record_metrics(model, p, ds.X, ds.noisy, ds.mask, None, 0.3, test=test))(p)
    f = np.asarray(model.apply_batch(p, test[0])) * np.asarray(test[1])
    assert float(out["test_acc"]) == pytest.approx(np.mean(f > 0) + 0.5 * np.mean(f == 0), abs=1e-12)
    assert set(simulate.DLN_METRICS) <= set(out)
    assert float(out["act_norm"]) == pytest.approx(float(np.mean(np.linalg.norm(model.features(p, ds.X), axis=1))))


@pytest.mark.slow  # compiles the scan backend for the MLP (~10 s)
def test_simulate_runs_the_mlp_and_records_the_held_out_accuracy():
    cfg = mlp_config(hidden2=3)
    res = simulate.simulate(cfg, keep_params=True)
    assert set(res.backend.values()) == {"scan"}
    model = model_of(cfg)
    X, t = simulate.held_out_sample(cfg, 1)
    for mi in range(len(cfg.methods)):
        last = jax.tree_util.tree_map(lambda a: a[mi, 0, 1, -1], res.params)
        z = np.asarray(model.margins(last, X, t))
        assert res.metrics["test_acc"][mi, 0, 1, -1] == pytest.approx(np.mean(z > 0) + 0.5 * np.mean(z == 0))
    for k in ("v_norm", "act_norm", "sam_grad_norm_ratio"):
        assert np.all(np.isfinite(res.metrics[k]))


def _c6_mlp_measurement(log_ratio: float, n: int = 10):
    rng = np.random.default_rng(0)
    norms = {metric: {m: dict(value=[1.0] * n, log_ratio=list((0.0 if m == "gd" else log_ratio) + 0.01 * rng.standard_normal(n)))
                      for m in ("gd", "one_sam", "jsam", "lsam")} for metric in ("v_norm", "act_norm")}
    return dict(models={"mlp": dict(rho=0.2, step=300, norms=norms, regime="synthetic")}, methods=["one_sam", "jsam"],
                contrast=["lsam"], regime="synthetic")


def test_c6_mlp_verdict_holds_fails_and_not_run():
    import paper_checks
    from reproduction._result import FAILS, HOLDS, NOT_RUN

    assert paper_checks.evaluate("C6-MLP", _c6_mlp_measurement(-0.3), {}).verdict == HOLDS
    assert paper_checks.evaluate("C6-MLP", _c6_mlp_measurement(+0.3), {}).verdict == FAILS
    assert paper_checks.evaluate("C6-MLP", _c6_mlp_measurement(0.0), {}).verdict == FAILS
    empty = dict(models={}, methods=["one_sam", "jsam"], contrast=["lsam"], regime="")
    assert paper_checks.evaluate("C6-MLP", empty, {}).verdict == NOT_RUN
