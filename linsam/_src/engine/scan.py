r"""The generic backend: one run is a ``lax.scan``; a sweep is ``vmap`` over runs and seeds.

Any model value (:mod:`linsam.models`), any method value, full batch or mini-batch:

.. math::  \theta_{k+1} = \theta_k - \eta\, u_{\mathrm{method}}(\theta_k; X_{B_k}, \tilde t_{B_k}),

with ``u = method.direction(model, ...)`` (the model's closed form where it has one, autodiff
otherwise). Mini-batches: epochs of shuffled batches, the last incomplete batch dropped.

One scan over record blocks (block sizes: 0 for the initial state, then the gaps between
record steps); each block is a ``fori_loop`` of metric-free steps followed by the metrics of
:func:`linsam._src.engine.metrics.record_metrics`, evaluated at ``Q`` radii. A method whose
training does not use rho runs once (``R = 1``) with its metrics at every rho of the sweep
(``Q`` = number of rhos); the others run once per rho (``R`` rhos, ``Q = 1``).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from linsam._src.engine.metrics import evaluate_test_acc, record_metrics, validation_accuracy
from linsam._src.engine.shard import shard_run_axis


def batch(key, i, X, t, batch_size):
    """Mini-batch ``i``: epoch ``i // (n // B)`` is a fresh permutation (``fold_in(key, epoch)``)."""
    n = X.shape[0]
    if batch_size == 0 or batch_size == n:
        return X, t
    nb = n // batch_size
    perm = jax.random.permutation(jax.random.fold_in(key, i // nb), n)
    idx = jax.lax.dynamic_slice(perm, ((i % nb) * batch_size,), (batch_size,))
    return X[idx], t[idx]


def _one_seed(methods, metric_rhos, p0, X, t, mask, key, mixture, lr, test, val, *, model, sizes, batch_size,
              keep_params):
    """Runs ``methods`` (a method value with leading axis R on its leaves) on one seed.

    ``test``: None (population accuracy) or this seed's clean test sample ``(X_test, t_test)``;
    ``val``: this seed's validation sample ``(X_val, noisy t_val)``.

    Returns metrics name -> ``(R, T, Q)`` and the parameters ``(R, T, ...)`` (or None)."""

    def run(method, rhos):
        def one_step(i, p):
            Xb, tb = batch(key, i, X, t, batch_size)
            u = method.direction(model, p, Xb, tb)
            return jax.tree_util.tree_map(lambda a, g: a - lr * g, p, u)

        def body(carry, size):
            p, i0 = carry
            p = jax.lax.fori_loop(i0, i0 + size, one_step, p)
            acc = evaluate_test_acc(model, p, mixture, test)  # once per record, not per radius
            vacc = validation_accuracy(model, p, val)
            ms = jax.vmap(lambda r: record_metrics(model, p, X, t, mask, mixture, r, test_acc=acc, val_acc=vacc))(rhos)
            return (p, i0 + size), (ms, p if keep_params else None)

        _, (ms, ps) = jax.lax.scan(body, (p0, jnp.int32(0)), sizes)
        return ms, ps

    return jax.vmap(run)(methods, metric_rhos)


@functools.lru_cache(maxsize=64)
def program(model, record_sizes: tuple, batch_size: int, keep_params: bool, mesh):
    """The compiled-on-first-call sweep over seeds (sharded over ``mesh``) for one model and
    record schedule: ``fn(params0, X, t, mask, keys, methods, metric_rhos, mixture, lr, test, val)``,
    seed axis leading on the first five, on ``test`` (None, or the clean test samples
    ``(X_test, t_test)``) and on ``val`` (the validation samples ``(X_val, noisy t_val)``);
    returns metrics ``(S, R, T, Q)`` and parameters."""
    sizes = jnp.asarray(np.asarray(record_sizes, np.int32))
    one = functools.partial(_one_seed, model=model, sizes=sizes, batch_size=batch_size, keep_params=keep_params)

    def local(p0, X, t, mask, keys, methods, metric_rhos, mixture, lr, test, val):
        f = lambda p, X, t, m, k, te, va: one(methods, metric_rhos, p, X, t, m, k, mixture, lr, te, va)  # noqa: E731
        return jax.vmap(f)(p0, X, t, mask, keys, test, val)

    return shard_run_axis(local, in_axes=(0, 0, 0, 0, 0, None, None, None, None, 0, 0), out_axes=0, mesh=mesh)
