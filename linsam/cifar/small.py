r"""Small CIFAR-10 networks for a 2-core CPU: a ReLU MLP on the 3,072 pixels and a small CNN.

Both have the interface of :class:`linsam.cifar.resnet.ResNet18` that the driver uses
(``features``, ``logits_and_features``, ``__call__``, a dense ``head``), so
:func:`linsam.cifar.resnet.make_model` turns either into the model definition
(:class:`linsam.models.Generic`) every rule differentiates, and the driver runs them through
the same :mod:`linsam.optax` step as the ResNet (``--arch mlp|cnn``, preset ``cpu``).

MLP (``arch="mlp"``, ``depth`` hidden layers of ``width`` units):

.. math::

    h_0 = \mathrm{vec}(x) \in \mathbb R^{3072},\qquad
    h_l = \mathrm{relu}(W_l^\top h_{l-1} + b_l),\qquad
    f(\theta, x) = W_{\mathrm{head}}^\top \phi + b_{\mathrm{head}},\quad \phi = h_{\mathrm{depth}} .

CNN (``arch="cnn"``): three stages of a 3x3 convolution (``width``, ``2 width``,
``4 width`` channels, bias, ReLU) and a 2x2 max-pool, then one dense ReLU layer of
``8 width`` units (:math:`\phi`), then the head. No normalisation layer, so the output for one
example never depends on the rest of the batch (every per-example rule may run on it).

Which of the two learns more per second on 2 CPU cores was measured (docs/cifar.md, "CPU
preset"): the preset uses the winner. Parameters are float32; ``compute_dtype`` bfloat16 runs
the layers in bf16 like the ResNet. Initialisation (:func:`init_small_variables`, numpy
PCG64 seeded by ``seed``): hidden dense and convolution kernels
:math:`\mathcal N(0, 2/\mathrm{fan\_in})` (He), the head
:math:`U(\pm 1/\sqrt{\mathrm{fan\_in}})` (PyTorch's ``Linear``), biases 0.
"""

from __future__ import annotations

import dataclasses

import flax
import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from linsam import rules
from linsam.models import Generic

#: The small architectures (``CifarConfig.arch``); ``resnet`` is the ResNet-18 family.
SMALL_ARCHS = ("mlp", "cnn")


def _dtype(name: str):
    """float32 / bfloat16 (the driver's ``--dtype``); float64 for the closed-form tests."""
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float64": jnp.float64}[name]


def _out_dtype(name: str):
    """Logits and features are float32 (float64 in the float64 tests)."""
    return jnp.float64 if name == "float64" else jnp.float32


def _precision(name: str):
    return None if name == "bfloat16" else jax.lax.Precision.HIGHEST


class MLP(nn.Module):
    r"""ReLU MLP on the flattened image: ``depth`` hidden layers of ``width`` units, then the head.

    Input ``x`` (n, 32, 32, 3) (any float dtype); logits (n, num_classes) float32;
    ``features`` (n, width) float32 (the last hidden layer, :math:`\phi`).
    """

    num_classes: int = 10
    width: int = 512
    depth: int = 1
    compute_dtype: str = "float32"
    norm: str = "none"  # no normalisation layer (the driver's checks read this field)

    def setup(self):
        dt, prec = _dtype(self.compute_dtype), _precision(self.compute_dtype)
        self.hidden = [nn.Dense(self.width, dtype=dt, precision=prec, name=f"hidden_{i}") for i in range(self.depth)]
        self.head = nn.Dense(self.num_classes, dtype=dt, precision=prec)

    def features(self, x, train: bool = False):
        del train
        h = jnp.asarray(x).astype(_dtype(self.compute_dtype))
        h = h.reshape(h.shape[:-3] + (-1,))
        for layer in self.hidden:
            h = nn.relu(layer(h))
        return h.astype(_out_dtype(self.compute_dtype))

    def logits_and_features(self, x, train: bool = False):
        phi = self.features(x, train)
        return self.head(phi.astype(_dtype(self.compute_dtype))).astype(_out_dtype(self.compute_dtype)), phi

    def __call__(self, x, train: bool = False):
        return self.logits_and_features(x, train)[0]


