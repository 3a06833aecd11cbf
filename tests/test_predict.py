"""The a-priori predictor (linsam._src.predict): exact limits, input checks, dtypes.

Tolerance tiers: exact identities (float64, ~1e-12) for step 0, rho = 0 and the closed-form
first step from zero init; a statistical tier (sampled mean classifiers over seeds) for the
noiseless large-n case; the comparison with the engine is marked slow.
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
from scipy.special import ndtr

from linsam.data import MixtureSpec, NoiseSpec, population_accuracy, sample_binary
from linsam.simulate import SimConfig, record_steps
from linsam._src.predict import PREDICTED, predict_curves

FAST = dict(num_samples=256, num_response=64, max_grid=40)


def _cfg(**kw):
    base = dict(n=200, steps=12, lr=2.0, record_every=1, num_seeds=2, rhos=(0.0,), init_scale=0.0,
                data=MixtureSpec(d=100, mean_norm=1.5, sigma=1.0 / math.sqrt(10.0)), noise=NoiseSpec("symmetric", 0.2))
    base.update(kw)
    return SimConfig(**base)


def _first_step_accuracy(mixture, n, p):
    r"""Population accuracy of the first GD step from w = 0 (the mean classifier) in the
    proportional limit: w_1 = eta/2 [(1 - 2p) mu + Sigma^{1/2} xi], xi ~ N(0, I/n), so
    acc = Phi((1-2p)||mu||^2 / sqrt((1-2p)^2 mu^T Sigma mu + tr Sigma^2 / n))."""
    mu, lam = np.asarray(mixture.mu, float), np.asarray(mixture.scale, float) ** 2
    a = 1.0 - 2.0 * p
    return ndtr(a * (mu @ mu) / math.sqrt(a * a * (mu * lam) @ mu + (lam @ lam) / n))


def test_shapes_and_record_steps():
    cfg = _cfg(steps=20, record_every=5, record_dense=5)
    out = predict_curves(cfg, "gd", **FAST)
    np.testing.assert_array_equal(out["step"], record_steps(cfg))
    for key in PREDICTED:
        assert out[key].shape == out["step"].shape, key
        assert np.all(np.isfinite(out[key])), key


@pytest.mark.parametrize("init_scale", [0.0, 3.0])
def test_step_zero_is_chance(init_scale):
    # w_0 has no expected overlap with mu: population accuracy 1/2; every margin is a centred
    # Gaussian (or 0), so each label group is fitted with probability exactly 1/2
    out = predict_curves(_cfg(init_scale=init_scale), "one_sam", 0.5, **FAST)
    assert out["test_acc"][0] == 0.5
    assert out["train_acc_clean"][0] == 0.5 and out["train_acc_noisy"][0] == 0.5 and out["train_acc"][0] == 0.5


def test_rho_zero_one_sam_is_gd():
    cfg = _cfg(init_scale=2.0)
    gd, sam = predict_curves(cfg, "gd", **FAST), predict_curves(cfg, "one_sam", 0.0, **FAST)
    for key in PREDICTED:
        np.testing.assert_array_equal(gd[key], sam[key], err_msg=f"{key}: one_sam at rho = 0 vs gd")


def test_gd_equivalent_rules():
    cfg = _cfg()
    np.testing.assert_array_equal(predict_curves(cfg, "jsam", 1.0, **FAST)["test_acc"],
                                  predict_curves(cfg, "gd", **FAST)["test_acc"])
    np.testing.assert_array_equal(predict_curves(cfg, "lsam", 1.0, **FAST)["test_acc"],
                                  predict_curves(cfg, "one_sam", 1.0, **FAST)["test_acc"])


def test_one_sam_changes_the_curve():
    cfg = _cfg(init_scale=3.0)
    gd, sam = predict_curves(cfg, "gd", **FAST), predict_curves(cfg, "one_sam", 2.0, **FAST)
    assert np.max(np.abs(gd["grad_norm_ratio"] - sam["grad_norm_ratio"])) > 1e-3


@pytest.mark.parametrize("kind", ["isotropic", "anisotropic", "signal_noise"])
@pytest.mark.parametrize("rate", [0.0, 0.3])
def test_first_step_closed_form(kind, rate):
    # From w = 0 every GD weight is sigma(0) = 1/2, so step 1 has no Monte Carlo error.
    mean_norm = 0.15 if kind == "signal_noise" else 0.3
    cfg = _cfg(data=MixtureSpec(kind=kind, d=120, mean_norm=mean_norm, sigma=0.2, alpha=1.0, num_signal=2,
                                signal_std=0.0),
               noise=NoiseSpec("symmetric", rate), n=300, steps=3, dtype="float64")
    p = math.floor(rate * cfg.n + 1e-9) / cfg.n
    out = predict_curves(cfg, "gd", **FAST)
    expected = _first_step_accuracy(cfg.data.build(), cfg.n, p)
    assert 0.6 < expected < 0.99  # a case that can fail
    np.testing.assert_allclose(out["test_acc"][1], expected, rtol=1e-10)


def test_noiseless_large_n_matches_sampled_mean_classifier():
    # statistical tier: the mean classifier of 6 sampled training sets (n = 4000, d = 400)
    cfg = _cfg(n=4000, data=MixtureSpec(d=400, mean_norm=0.25, sigma=0.1), noise=NoiseSpec("none"), steps=2)
    pred = float(predict_curves(cfg, "gd", **FAST)["test_acc"][1])
    mix = cfg.data.build()
    accs = []
    for seed in range(6):
        ds = sample_binary(jax.random.PRNGKey(seed), mix, cfg.n, cfg.noise, dtype="float64")
        accs.append(float(population_accuracy(mix, ds.noisy @ ds.X / cfg.n)))
    assert abs(np.mean(accs) - pred) < 4 * np.std(accs) / math.sqrt(len(accs)) + 2e-3, (pred, accs)


def test_float32_float64_agree():
    a = predict_curves(_cfg(dtype="float32", init_scale=1.0), "one_sam", 1.0, **FAST)
    b = predict_curves(_cfg(dtype="float64", init_scale=1.0), "one_sam", 1.0, **FAST)
    assert a["test_acc"].dtype == np.float32 and b["test_acc"].dtype == np.float64
    for key in PREDICTED:
        np.testing.assert_allclose(a[key], b[key], rtol=2e-6, atol=1e-6, err_msg=key)


def test_deterministic_for_a_seed():
    cfg = _cfg(init_scale=1.0)
    np.testing.assert_array_equal(predict_curves(cfg, "gd", **FAST)["train_acc_noisy"],
                                  predict_curves(cfg, "gd", **FAST)["train_acc_noisy"])


@pytest.mark.parametrize(
    "call, field",
    [
        (lambda c: predict_curves(c, "nsam", 0.1), "method"),
        (lambda c: predict_curves(c, "sgd", 0.1), "method"),
        (lambda c: predict_curves(c, "one_sam", -0.1), "rho"),
        (lambda c: predict_curves(c, "one_sam", float("nan")), "rho"),
        (lambda c: predict_curves(c.replace(model="dln"), "gd"), "model"),
        (lambda c: predict_curves(c.replace(batch_size=50), "gd"), "batch_size"),
        (lambda c: predict_curves(c.replace(noise=NoiseSpec("boundary", 0.2)), "gd"), "noise.kind"),
        (lambda c: predict_curves(c.replace(data=MixtureSpec(kind="xor", d=100), test_size=100), "gd"), "data.kind"),
        (lambda c: predict_curves(c, "gd", num_samples=0), "num_samples"),
        (lambda c: predict_curves(c.to_dict(), "gd"), "cfg"),
    ],
)
def test_bad_input_names_the_field(call, field):
    with pytest.raises(ValueError, match=field.replace(".", r"\.")):
        call(_cfg())


@pytest.mark.slow
def test_matches_the_engine_small():
    from linsam.simulate import simulate

    cfg = _cfg(n=400, steps=40, lr=4.0, num_seeds=8, methods=("gd", "one_sam"), rhos=(1.0,), init_scale=2.0,
               data=MixtureSpec(d=400, mean_norm=2 / 20.0, sigma=1 / 20.0), noise=NoiseSpec("symmetric", 0.3))
    res = simulate(cfg)
    for method in ("gd", "one_sam"):
        meas = np.asarray(res.sel("test_acc", rule=method, rho=1.0)).mean(0)
        pred = predict_curves(cfg, method, 1.0)["test_acc"]
        assert np.max(np.abs(meas - pred)) < 0.03, method
