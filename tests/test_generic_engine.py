"""A user's model in the sweep engine: ``simulate(config, model=Generic(...))`` (issue 21, item 4).

The generic model here is logistic regression written as a plain function, so an independent
reference exists: the closed-form 1-SAM rule of :class:`linsam.models.LogReg` in a Python loop
(not the engine, not autodiff). The refusals cost no compilation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linsam import simulate as sim
from linsam.data import MixtureSpec, NoiseSpec
from linsam.models import Generic, LogReg
from linsam.rules import OneSAM, binary_logistic_loss

CFG = sim.SimConfig(name="gen", model="generic", methods=("one_sam",), rhos=(0.0, 1.2), num_seeds=2, n=10,
                    steps=4, record_every=2, lr=0.5, test_size=64, val_size=8, init_scale=1.0, dtype="float64",
                    data=MixtureSpec("isotropic", 3, 1.0, sigma=0.8), noise=NoiseSpec("symmetric", 0.2))

LINEAR = Generic(apply=lambda w, x: x @ w, loss_from_logits=binary_logistic_loss, init=LogReg().init)


@pytest.fixture(scope="module")
def result():
    return sim.simulate(CFG, model=LINEAR, keep_params=True, progress=False)


def test_generic_sweep_equals_the_closed_form_loop(result):
    """Exact tier (float64): the engine's autodiff run of the plain-function model equals
    LogReg's closed-form 1-SAM / GD in a Python loop, at every record step, rho and seed; the
    accuracies are recomputed from the parameters on the drawn samples."""
    assert result.ds["test_acc"].dims == ("rule", "rho", "seed", "step")
    assert set(result.backend.values()) == {"scan"}
    steps = sim.record_steps(CFG)
    lr = CFG.lr
    for s_i, seed in list(enumerate(CFG.seeds))[-1:]:  # the second seed: the seed axis is not mixed up
        ds = sim.training_data(CFG, int(seed))
        Xte, tte = sim.held_out_sample(CFG, int(seed))
        val = sim.validation_sample(CFG, int(seed))
        for m_i, name in enumerate(CFG.methods):
            for r_i, rho in enumerate(CFG.rhos):
                method = OneSAM(rho)  # rho = 0: GD
                w = sim.initial_params(CFG, int(seed), model=LINEAR)
                ws = [w]
                for _ in range(CFG.steps):
                    w = w - lr * LogReg().closed_forms[type(method)](method, w, ds.X, ds.noisy)
                    ws.append(w)
                ref = np.stack([np.asarray(ws[k]) for k in steps])
                got = result.params[m_i, r_i, s_i]
                np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12, err_msg=f"{name} rho={rho} seed={seed}")
                acc = lambda X, t: np.mean(np.sign(np.asarray(X) @ ref.T) == np.asarray(t)[:, None], axis=0)  # noqa
                np.testing.assert_allclose(result.metrics["test_acc"][m_i, r_i, s_i], acc(Xte, tte), rtol=1e-12)
                np.testing.assert_allclose(result.metrics["val_acc"][m_i, r_i, s_i], acc(val.X, val.noisy), rtol=1e-12)
                np.testing.assert_allclose(result.metrics["train_acc"][m_i, r_i, s_i], acc(ds.X, ds.noisy),
                                           rtol=1e-12)


def test_generic_result_is_a_sweep_result(result, tmp_path):
    """Same result type: saved and loaded like any sweep; the config says the model came from code."""
    result.save(tmp_path / "r")
    back = sim.SweepResult.load(tmp_path / "r")
    assert back.config.model == "generic"
    np.testing.assert_array_equal(back.metrics["val_acc"], result.metrics["val_acc"])


@pytest.mark.parametrize("config,model,backend,match", [
    (CFG, None, "auto", "model: config.model is 'generic'"),
    (CFG, LogReg(), "auto", "model must be a linsam.models.Generic"),
    (CFG, Generic(apply=LINEAR.apply, loss_from_logits=binary_logistic_loss), "auto", "model.init is None"),
    (CFG, Generic(apply=LINEAR.apply, loss_from_logits=binary_logistic_loss, num_classes=3, init=LogReg().init),
     "auto", "model.num_classes must be None"),
    (CFG, LINEAR, "linear", "backend 'linear' needs a built-in linear model"),
    (CFG.replace(model="logreg"), LINEAR, "auto", "model: config.model is 'logreg'"),
])
def test_what_cannot_work_is_refused_by_name(config, model, backend, match):
    with pytest.raises(ValueError, match=match):
        sim.simulate(config, model=model, backend=backend, progress=False)


def test_a_named_model_may_be_passed_as_itself():
    """``model=`` equal to the config's own model is the same source of truth: accepted."""
    from linsam._src.engine.config import model_of

    assert model_of(CFG.replace(model="logreg"), LogReg()) == LogReg()
    assert model_of(CFG, LINEAR) is LINEAR


def test_generic_draws_are_the_configs_draws():
    """The data do not depend on the model value: a generic config draws what the same config
    with a named model draws (same keys), so paired comparisons across models hold."""
    named = CFG.replace(model="mlp")
    for a, b in zip(sim.training_data(CFG, 1)[:4], sim.training_data(named, 1)[:4]):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(sim.held_out_sample(CFG, 1), sim.held_out_sample(named, 1)):
        np.testing.assert_array_equal(a, b)
    ds, p0 = sim.training_sets(CFG, [0, 1], model=LINEAR)
    np.testing.assert_array_equal(p0[1], sim.initial_params(CFG, 1, model=LINEAR))
    np.testing.assert_array_equal(ds.X[1], sim.training_data(CFG, 1).X)
    assert jnp.asarray(p0).dtype == jnp.float64 and jax.config.jax_enable_x64