class SmallCNN(nn.Module):
    r"""Three 3x3 conv + ReLU + 2x2 max-pool stages (``width``, ``2 width``, ``4 width``
    channels), a dense ReLU layer of ``8 width`` units (:math:`\phi`), the head.

    Input (n, 32, 32, 3); logits (n, num_classes) float32; ``features`` (n, 8 width).
    """

    num_classes: int = 10
    width: int = 16
    depth: int = 3  # conv stages (the driver's ``depth``)
    compute_dtype: str = "float32"
    norm: str = "none"

    def setup(self):
        dt, prec = _dtype(self.compute_dtype), _precision(self.compute_dtype)
        self.convs = [nn.Conv(self.width * 2**i, (3, 3), padding=1, dtype=dt, precision=prec, name=f"conv_{i}")
                      for i in range(self.depth)]
        self.dense = nn.Dense(8 * self.width, dtype=dt, precision=prec, name="hidden_0")
        self.head = nn.Dense(self.num_classes, dtype=dt, precision=prec)

    def features(self, x, train: bool = False):
        del train
        h = jnp.asarray(x).astype(_dtype(self.compute_dtype))
        for conv in self.convs:
            h = nn.max_pool(nn.relu(conv(h)), (2, 2), strides=(2, 2))
        h = h.reshape(h.shape[:-3] + (-1,))
        return nn.relu(self.dense(h)).astype(_out_dtype(self.compute_dtype))

    def logits_and_features(self, x, train: bool = False):
        phi = self.features(x, train)
        return self.head(phi.astype(_dtype(self.compute_dtype))).astype(_out_dtype(self.compute_dtype)), phi

    def __call__(self, x, train: bool = False):
        return self.logits_and_features(x, train)[0]


def small_net(arch: str, *, width: int, depth: int, compute_dtype: str = "float32", num_classes: int = 10):
    """The Flax module of a small architecture (:data:`SMALL_ARCHS`); ValueError naming ``--arch``."""
    if arch == "mlp":
        return MLP(num_classes=num_classes, width=width, depth=depth, compute_dtype=compute_dtype)
    if arch == "cnn":
        return SmallCNN(num_classes=num_classes, width=width, depth=depth, compute_dtype=compute_dtype)
    raise ValueError(f"--arch must be one of resnet, {', '.join(SMALL_ARCHS)}; got {arch!r}")


def init_small_variables(net, seed: int, image_shape=(32, 32, 3)) -> dict:
    r"""Initial ``{'params': ...}`` of an :class:`MLP` or :class:`SmallCNN`, float32, from numpy.

    PCG64 seeded by ``(seed, 0x5a11)``, leaf by leaf in sorted path order: every kernel but the
    head's :math:`\mathcal N(0, 2/\mathrm{fan\_in})`, the head's kernel and bias
    :math:`U(\pm 1/\sqrt{\mathrm{fan\_in}})`, other biases 0. Only the tree structure comes
    from Flax (``jax.eval_shape``: nothing is compiled).
    """
    shapes = jax.eval_shape(lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(image_shape), jnp.float32)))
    rng = np.random.default_rng([int(seed), 0x5A11])
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
    out = {}
    for path in sorted(flat):
        shape = flat[path].shape
        name = path[-1]
        if "head" in path:
            fan_in = flat[path[:-1] + ("kernel",)].shape[0]
            val = rng.uniform(-1.0, 1.0, shape) / np.sqrt(fan_in)
        elif name == "kernel":
            fan_in = int(np.prod(shape[:-1]))
            val = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        elif name == "bias":
            val = np.zeros(shape)
        else:  # pragma: no cover - a new layer type needs an explicit rule
            raise ValueError(f"no initialiser for parameter {'/'.join(path)}")
        out[path] = jnp.asarray(val.astype(np.float32))
    return flax.traverse_util.unflatten_dict(out)


# ----------------------------------------------------------------------------- MLP closed forms
#
# Layer k = 0..L of the MLP (k = L: the head) maps its input a_k to z_k = a_k W_k + b_k, with
# a_0 = vec(x) and a_{k+1} = relu(z_k); f = z_L. For one example the backward pass gives
# d_L = r = dl/df and d_{k-1} = (d_k W_k^T) * [z_{k-1} > 0]; the gradient of layer k is
# (a_k d_k^T, d_k): RANK ONE. So every per-example quantity of the SAM family is a batched
# matrix product, with no per-example weight copy:
#
#   |g|^2            = sum_k (|a_k|^2 + 1) |d_k|^2
#   eps (layer k)    = c (a_k d_k^T, d_k),  c = rho / |g|  (0 where g = 0)
#   perturbed pass   z'_k = a'_k W_k + b_k + c (a_k . a'_k + 1) d_k
#   back through the perturbed weights, cotangent v at the output:
#                    d'_L = v,  d'_{k-1} = (d'_k W_k^T + c (d_k . d'_k) a_k) * [z'_{k-1} > 0]
#
# 1-SAM is that backward pass with v = r(theta + eps) and weight gradients a'_k d'_k^T; J-SAM
# the same with v = r(theta); L-SAM the unperturbed backward pass (masks of z, weights W)
# with v = r(theta + eps) and gradients a_k d_k^T. Batch means of those give the direction.


