r"""A fast sweep engine with the semantics of :func:`linsam.simulate.simulate`.

``sweep(config)`` trains exactly what ``linsam.simulate.simulate(config)`` trains (same
:class:`~linsam.simulate.SimConfig`, same key derivation: seed ``s`` gives
``PRNGKey(s)`` split into (data, init, sgd) keys; same update; same record steps) and
returns the same :class:`~linsam.simulate.SweepResult` (axes ``method, rho, seed, step``,
the metrics of :func:`linsam.simulate.record_metrics`). ``tests/test_paper_checks.py``
asserts the two agree.

Why a second engine: ``linsam reproduce --quick`` has a budget of 3 minutes on 2 CPU cores
and its cost is XLA compilation, not arithmetic. This engine compiles

- one training kernel per (model, shapes, record schedule, batch size): the method is a
  *traced* index into ``lax.switch`` over every rule of :data:`linsam.rules.METHODS`, and
  ``lr``, ``rho``, ``lam_last``, ``lam_act`` are traced too, so every method and every
  sweep of the same shapes (the linear regimes, the noise types) reuse one executable;
- the data outside the training loop (:func:`linsam.data.sample_binary`, jitted once per
  noise model) and the metrics after it, from the recorded parameters (one
  ``vmap(record_metrics)`` executable per model and shape).

Methods that do not use rho (``gd``, ``jreg_fixed``) give the same run at every rho (they
are called with the same rho vector so that one compiled shape serves every method); their
rho-dependent metrics (the 1-SAM quantities at radius rho) are evaluated per rho, as in
``linsam.simulate``.
"""

from __future__ import annotations

import sys
import time
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

import linsam
from linsam import data as _data
from linsam import dln as _dln
from linsam import logreg as _logreg
from linsam import rules as _rules
from linsam import simulate as _sim

__all__ = ["sweep", "METHOD_ORDER"]

#: The order of the ``lax.switch`` branches (every core method).
METHOD_ORDER = tuple(_rules.METHODS)


def _kernels(model: str) -> dict:
    return _logreg.KERNELS if model == "logreg" else _dln.KERNELS


def _branches(model: str):
    kernels = _kernels(model)

    def make(method):
        return lambda p, X, t, rho, lam_last, lam_act: _rules.dispatch_kernel(
            kernels, method, p, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act
        )

    return [make(m) for m in METHOD_ORDER]


def _batch(key, i, X, t, batch_size):
    """Mini-batch ``i``: epochs of shuffled batches, last incomplete batch dropped
    (the convention of ``linsam.simulate``: permutation ``fold_in(key, epoch)``)."""
    n = X.shape[0]
    if batch_size == 0 or batch_size == n:
        return X, t
    nb = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, i // nb), n)
    idx = jax.lax.dynamic_slice(perm, ((i % nb) * batch_size,), (batch_size,))
    return X[idx], t[idx]


