"""Random problem instances shared by the core tests (models x shapes x margin regimes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from linsam import rules
from linsam.models import DLN, DLNParams, LogReg, Softmax

# (n, d, h): includes n = 1, d = 1, h = 1 (each new shape costs a compile of every rule).
SHAPES = [(7, 5, 3), (1, 3, 1), (5, 1, 2)]
K = 3  # classes for the softmax model
RHOS = [0.05, 0.7]
MODELS = ("logreg", "softmax", "dln")


def tree_rel_err(a, b) -> float:
    """||a - b|| / max(||a||, ||b||, tiny) over a pytree (the exact-identity tier's metric)."""
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(la) == len(lb)
    diff = np.sqrt(sum(float(np.sum((np.asarray(x) - np.asarray(y)) ** 2)) for x, y in zip(la, lb)))
    na = np.sqrt(sum(float(np.sum(np.asarray(x) ** 2)) for x in la))
    nb = np.sqrt(sum(float(np.sum(np.asarray(y) ** 2)) for y in lb))
    return diff / max(na, nb, 1e-300)


def make_problem(model_name: str, key, n: int, d: int, h: int, margin_scale: float = 1.0, dtype=jnp.float64):
    """Returns (model definition, params, X, t)."""
    kx, kt, kp = jax.random.split(key, 3)
    X = jax.random.normal(kx, (n, d), dtype)
    if model_name == "logreg":
        t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0).astype(dtype)
        return LogReg(), margin_scale * jax.random.normal(kp, (d,), dtype), X, t
    if model_name == "dln":
        t = jnp.where(jax.random.bernoulli(kt, 0.5, (n,)), 1.0, -1.0).astype(dtype)
        model = DLN(hidden=h)
        p = model.init(kp, d, scale=1.0, dtype=dtype)
        # margin_scale multiplies f: scale both layers by sqrt(margin_scale).
        s = np.sqrt(margin_scale)
        return model, DLNParams(s * p.v, s * p.W), X, t
    if model_name == "softmax":
        t = jax.random.randint(kt, (n,), 0, K)
        return Softmax(K), margin_scale * jax.random.normal(kp, (K, d), dtype), X, t
    raise ValueError(model_name)


def make_method(name, rho, lam_last=0.3, lam_act=0.2, chunk_size=None) -> rules.Method:
    """The method value of ``name`` with the hyper-parameters it takes."""
    # the controls' knobs ride on rho here (shift C = rho, step x (1 + rho), decay rho)
    return rules.method(name, rho=rho, lam_last=lam_last, lam_act=lam_act, chunk_size=chunk_size,
                        shift=rho, lr_mult=1.0 + rho, decay=rho, ignore_extra=True)


def closed_direction(model, method, params, X, t, rho, lam_last=0.3, lam_act=0.2):
    """The validated dispatch (the model's closed form)."""
    return rules.direction(make_method(method, rho, lam_last, lam_act), model, params, X, t)


def autodiff_direction(model, method, params, X, t, rho, lam_last=0.3, lam_act=0.2, chunk_size=None):
    """The generic autodiff path (ignores the closed forms)."""
    m = make_method(method, rho, lam_last, lam_act, chunk_size)
    rules.validate_inputs(model, params, X, t, m)
    return m.autodiff(model, params, X, t)