def _mm(a, b):
    return jnp.matmul(a, b, precision=jax.lax.Precision.HIGHEST)


def _mlp_weights(params, depth: int):
    names = [f"hidden_{k}" for k in range(depth)] + ["head"]
    return names, [params[n]["kernel"] for n in names], [params[n]["bias"] for n in names]


def _mlp_forward(Ws, bs, A0, pert=None):
    """Batched forward pass: (inputs a_k of every layer, pre-activations z_k); ``pert = (c, a, d)``
    adds each example's rank-one perturbation (module comment)."""
    a, As, Zs = A0, [], []
    for k, (W, b) in enumerate(zip(Ws, bs)):
        As.append(a)
        z = _mm(a, W) + b
        if pert is not None:
            c, a0, d0 = pert
            z = z + (c * (jnp.sum(a0[k] * a, axis=-1) + 1.0))[:, None] * d0[k]
        Zs.append(z)
        a = jax.nn.relu(z)
    return As, Zs


def _mlp_backward(Ws, Zs, v, pert=None):
    """Deltas d_k (batched) for the cotangent ``v`` at the output; ``pert = (c, a, d)``: through
    the perturbed weights (module comment)."""
    ds = [v]
    for k in range(len(Ws) - 1, 0, -1):
        back = _mm(ds[0], Ws[k].T)
        if pert is not None:
            c, a0, d0 = pert
            back = back + (c * jnp.sum(d0[k] * ds[0], axis=-1))[:, None] * a0[k]
        ds.insert(0, back * (Zs[k - 1] > 0))
    return ds


def _logit_scale_batch(logits, t):
    """r = softmax(f) - e_t per example (the softmax cross-entropy's dl/df), shape (n, K)."""
    return jax.nn.softmax(logits, axis=-1) - jax.nn.one_hot(t, logits.shape[-1], dtype=logits.dtype)


def _mean_grads(names, As, ds, n):
    return {name: {"kernel": _mm(a.T, d) / n, "bias": jnp.sum(d, axis=0) / n} for name, a, d in zip(names, As, ds)}


def mlp_sam_direction(kind: str, depth: int, params, X, t, rho):
    r"""The per-example SAM rules on the :class:`MLP` in closed form (batched matrix products).

    ``kind``: ``"one_sam"`` (:math:`\frac1n\sum_i\nabla\ell_i(\theta+\epsilon_i)`), ``"lsam"``
    (:math:`\frac1n\sum_i J_i(\theta)^\top r_i(\theta+\epsilon_i)`) or ``"jsam"``
    (:math:`\frac1n\sum_i J_i(\theta+\epsilon_i)^\top r_i(\theta)`), with
    :math:`\epsilon_i = \rho\nabla\ell_i/\|\nabla\ell_i\|` (0 where the gradient is 0) and the
    softmax cross-entropy. Every layer's per-example gradient is rank one, :math:`(a_k d_k^\top,
    d_k)`, so :math:`\|\nabla\ell_i\|^2 = \sum_k(\|a_k\|^2+1)\|d_k\|^2` and the perturbed pass is
    :math:`z'_k = a'_k W_k + b_k + c_i(a_k\cdot a'_k + 1) d_k` (comment above): the cost is about
    two forward and two backward passes of the batch, against one of each for SGD. Equal to the
    autodiff rules of :mod:`linsam.rules` (tests/test_cifar_cpu.py, float64). A zero per-example
    gradient gives :math:`\epsilon_i = 0` (never NaN), the library's convention; with the softmax
    cross-entropy it does not occur at finite logits. A zero
    per-example gradient gives :math:`\epsilon_i = 0` (never NaN), the library's convention;
    with the softmax cross-entropy it does not occur at finite logits.

    Args: ``params`` the Flax params of an :class:`MLP` of ``depth`` hidden layers; ``X`` (n, 32,
    32, 3) (or (n, 3072)) inputs; ``t`` (n,) int labels; ``rho`` >= 0. Returns the direction, a
    pytree like ``params``.
    """
    if kind not in ("one_sam", "lsam", "jsam"):
        raise ValueError(f"kind must be one_sam, lsam or jsam; got {kind!r}")
    names, Ws, bs = _mlp_weights(params, depth)
    n = X.shape[0]
    A0 = X.reshape(n, -1).astype(Ws[0].dtype)
    As, Zs = _mlp_forward(Ws, bs, A0)
    r = _logit_scale_batch(Zs[-1], t)
    ds = _mlp_backward(Ws, Zs, r)
    gsq = sum((jnp.sum(a * a, axis=-1) + 1.0) * jnp.sum(d * d, axis=-1) for a, d in zip(As, ds))
    nonzero = gsq > 0
    c = jnp.where(nonzero, rho / jnp.sqrt(jnp.where(nonzero, gsq, 1.0)), 0.0).astype(A0.dtype)
    pert = (c, As, ds)
    As_p, Zs_p = _mlp_forward(Ws, bs, A0, pert)
    if kind == "lsam":
        return _mean_grads(names, As, _mlp_backward(Ws, Zs, _logit_scale_batch(Zs_p[-1], t)), n)
    v = _logit_scale_batch(Zs_p[-1], t) if kind == "one_sam" else r
    return _mean_grads(names, As_p, _mlp_backward(Ws, Zs_p, v, pert), n)


