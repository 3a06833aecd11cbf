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

#: Names of the recorded metrics (logreg; the DLN adds v_norm, W_norm, act_norm).
METRICS = (
    "test_acc",
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
    groups = jnp.stack([~mask, mask]).astype(dt)  # (2, n): clean, noisy
    cnt = jnp.sum(groups, axis=-1)  # (2,)
    sums = jnp.stack([correct, loss, grad_norm, sam_grad_norm, weight]) @ groups.T  # (5, 2)
    means = jnp.where(cnt > 0, sums / jnp.maximum(cnt, 1), jnp.nan)  # NaN for an empty group
    (acc_c, acc_n), (loss_c, loss_n), (gn_c, gn_n), (sg_c, sg_n), (w_c, w_n) = means
    n = z.shape[-1]
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


def record_metrics(model, params, X, t, mask, mixture: GaussianMixture, rho) -> dict:
    r"""The metrics of one state (pure JAX; ``rho`` may be traced).

    With margins :math:`z_i = t_i f(x_i)` on the *training* (noisy) labels, clean set
    :math:`C = \{i: \neg\mathrm{mask}_i\}` and noisy set :math:`N`:

    - ``test_acc``: population accuracy of the end-to-end linear map;
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
      ``W_norm`` (Frobenius) and ``act_norm`` (mean :math:`\|W x_i\|`).

    Group means over an empty group are NaN (e.g. the noisy group at rate 0).

    Args:
      model: a model value (:mod:`linsam.models`) or its config name (``"logreg"``, ``"dln"``).
    """
    if isinstance(model, str):
        from linsam._src.models import DLN, LogReg

        model = LogReg() if model == "logreg" else DLN()
    rho = jnp.asarray(rho, X.dtype)
    sp = model.one_sam_point(params, X, t, rho)
    out = dict(test_acc=_population_accuracy(mixture.mu, mixture.scale, model.end_to_end(params)))
    out.update(binary_metrics(model.margins(params, X, t), model.jacobian_norm(params, X), t * sp.logits,
                              sp.jacobian_norm, mask, rho))
    out.update(model.norms(params, X))
    return {k: jnp.asarray(v, X.dtype) for k, v in out.items()}
