r"""The recorded metrics: one definition, fed by either backend.

Both backends reduce a state to the same per-example pieces, read from the model's
definition (:mod:`linsam.models`): margins :math:`z_i = t_i f(x_i)` (``model.margins``),
Jacobian norms :math:`J_i` (``model.jacobian_norm``), each example's 1-SAM point
(``model.one_sam_point``: :math:`z'_i = t_i f(\theta+\epsilon_i, x_i)` and :math:`J'_i`),
the named norms (``model.norms``) and the end-to-end linear map (``model.end_to_end``, for the
population accuracy). The linear backend has the same pieces in closed form from the logits it
carries (:mod:`linsam._src.engine.linear`); :func:`binary_metrics` turns pieces into metrics.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from linsam._src.data import GaussianMixture, _population_accuracy

#: Names of the recorded metrics (logreg; the DLN and the MLP add v_norm, W_norm, act_norm).
METRICS = (
    "test_acc",
    "val_acc",
    "train_acc",
    "train_acc_clean",
    "train_acc_noisy",
    "loss_clean",
    "loss_noisy",
    "grad_norm_clean",
    "grad_norm_noisy",
    "grad_norm_ratio",
    "sam_grad_norm_clean",
    "sam_grad_norm_noisy",
    "sam_grad_norm_ratio",
    "sam_weight_clean",
    "sam_weight_noisy",
    "sam_weight_min",
    "sam_weight_max",
    "jsam_penalty",
    "w_norm",
)
DLN_METRICS = METRICS + ("v_norm", "W_norm", "act_norm")
#: The metrics that depend on rho (the rest are properties of the state alone).
RHO_METRICS = ("sam_grad_norm_clean", "sam_grad_norm_noisy", "sam_grad_norm_ratio", "sam_weight_clean",
               "sam_weight_noisy", "sam_weight_min", "sam_weight_max", "jsam_penalty")


def binary_metrics(z, J, z_sam, J_sam, mask, rho) -> dict:
    r"""The per-example metrics of :func:`record_metrics` from the pieces of one state.

    Args:
      z: ``(n,)`` margins :math:`z_i`; ``J``: ``(n,)`` Jacobian norms :math:`J_i`.
      z_sam, J_sam: the same at each example's 1-SAM point (radius ``rho``).
      mask: ``(n,)`` True where the label was flipped (the noisy group).
      rho: the radius (a scalar, may be traced).

    The ten group means are one product of the stacked per-example values with the two group
    indicators (a batched matmul when vmapped over records and radii, not ten reductions).
    """
    dt = z.dtype
    correct = (z > 0).astype(dt) + 0.5 * (z == 0).astype(dt)
    loss = jax.nn.softplus(-z)
    log_s, log_s_sam = jax.nn.log_sigmoid(-z), jax.nn.log_sigmoid(-z_sam)
    weight = jnp.exp(log_s_sam - log_s)
    grad_norm, sam_grad_norm = jnp.exp(log_s) * J, jnp.exp(log_s_sam) * J_sam
    return _group_metrics(correct, loss, grad_norm, sam_grad_norm, weight, mask, rho)


def multiclass_metrics(model, params, X, y, mask, rho) -> dict:
    r"""The per-example metrics of :func:`record_metrics` for the K-class softmax model
    (:class:`linsam.models.Softmax`; ``y`` the noisy class ids), from its definition:

    - correct: the argmax equals the label (``model.example_correct``; a tie among m classes
      counts 1/m, so zero init scores chance 1/K);
    - loss: the cross-entropy :math:`\log\sum_k e^{f_k} - f_{y_i}` (``model.example_losses``);
    - grad norm: :math:`\|\nabla_W\ell_i\| = \|r_i\|\,J_i`, :math:`r_i = \mathrm{softmax}(f) - e_{y_i}`
      (``model.example_grad_norms``); at the 1-SAM point (``model.one_sam_point``) the same
      with the perturbed logits, :math:`\|r'_i\| J'_i`;
    - SAM weight: :math:`\|r'_i\|/\|r_i\|`, the ratio of logit-scale norms (for K = 2 and
      logistic regression exactly :math:`\sigma(-z'_i)/\sigma(-z_i)`, the Lemma 3.1 weight;
      for K > 2 1-SAM also rotates :math:`r_i`, which this scalar does not show).

    Every metric is defined (no NaN beyond the empty-group convention)."""
    correct = model.example_correct(params, X, y)
    loss = model.example_losses(params, X, y)
    grad_norm = model.example_grad_norms(params, X, y)
    sp = model.one_sam_point(params, X, y, rho)
    r_sam = jnp.linalg.norm(model.logit_scale(sp.logits, y), axis=-1)
    sam_grad_norm = r_sam * sp.jacobian_norm
    weight = r_sam / jnp.linalg.norm(model.logit_scale(model.apply_batch(params, X), y), axis=-1)
    return _group_metrics(correct, loss, grad_norm, sam_grad_norm, weight, mask, rho)


def _group_metrics(correct, loss, grad_norm, sam_grad_norm, weight, mask, rho) -> dict:
    """Group means (clean / noisy) of the per-example values and the derived metrics."""
    dt = correct.dtype
    groups = jnp.stack([~mask, mask]).astype(dt)  # (2, n): clean, noisy
    cnt = jnp.sum(groups, axis=-1)  # (2,)
    sums = jnp.stack([correct, loss, grad_norm, sam_grad_norm, weight]) @ groups.T  # (5, 2)
    means = jnp.where(cnt > 0, sums / jnp.maximum(cnt, 1), jnp.nan)  # NaN for an empty group
    (acc_c, acc_n), (loss_c, loss_n), (gn_c, gn_n), (sg_c, sg_n), (w_c, w_n) = means
    n = correct.shape[-1]
    return dict(
        train_acc=jnp.sum(sums[0]) / n,
        train_acc_clean=acc_c,
        train_acc_noisy=acc_n,
        loss_clean=loss_c,
        loss_noisy=loss_n,
        grad_norm_clean=gn_c,
        grad_norm_noisy=gn_n,
        grad_norm_ratio=gn_c / gn_n,
        sam_grad_norm_clean=sg_c,
        sam_grad_norm_noisy=sg_n,
        sam_grad_norm_ratio=sg_c / sg_n,
        sam_weight_clean=w_c,
        sam_weight_noisy=w_n,
        sam_weight_min=jnp.min(weight),
        sam_weight_max=jnp.max(weight),
        jsam_penalty=rho * (jnp.sum(sums[2]) / n),
    )


def sampled_test_accuracy(model, params, test) -> jax.Array:
    r"""Accuracy of :math:`\mathrm{sign} f(\theta, x)` on a clean test sample ``test = (X_test, t_test)``:
    :math:`\frac1m\sum_j \mathbb 1[t_j f(x_j) > 0]` (ties count 1/2). Its standard error is at most
    :math:`1/(2\sqrt m)` (0.005 for the default m = 10,000)."""
    Xte, tte = test
    if getattr(model, "num_classes", None) is not None:  # K-class: argmax accuracy (ties 1/m)
        return jnp.mean(model.example_correct(params, Xte, tte))
    z = model.margins(params, Xte, tte)
    return jnp.mean((z > 0).astype(Xte.dtype) + 0.5 * (z == 0).astype(Xte.dtype))


def evaluate_test_acc(model, params, mixture, test=None) -> jax.Array:
    """``test_acc``: the population accuracy of ``model.end_to_end`` (a linear map on a Gaussian
    mixture) when ``test`` is None, else :func:`sampled_test_accuracy` on ``test``."""
    if test is None:
        return _population_accuracy(mixture.mu, mixture.scale, model.end_to_end(params))
    return sampled_test_accuracy(model, params, test)


def validation_accuracy(model, params, val) -> jax.Array:
    r"""``val_acc``: accuracy on the validation sample ``val = (X_val, t_val)`` against its *noisy*
    labels (the labels a user has; :attr:`SimConfig.val_size <linsam.simulate.SimConfig>`), ties
    1/2 (binary) or 1/m (K classes). Under symmetric noise of rate :math:`p` its expectation is
    :math:`p + (1 - 2p)\,\mathrm{acc}_{\rm clean}` (binary), increasing in the clean accuracy, so
    its argmax over steps estimates the test-accuracy argmax without clean labels."""
    return sampled_test_accuracy(model, params, val)


def record_metrics(model, params, X, t, mask, mixture: GaussianMixture, rho, test=None, test_acc=None, val=None,
                   val_acc=None) -> dict:
    r"""The metrics of one state (pure JAX; ``rho`` may be traced).

    With margins :math:`z_i = t_i f(x_i)` on the *training* (noisy) labels, clean set
    :math:`C = \{i: \neg\mathrm{mask}_i\}` and noisy set :math:`N`:

    - ``test_acc``: population accuracy of the end-to-end linear map, or, where ``test =
      (X_test, t_test)`` is given (a nonlinear model such as the MLP, or XOR data), the
      accuracy on that clean held-out sample (:func:`evaluate_test_acc`; ``test_acc`` passes a
      value computed once outside a vmap over radii);
    - ``val_acc``: :func:`validation_accuracy` on ``val = (X_val, noisy t_val)`` (or the value
      ``val_acc`` computed once outside a vmap over radii); NaN when neither is given;
    - ``train_acc`` / ``_clean`` / ``_noisy``: fraction of :math:`z_i > 0` (ties count 1/2)
      on all / clean / noisy examples, so ``train_acc_noisy`` is the fraction of flipped
      labels memorised (chance 1/2 at init);
    - ``loss_clean``, ``loss_noisy``: mean :math:`\mathrm{softplus}(-z_i)` per group;
    - ``grad_norm_*``: mean :math:`\|\nabla\ell_i(\theta)\| = \sigma(-z_i) J_i` per group and
      the ratio clean/noisy (:math:`J_i = \|\nabla_\theta f(x_i)\|`);
    - ``sam_grad_norm_*``: mean :math:`\|\nabla\ell_i(\theta + \epsilon_i)\| = \sigma(-z'_i) J'_i`
      at the 1-SAM point of each example (radius ``rho``), and the ratio: the quantity of
      Lemma 3.1;
    - ``sam_weight_*``: logit-scale ratio :math:`a_i = \sigma(-z'_i)/\sigma(-z_i)`
      (:math:`z'_i` the margin at :math:`\theta+\epsilon_i`; for logreg exactly the Lemma
      3.1 weight, the factor that turns GD into 1-SAM), mean per group, min and max;
    - ``jsam_penalty``: :math:`\frac{\rho}{n}\sum_i \sigma(-z_i) J_i` (Proposition 4.1);
    - ``model.norms``: ``w_norm`` (norm of the end-to-end weights); DLN also ``v_norm``,
      ``W_norm`` (Frobenius) and ``act_norm`` (mean :math:`\|W x_i\|`); the MLP the same names:
      ``w_norm`` (all parameters), ``v_norm`` (last layer), ``W_norm`` (hidden weights) and
      ``act_norm`` (the feature norm, mean :math:`\|a_L(x_i)\|`).

    Group means over an empty group are NaN (e.g. the noisy group at rate 0).

    Args:
      model: a model value (:mod:`linsam.models`) or its config name (``"logreg"``, ``"dln"``).
    """
    if getattr(model, "num_classes", None) is not None:  # the K-class softmax model
        rho = jnp.asarray(rho, X.dtype)
        out = dict(test_acc=evaluate_test_acc(model, params, mixture, test) if test_acc is None else test_acc,
                   val_acc=_val_acc(model, params, val, val_acc, X.dtype))
        out.update(multiclass_metrics(model, params, X, t, mask, rho))
        out.update(model.norms(params, X))
        return {k: jnp.asarray(v, X.dtype) for k, v in out.items()}
    if isinstance(model, str):
        from linsam._src.models import DLN, LogReg

        model = LogReg() if model == "logreg" else DLN()
    rho = jnp.asarray(rho, X.dtype)
    sp = model.one_sam_point(params, X, t, rho)
    out = dict(test_acc=evaluate_test_acc(model, params, mixture, test) if test_acc is None else test_acc,
               val_acc=_val_acc(model, params, val, val_acc, X.dtype))
    out.update(binary_metrics(model.margins(params, X, t), model.jacobian_norm(params, X), t * sp.logits,
                              sp.jacobian_norm, mask, rho))
    out.update(model.norms(params, X))
    return {k: jnp.asarray(v, X.dtype) for k, v in out.items()}


def _val_acc(model, params, val, val_acc, dtype):
    if val_acc is not None:
        return val_acc
    if val is None:
        return jnp.asarray(jnp.nan, dtype)
    return validation_accuracy(model, params, val)