def mlp_jreg_direction(depth: int, params, X, t, rho):
    r"""J-reg on the :class:`MLP` (Prop. 4.1's penalty, :class:`linsam.rules.JReg`) without
    per-example autodiff: the gradient of

    .. math::  \frac1n\sum_i \Big(\ell_i + \rho\,\big\|J_i^\top \mathrm{sg}(r_i)\big\|\Big),\qquad
               \big\|J_i^\top r_i\big\|^2 = \sum_k (\|a_k\|^2 + 1)\,\|d_k\|^2,

    with :math:`d_k` the deltas of the backward pass of the cotangent :math:`\mathrm{sg}(r_i)`
    (the gradient of :math:`\langle r_i, f\rangle` is rank one per layer, as in
    :func:`mlp_sam_direction`). The penalty is a batched function of the parameters, so its
    gradient is one reverse pass through batched products (about three SGD steps), not one per
    example. A zero norm contributes gradient 0 (:func:`linsam.rules.safe_norm`'s convention).
    Equal to ``JReg(rho).autodiff`` (tests/test_cifar_cpu.py, float64)."""

    def objective(p):
        names, Ws, bs = _mlp_weights(p, depth)
        n = X.shape[0]
        A0 = X.reshape(n, -1).astype(Ws[0].dtype)
        As, Zs = _mlp_forward(Ws, bs, A0)
        logits = Zs[-1]
        ce = jax.nn.logsumexp(logits, axis=-1) - jnp.take_along_axis(logits, t[:, None].astype(jnp.int32), axis=-1)[:, 0]
        ds = _mlp_backward(Ws, Zs, jax.lax.stop_gradient(_logit_scale_batch(logits, t)))
        sq = sum((jnp.sum(a * a, axis=-1) + 1.0) * jnp.sum(d * d, axis=-1) for a, d in zip(As, ds))
        nonzero = sq > 0
        norm = jnp.where(nonzero, jnp.sqrt(jnp.where(nonzero, sq, 1.0)), 0.0)
        return jnp.mean(ce + rho * norm)

    return jax.grad(objective)(params)


@dataclasses.dataclass(frozen=True)
class MLPModel(Generic):
    """The model definition of an :class:`MLP`: :class:`linsam.models.Generic` plus the closed
    forms of 1-SAM, L-SAM and J-SAM (:func:`mlp_sam_direction`) and of J-reg
    (:func:`mlp_jreg_direction`); every other rule (GD, n-SAM, the fixed regulariser, the loss
    controls) by autodiff of the same ``apply``. ``chunk_size`` has no
    effect on the closed forms (they are batched already)."""

    depth: int = 1

    @property
    def closed_forms(self) -> dict:
        def kernel(kind):
            return lambda method, params, X, t: mlp_sam_direction(kind, self.depth, params, X, t, method.rho)

        return {rules.OneSAM: kernel("one_sam"), rules.LSAM: kernel("lsam"), rules.JSAM: kernel("jsam"),
                rules.JReg: lambda method, params, X, t: mlp_jreg_direction(self.depth, params, X, t, method.rho)}


def make_small_model(net) -> Generic:
    """The model definition of a small network: :class:`MLPModel` for an :class:`MLP`, the
    plain autodiff :class:`linsam.models.Generic` (:func:`linsam.cifar.resnet.make_model`)
    for the CNN. Build it once per network (a static argument of ``jit``)."""
    from linsam.cifar.resnet import make_model

    base = make_model(net)
    if isinstance(net, MLP):
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Generic)}
        return MLPModel(**fields, depth=net.depth)
    return base