@partial(jax.jit, static_argnames=("model", "steps", "record_dense", "record_every", "batch_size"))
def _train(params0, X, t, k_sgd, method_index, rhos, lr, lam_last, lam_act, *, model, steps, record_dense,
           record_every, batch_size):
    """Parameters at the record steps, shape ``(seed, rho, T, ...)``."""
    branches = _branches(model)

    def run(p0, X, t, key, rho):
        def one_step(i, p):
            Xb, tb = _batch(key, i, X, t, batch_size)
            u = jax.lax.switch(method_index, branches, p, Xb, tb, rho, lam_last, lam_act)
            return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, u)

        def block(size):
            def body(carry, _):
                p, i0 = carry
                p = jax.lax.fori_loop(i0, i0 + size, one_step, p)
                return (p, i0 + size), p

            return body

        pieces = [jax.tree_util.tree_map(lambda a: a[None], p0)]
        carry = (p0, 0)
        for size, length in ((1, record_dense), (record_every, (steps - record_dense) // record_every)):
            if length:
                carry, ps = jax.lax.scan(block(size), carry, None, length=length)
                pieces.append(ps)
        return jax.tree_util.tree_map(lambda *a: jnp.concatenate(a), *pieces)

    over_rho = jax.vmap(run, in_axes=(None, None, None, None, 0))
    return jax.vmap(over_rho, in_axes=(0, 0, 0, 0, None))(params0, X, t, k_sgd, rhos)


@partial(jax.jit, static_argnames=("model",))
def _metrics(P, X, t, mask, mixture, rhos, *, model):
    """Metrics of recorded parameters ``P`` of shape ``(rho, seed, T, ...)``: dict of ``(rho, seed, T)``."""

    def one(p, X, t, mask, rho):
        return _sim.record_metrics(model, p, X, t, mask, mixture, rho)

    over_t = jax.vmap(one, in_axes=(0, None, None, None, None))
    over_seed = jax.vmap(over_t, in_axes=(0, 0, 0, 0, None))
    return jax.vmap(over_seed, in_axes=(0, None, None, None, 0))(P, X, t, mask, rhos)


def _stack(trees):
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


def _data_for(config: "_sim.SimConfig", mixture, dtype):
    """Training sets and initial parameters of every seed (the key derivation of ``linsam.simulate``)."""
    Xs, ts, masks, rates, p0s, k_sgds = [], [], [], [], [], []
    for s in config.seeds:
        k_data, k_init, k_sgd = jax.random.split(jax.random.PRNGKey(int(s)), 3)
        ds = _data.sample_binary(k_data, mixture, config.n, config.noise, dtype)
        Xs.append(ds.X)
        ts.append(ds.noisy)
        masks.append(ds.mask)
        rates.append(float(ds.rate))
        p0s.append(_sim.initial_params(config, int(s)))
        k_sgds.append(k_sgd)
    return jnp.stack(Xs), jnp.stack(ts), jnp.stack(masks), np.asarray(rates), _stack(p0s), jnp.stack(k_sgds)


def sweep(config: "_sim.SimConfig", *, keep_params: bool = False, progress=None, return_data: bool = False):
    """Run ``config`` (every method x rho x seed); the result of ``linsam.simulate.simulate``.

    Args:
      config: a :class:`linsam.simulate.SimConfig` (validated here).
      keep_params: also return the parameters at the record steps, axes
        ``(method, rho, seed, step, ...)``.
      progress: ``None`` or a callable ``progress(message)`` for one line per method.

      return_data: also return the training sets ``(X, noisy labels, noise mask)``, arrays
        with a leading seed axis (what ``linsam.simulate.training_data`` gives per seed).

    Returns:
      :class:`linsam.simulate.SweepResult` (``elapsed_s`` includes compilation), or
      ``(result, (X, t, mask))`` with ``return_data``.
    """
    config = config.validate()
    t0 = time.perf_counter()
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise ValueError("dtype 'float64' needs jax_enable_x64 (jax.config.update('jax_enable_x64', True))")
    mixture = config.data.build()
    mixture = _data.GaussianMixture(mixture.mu.astype(dtype), mixture.scale.astype(dtype))
    X, t, mask, rates, params0, k_sgd = _data_for(config, mixture, dtype)
    rhos_all = jnp.asarray(config.rhos, dtype)
    static = dict(model=config.model, steps=config.steps, record_dense=config.record_dense,
                  record_every=config.record_every, batch_size=config.batch_size)
    per_method, kept = [], []
    for method in config.methods:
        tm = time.perf_counter()
        # Every method is called with the full rho vector (one compiled shape for all of them);
        # a method that ignores rho then computes the same run R times, which is cheap here.
        P = _train(params0, X, t, k_sgd, jnp.asarray(METHOD_ORDER.index(method), jnp.int32), rhos_all,
                   jnp.asarray(config.lr, dtype), jnp.asarray(config.lam_last, dtype),
                   jnp.asarray(config.lam_act, dtype), **static)
        P = jax.tree_util.tree_map(lambda a: jnp.swapaxes(a, 0, 1), P)  # (rho, seed, T, ...)
        # one rho at a time: bounds the memory of the per-state intermediates (same compiled shape)
        ms = [_metrics(jax.tree_util.tree_map(lambda a: a[j:j + 1], P), X, t, mask, mixture, rhos_all[j:j + 1],
                       model=config.model) for j in range(len(config.rhos))]
        per_method.append({k: np.concatenate([np.asarray(m[k]) for m in ms]) for k in ms[0]})
        if keep_params:
            kept.append(jax.tree_util.tree_map(np.asarray, P))
        if progress is not None:
            progress(f"{config.name}: {method} done ({time.perf_counter() - tm:.1f} s)")
    metrics = {k: np.stack([m[k] for m in per_method]) for k in per_method[0]}
    params = jax.tree_util.tree_map(lambda *a: np.stack(a), *kept) if keep_params else None
    axes = dict(method=list(config.methods), rho=np.asarray(config.rhos, float), seed=config.seeds,
                step=_sim.record_steps(config))
    res = _sim.SweepResult(
        config=config,
        axes=axes,
        metrics=metrics,
        noise_rate=rates,
        bayes_acc=float(mixture.bayes_accuracy()),
        version=linsam.__version__,
        elapsed_s=time.perf_counter() - t0,
        params=params,
    )
    return (res, (X, t, mask)) if return_data else res


def _print_progress(message: str) -> None:  # pragma: no cover - convenience
    print(message, file=sys.stderr, flush=True)
