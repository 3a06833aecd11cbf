"""Input checks at the boundary of every public function.

Each check raises :class:`ValueError` naming the argument and what is allowed, before
any work starts. Shape and dtype checks read no values, so they run while tracing (free
under ``jit``). Value checks (finite, label values, rho sign) need concrete arrays; under
``jit`` they are skipped (shape and dtype checks still run), so call public functions at the
boundary and unvalidated kernels in hot loops. For traced calls the opt-in checked mode
(:func:`linsam.rules.checked`, ``method.direction(..., checked=True)``) runs the same value
checks through ``jax.experimental.checkify``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside jit/vmap/grad)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def check_rho(rho: Any, name: str = "rho") -> None:
    """rho must be a finite real number >= 0 (a scalar, or an array of them)."""
    if not is_concrete(rho):
        return
    arr = np.asarray(rho)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be a real number >= 0, got {rho!r}")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {rho!r}")


def check_nonnegative(value: Any, name: str) -> None:
    """A finite coefficient >= 0 (regularisation strengths, learning rates)."""
    check_rho(value, name)


def check_positive(value: Any, name: str) -> None:
    """A finite number > 0 (learning rates, scales)."""
    if not is_concrete(value):
        return
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_positive_int(value: Any, name: str, minimum: int = 1) -> None:
    """An integer >= ``minimum`` (steps, record interval, widths, sample sizes)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_noise_rate(rate: Any, name: str = "noise_rate") -> None:
    """A label-noise rate in [0, 1)."""
    if not is_concrete(rate):
        return
    arr = np.asarray(rate)
    if arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)) or np.any(arr < 0) or np.any(arr >= 1):
        raise ValueError(f"{name} must be in [0, 1), got {rate!r}")


def check_method(method: str, allowed: Iterable[str], name: str = "method") -> None:
    allowed = tuple(allowed)
    if method not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {method!r}")


def check_finite(x: Any, name: str) -> None:
    """No NaN or inf anywhere in an array or pytree of arrays."""
    if not is_concrete(x):
        return
    for leaf in jax.tree_util.tree_leaves(x):
        arr = np.asarray(leaf)
        if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
            bad = int(np.sum(~np.isfinite(arr)))
            raise ValueError(f"{name} contains {bad} NaN or inf value(s); all entries must be finite")


def _dtype(x: Any):
    return x.dtype if hasattr(x, "dtype") else np.result_type(x)


def check_float(x: Any, name: str) -> None:
    """A floating-point array (the one dtype rule for inputs and parameters: integers refused).

    Reads only the dtype, so it runs while tracing (free under jit); bfloat16 counts as float.
    """
    dtype = _dtype(x)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{name} must be a floating-point array, got dtype {dtype}"
                         + (" (cast it, e.g. X.astype(jnp.float32))" if jnp.issubdtype(dtype, jnp.integer) else ""))


def check_float_tree(tree: Any, name: str) -> None:
    """Every leaf of a pytree floating-point (dtype only: runs while tracing)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        dtype = _dtype(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            where = jax.tree_util.keystr(path) or "(the array)"
            raise ValueError(f"{name} must be floating-point arrays; leaf {where} has dtype {dtype}")


def check_inputs(X: Any, name: str = "X") -> tuple[int, int]:
    """X must be a finite floating-point array of shape (n, d) with n, d >= 1."""
    shape = np.shape(X)
    if len(shape) != 2 or shape[0] < 1 or shape[1] < 1:
        raise ValueError(f"{name} must have shape (n, d) with n, d >= 1, got shape {shape}")
    check_float(X, name)
    check_finite(X, name)
    return int(shape[0]), int(shape[1])


def check_binary_labels(t: Any, n: int, name: str = "t") -> None:
    """Binary labels: shape (n,), an integer or float dtype (bool refused), every entry -1 or +1.

    Shape and dtype are checked while tracing; the values where ``t`` is concrete (under jit:
    the checked mode, :func:`linsam.rules.checked`).
    """
    shape = np.shape(t)
    if shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match X, got shape {shape}")
    dtype = _dtype(t)
    if not (jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"{name} (binary labels) must be -1 or +1 as an integer or float array, got dtype {dtype}")
    if not is_concrete(t):
        return
    arr = np.asarray(t)
    if arr.dtype.kind not in "biuf" or not np.all(np.isin(arr, (-1, 1))):
        bad = arr[~np.isin(arr, (-1, 1))] if arr.dtype.kind in "biuf" else arr
        raise ValueError(f"{name} (binary labels) must be -1 or +1, found {np.unique(bad)[:5]}")


def check_class_labels(t: Any, n: int, num_classes: int, name: str = "t") -> None:
    """Multi-class labels: integer shape (n,), every entry in [0, num_classes)."""
    shape = np.shape(t)
    if shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match X, got shape {shape}")
    dtype = _dtype(t)
    if not jnp.issubdtype(dtype, jnp.integer):
        raise ValueError(f"{name} (class ids) must be integers in [0, {num_classes}), got dtype {dtype}")
    if not is_concrete(t):
        return
    arr = np.asarray(t)
    if np.any(arr < 0) or np.any(arr >= num_classes):
        raise ValueError(
            f"{name} (class ids) must be in [0, {num_classes}), found values in [{arr.min()}, {arr.max()}]"
        )


def check_shape(x: Any, shape: tuple, name: str) -> None:
    """Exact shape check, with a float dtype and finite values."""
    got = np.shape(x)
    if tuple(got) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {tuple(got)}")
    check_float(x, name)
    check_finite(x, name)


def check_chunk_size(chunk_size: Any, n: int) -> None:
    if chunk_size is None:
        return
    check_positive_int(chunk_size, "chunk_size")

