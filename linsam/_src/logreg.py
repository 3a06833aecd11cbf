r"""Binary logistic regression as plain functions (a thin face over :class:`linsam.models.LogReg`).

Every formula lives in :mod:`linsam._src.models.logreg` (the model definition, with the
math); this module offers the functional spelling ``logreg.one_sam(w, X, t, rho)`` with input
checks, and Lemma 3.1's per-example weights.
"""

from __future__ import annotations

import jax.numpy as jnp

from linsam._src import rules as _rules
from linsam._src import validate
from linsam._src.models.logreg import LogReg, one_sam_log_weight, one_sam_weight

__all__ = [
    "MODEL", "f", "loss", "margins", "init", "gd", "nsam", "one_sam", "lsam", "jsam", "jreg",
    "jreg_fixed", "one_sam_weight", "one_sam_log_weight", "per_example_weights", "per_example_grad_norms",
]

#: The model definition.
MODEL = LogReg()
f = MODEL.apply


def _check(w, X, t, method=None):
    _rules.validate_inputs(MODEL, w, X, t, method)


def margins(w, X, t):
    r"""Margins :math:`z_i = t_i\langle w, x_i\rangle`, shape (n,)."""
    _check(w, X, t)
    return MODEL.margins(w, X, t)


def loss(w, X, t):
    r"""Mean logistic loss :math:`\frac1n\sum_i \mathrm{softplus}(-z_i)`."""
    _check(w, X, t)
    return MODEL.loss(w, X, t)


def init(key, d: int, scale: float = 0.0, dtype=None):
    r"""Initial weights :math:`w \sim \mathrm{scale}\cdot\mathcal N(0, I_d/d)` (zeros for scale = 0)."""
    return MODEL.init(key, d, scale=scale, dtype=dtype)


def gd(w, X, t):
    r""":math:`\nabla L(w) = -\frac1n\sum_i t_i\sigma(-z_i)x_i`."""
    return _rules.direction(_rules.GD(), MODEL, w, X, t)


def one_sam(w, X, t, rho):
    r"""1-SAM: :math:`-\frac1n\sum_i t_i\sigma(-z_i + \rho\|x_i\|)x_i` (shift 0 where the gradient is 0)."""
    return _rules.direction(_rules.OneSAM(rho), MODEL, w, X, t)


def nsam(w, X, t, rho):
    r"""n-SAM: :math:`-\frac1n\sum_i t_i\sigma(-z_i - \rho t_i\langle x_i, g\rangle/\|g\|)x_i`."""
    return _rules.direction(_rules.NSAM(rho), MODEL, w, X, t)


def lsam(w, X, t, rho):
    """L-SAM equals 1-SAM exactly for the linear model (the Jacobian x does not depend on w)."""
    return _rules.direction(_rules.LSAM(rho), MODEL, w, X, t)


def jsam(w, X, t, rho):
    """J-SAM equals GD exactly for the linear model."""
    return _rules.direction(_rules.JSAM(rho), MODEL, w, X, t)


def jreg(w, X, t, rho):
    """J-reg equals GD for the linear model (the Jacobian norm ||x|| does not depend on w)."""
    return _rules.direction(_rules.JReg(rho), MODEL, w, X, t)


def jreg_fixed(w, X, t, *, lam_last, lam_act):
    r"""GD plus weight decay :math:`\lambda_{\mathrm{last}} w` (no hidden activations to penalise)."""
    return _rules.direction(_rules.JRegFixed(lam_last, lam_act), MODEL, w, X, t)


def per_example_weights(w, X, t, rho, method: str = "one_sam", *, log: bool = False):
    r"""Weights :math:`a_i` with ``rule(w) = (1/n) sum_i a_i * grad l_i(w)`` for 1-SAM or n-SAM.

    1-SAM: :math:`a_i = \sigma(-z_i + \rho\|x_i\|)/\sigma(-z_i)` (Lemma 3.1);
    n-SAM: :math:`a_i = \sigma(-z_i - \rho t_i\langle x_i, g\rangle/\|g\|)/\sigma(-z_i)`. Shape (n,).

    ``log=True`` returns :math:`\log a_i` (always finite). The weights themselves can exceed the
    float range (:math:`a_i \to e^{\rho\|x_i\|}`): then a ValueError names the limit
    :math:`\log a_i \le \log(\text{float max})` instead of returning inf.
    """
    validate.check_method(method, ("one_sam", "nsam"))
    rule = _rules.OneSAM(rho) if method == "one_sam" else _rules.NSAM(rho)
    _check(w, X, t, rule)
    z = MODEL.margins(w, X, t)
    if method == "one_sam":
        # The weight of Lemma 3.1 does not depend on sigmoid(-z) (eps_i = -rho t_i x_i/||x_i||),
        # so only x_i = 0 needs the eps = 0 convention here; where sigmoid(-z_i) underflows the
        # weight still is sigmoid(-z + C)/sigmoid(-z) -> e^C (it multiplies a zero gradient).
        xn = MODEL.jacobian_norm(w, X)
        log_a = one_sam_log_weight(z, jnp.where(xn > 0, rho * xn, 0.0))
    else:
        z, delta = MODEL.nsam_shift(w, X, t, rho)
        log_a = one_sam_log_weight(z, -delta)
    if log:
        return log_a
    limit = float(jnp.log(jnp.finfo(log_a.dtype).max))
    if validate.is_concrete(log_a) and float(jnp.max(log_a)) > limit:
        raise ValueError(
            f"per-example weights overflow {log_a.dtype}: log a_i reaches {float(jnp.max(log_a)):.4g} > "
            f"log(float max) = {limit:.4g} (rho * ||x_i|| too large); use log=True for log-weights"
        )
    return jnp.exp(log_a)


def per_example_grad_norms(w, X, t):
    r""":math:`\|\nabla\ell_i(w)\| = \sigma(-z_i)\|x_i\|`, shape (n,)."""
    _check(w, X, t)
    import jax

    return jax.nn.sigmoid(-MODEL.margins(w, X, t)) * MODEL.jacobian_norm(w, X)
