"""The K-class linear softmax model in the sweep engine (``model = "softmax"``): tiny shapes."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam._src.data import CIFAR10_CLASSES, MulticlassMixture, symmetric_noise
from linsam._src.engine.config import SimConfig, method_value, model_of
from linsam._src.engine.sweep import held_out_sample, initial_params, run, training_data
from linsam._src.models import Softmax


def _cfg(**kw):
    base = dict(name="sm", model="softmax", num_classes=3, methods=["gd", "one_sam", "shifted_loss"], rhos=[0.7],
                num_seeds=1, n=12, steps=3, lr=0.5, record_every=1, init_scale=1.0, test_size=40,
                dtype="float64", data=dict(kind="isotropic", d=5, mean_norm=2.0, sigma=1.0),
                noise=dict(kind="symmetric", rate=0.25))
    base.update(kw)
    return SimConfig.from_dict(base)


@pytest.mark.parametrize("method", ["gd", "one_sam", "shifted_loss"])
def test_scan_run_equals_python_loop(method):
    cfg = _cfg()
    traj = run(cfg, method, 0.7, seed=3, keep_params=True)
    ds = training_data(cfg, 3)
    model = model_of(cfg)
    W = np.asarray(initial_params(cfg, 3), np.float64)
    X, y = np.asarray(ds.X, np.float64), np.asarray(ds.noisy)
    value = method_value(cfg, method, 0.7)
    rule = model.closed_forms[type(value)]
    Ws = [W]
    for _ in range(cfg.steps):
        W = W - cfg.lr * np.asarray(rule(value, jnp.asarray(W), jnp.asarray(X), jnp.asarray(y)))
        Ws.append(W)
    np.testing.assert_allclose(np.asarray(traj.params), np.stack(Ws), rtol=1e-12, atol=1e-12)
    # metrics from the final state, by hand
    logits = X @ W.T
    pred = logits.argmax(-1)
    m = traj.metrics
    assert m["train_acc"][-1] == pytest.approx(np.mean(pred == y))
    clean = ~np.asarray(ds.mask)
    ce = np.log(np.exp(logits).sum(-1)) - logits[np.arange(len(y)), y]
    assert m["loss_clean"][-1] == pytest.approx(ce[clean].mean())
    assert m["loss_noisy"][-1] == pytest.approx(ce[~clean].mean())
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    r = p - np.eye(3)[y]
    gn = np.linalg.norm(r, axis=-1) * np.linalg.norm(X, axis=-1)
    assert m["grad_norm_clean"][-1] == pytest.approx(gn[clean].mean())
    Xte, yte = (np.asarray(a) for a in held_out_sample(cfg, 3))
    assert m["test_acc"][-1] == pytest.approx(np.mean((Xte @ W.T).argmax(-1) == yte))
    assert all(np.all(np.isfinite(v)) for v in m.values())


def test_zero_init_scores_chance_and_labels_are_class_ids():
    cfg = _cfg(init_scale=0.0)  # same shapes as above: the compiled program is reused
    traj = run(cfg, "gd", 0.7, seed=0, keep_params=True)
    assert traj.metrics["train_acc"][0] == pytest.approx(1 / 3)  # all logits tied: chance 1/K
    assert traj.metrics["test_acc"][0] == pytest.approx(1 / 3)
    assert traj.metrics["train_acc"][-1] > 1 / 3
    ds = training_data(cfg, 0)
    assert ds.noisy.dtype == jnp.int32 and set(np.unique(ds.noisy)) <= set(range(3))
    assert int(np.sum(ds.mask)) == 3  # exactly floor(0.25 * 12) flips, each to another class
    assert np.all((np.asarray(ds.noisy) != np.asarray(ds.clean)) == np.asarray(ds.mask))


def test_cifar10_asymmetric_noise_follows_the_map():
    cfg = _cfg(num_classes=10, data=dict(kind="isotropic", d=10, mean_norm=2.0, sigma=1.0), n=400,
               noise=dict(kind="cifar10_asymmetric", rate=0.4))
    ds = training_data(cfg, 1)
    idx = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    allowed = {(idx[a], idx[b]) for a, b in (("truck", "automobile"), ("bird", "airplane"), ("deer", "horse"),
                                              ("cat", "dog"), ("dog", "cat"))}
    clean, noisy, mask = (np.asarray(a) for a in (ds.clean, ds.noisy, ds.mask))
    assert mask.any()
    assert {(int(c), int(n)) for c, n in zip(clean[mask], noisy[mask])} <= allowed
    src = np.isin(clean, [i for i, _ in allowed])
    assert 0.25 < mask[src].mean() < 0.55 and not mask[~src].any()


@pytest.mark.parametrize("kw, match", [
    (dict(num_classes=1), "num_classes"),
    (dict(num_classes=6), "num_classes must be <= data.d"),
    (dict(model="logreg", num_classes=3, methods=["gd"]), "num_classes applies to model 'softmax' only"),
    (dict(noise=dict(kind="cifar10_asymmetric", rate=0.4)), "needs num_classes = 10"),
    (dict(noise=dict(kind="boundary", rate=0.2)), "noise.kind must be one of"),
    (dict(data=dict(kind="anisotropic", d=5)), "data.kind 'isotropic'"),
])
def test_bad_configs_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(**kw)


def test_binary_models_refuse_cifar_noise_and_bad_labels():
    with pytest.raises(ValueError, match="applies to model 'softmax'"):
        _cfg(model="logreg", num_classes=2, methods=["gd"], noise=dict(kind="cifar10_asymmetric", rate=0.4))
    with pytest.raises(ValueError, match="num_classes"):
        Softmax(num_classes=1)
    with pytest.raises(ValueError, match="labels"):
        symmetric_noise(jax.random.PRNGKey(0), jnp.array([0, 1, 3]), 0.3, 3)  # 3 is out of [0, 3)
    assert isinstance(model_of(_cfg()), Softmax)
    assert MulticlassMixture  # the data model the engine samples from
