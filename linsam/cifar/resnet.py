r"""CIFAR ResNet-18 in Flax, and its model definition (:class:`linsam.models.Generic`).

The network is the usual CIFAR variant of ResNet-18 (He et al. 2016, as in the
``pytorch-cifar`` family): a 3x3 stem convolution with stride 1 and no max-pool, four stages
of two basic blocks with widths :math:`w\cdot(1, 2, 4, 8)` and strides (1, 2, 2, 2), global
average pooling, and a dense head,

.. math::

    f(\theta, x) = W_{\mathrm{head}}\, \phi(\theta, x) + b_{\mathrm{head}},
    \qquad \phi(\theta, x) \in \mathbb{R}^{8w}

where :math:`\phi` are the penultimate activations (``features``) and :math:`w = 64` gives
ResNet-18 (11.2 M parameters). ``width`` is the multiplier the tests use (``width=4``).

Normalisation layer (``norm``):

- ``"layer"`` (default): Flax ``LayerNorm`` over the channel axis at every pixel, the
  drop-in replacement a Flax user gets from ``nn.LayerNorm()``. Per-example: the output for
  example *i* does not depend on the other examples, which 1-SAM, L-SAM, J-SAM and the
  regularisers need (their per-example passes run under ``vmap`` on single examples).
- ``"group"``: ``GroupNorm`` with ``gcd(32, channels)`` groups; also per-example.
- ``"batch"``: ``BatchNorm`` (momentum 0.9, eps 1e-5: PyTorch's defaults). Couples the
  examples of a batch, so it is allowed for ``gd`` and ``nsam`` only; the training pass uses
  batch statistics, the running statistics are updated from the clean (unperturbed) pass
  only, and evaluation uses the running statistics.

The paper (per a secondary source) replaced BatchNorm by LayerNorm; which LayerNorm axes it
normalised over is not known.

Precision: parameters are always float32 (``param_dtype``); ``compute_dtype="bfloat16"``
runs convolutions and dense layers in bf16; the logits and features handed to the loss are
cast back to float32. Inputs are cast to the compute dtype explicitly, so the module stays
float32 even when ``jax_enable_x64`` is on. ``compute_dtype="float32"`` is true float32:
convolutions and dense layers ask for ``Precision.HIGHEST``, because a GPU's default
precision for float32 runs them in TF32 (10-bit mantissa), which rounds a SAM perturbation
of :math:`\rho = 0.01` spread over 11 M weights (about 1e-4 of a weight) away just as bf16
does (see :func:`linsam.cifar.train.rule_compute_dtype`). On a CPU HIGHEST changes nothing.
"""

from __future__ import annotations

import math
from typing import Any

import flax
import flax.linen as nn
import flax.traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from linsam import rules
from linsam.models import Generic

NORMS = ("layer", "group", "batch")
#: Blocks per stage by depth: 18 is ResNet-18; 10 (one block per stage) and 6 (one block in
#: each of the first two stages, features of width 2w) are shallow variants for the CPU tests,
#: which must keep XLA compile times in budget.
STAGE_SIZES = {18: (2, 2, 2, 2), 10: (1, 1, 1, 1), 6: (1, 1)}
COMPUTE_DTYPES = ("float32", "bfloat16")
#: Norm layers whose output for one example does not depend on the rest of the batch.
PER_EXAMPLE_NORMS = ("layer", "group")

_conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")  # Kaiming (fan_out), as torchvision
# (the Flax initialisers only matter for ``net.init``; :func:`init_variables` draws with numpy)


def _dtype(name: str):
    return {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[name]


def _precision(name: str):
    """Matmul/convolution precision of a compute dtype: float32 means float32 (not TF32)."""
    return jax.lax.Precision.HIGHEST if name == "float32" else None


class _Norm(nn.Module):
    kind: str
    dtype: Any

    @nn.compact
    def __call__(self, x, train: bool):
        if self.kind == "layer":
            return nn.LayerNorm(epsilon=1e-5, dtype=self.dtype)(x)
        if self.kind == "group":
            return nn.GroupNorm(num_groups=math.gcd(32, x.shape[-1]), epsilon=1e-5, dtype=self.dtype)(x)
        if self.kind == "batch":
            return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x)
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {self.kind!r}")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (1x1 projection when the shape changes)."""

    features: int
    stride: int
    norm: str
    dtype: Any
    precision: Any = None

    @nn.compact
    def __call__(self, x, train: bool):
        conv = lambda f, k, s, name: nn.Conv(  # noqa: E731
            f, (k, k), strides=(s, s), padding=k // 2 if k > 1 else 0, use_bias=False,
            kernel_init=_conv_init, dtype=self.dtype, precision=self.precision, name=name,
        )
        y = conv(self.features, 3, self.stride, "conv1")(x)
        y = nn.relu(_Norm(self.norm, self.dtype, name="norm1")(y, train))
        y = conv(self.features, 3, 1, "conv2")(y)
        y = _Norm(self.norm, self.dtype, name="norm2")(y, train)
        if self.stride != 1 or x.shape[-1] != self.features:
            x = conv(self.features, 1, self.stride, "proj_conv")(x)
            x = _Norm(self.norm, self.dtype, name="proj_norm")(x, train)
        return nn.relu(y + x)


class ResNet18(nn.Module):
    r"""CIFAR ResNet-18 with width multiplier ``width`` (64 = the standard network).

    Input ``x``: (n, H, W, 3) (32x32 for CIFAR; any float dtype, cast to the compute dtype);
    output logits (n, num_classes) float32. ``features`` returns the penultimate activations,
    shape (n, 2**(len(stage_sizes) - 1) * width), i.e. (n, 8*width) for ResNet-18.
    """

    num_classes: int = 10
    width: int = 64
    norm: str = "layer"
    compute_dtype: str = "float32"
    stage_sizes: tuple = (2, 2, 2, 2)

    def setup(self):
        dt, prec = _dtype(self.compute_dtype), _precision(self.compute_dtype)
        self.stem_conv = nn.Conv(self.width, (3, 3), padding=1, use_bias=False, kernel_init=_conv_init, dtype=dt,
                                 precision=prec)
        self.stem_norm = _Norm(self.norm, dt)
        blocks = []
        for stage, n_blocks in enumerate(self.stage_sizes):
            for b in range(n_blocks):
                stride = 2 if (stage > 0 and b == 0) else 1
                blocks.append(BasicBlock(self.width * 2**stage, stride, self.norm, dt, prec))
        self.blocks = blocks
        self.head = nn.Dense(self.num_classes, dtype=dt, precision=prec)

    def features(self, x, train: bool = False):
        """Penultimate activations :math:`\\phi(\\theta, x)`, float32 (global average pool)."""
        x = jnp.asarray(x).astype(_dtype(self.compute_dtype))
        x = nn.relu(self.stem_norm(self.stem_conv(x), train))
        for block in self.blocks:
            x = block(x, train)
        return jnp.mean(x, axis=(1, 2)).astype(jnp.float32)

    def logits_and_features(self, x, train: bool = False):
        phi = self.features(x, train)
        logits = self.head(phi.astype(_dtype(self.compute_dtype))).astype(jnp.float32)
        return logits, phi

    def __call__(self, x, train: bool = False):
        return self.logits_and_features(x, train)[0]


def init_variables(net: ResNet18, seed: int, image_shape=(32, 32, 3)):
    r"""Initial Flax variables ``{'params': ..., ['batch_stats': ...]}``, all float32.

    Drawn with numpy (PCG64 seeded by ``seed``), leaf by leaf in sorted path order:
    convolution kernels (HWIO) :math:`\mathcal N(0, 2/\mathrm{fan\_out})` (Kaiming, as
    torchvision's ResNet), the head kernel and bias :math:`U(-1/\sqrt{\mathrm{fan\_in}},
    1/\sqrt{\mathrm{fan\_in}})` (PyTorch's ``Linear``), norm scales 1, other biases 0,
    BatchNorm running mean 0 and variance 1. Only the tree structure comes from Flax
    (``jax.eval_shape``, nothing compiled): XLA's CPU compile of a threefry-based Flax init
    of this network takes from 10 s to a minute, which the CPU tests cannot afford.
    """
    shapes = jax.eval_shape(
        lambda: net.init(jax.random.PRNGKey(0), jnp.zeros((1,) + tuple(image_shape), jnp.float32), train=False)
    )
    rng = np.random.default_rng([int(seed), 0x1517])
    flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
    head_fan_in = None
    for path, sd in flat.items():
        if path[0] == "params" and path[-2:] == ("head", "kernel"):
            head_fan_in = sd.shape[0]
    out = {}
    for path in sorted(flat):
        sd = flat[path]
        name = path[-1]
        if path[0] == "batch_stats":
            val = np.zeros(sd.shape) if name == "mean" else np.ones(sd.shape)
        elif name == "kernel" and len(sd.shape) == 4:
            fan_out = sd.shape[0] * sd.shape[1] * sd.shape[3]
            val = rng.standard_normal(sd.shape) * np.sqrt(2.0 / fan_out)
        elif "head" in path:
            bound = 1.0 / np.sqrt(head_fan_in)
            val = rng.uniform(-bound, bound, sd.shape)
        elif name == "scale":
            val = np.ones(sd.shape)
        elif name == "bias":
            val = np.zeros(sd.shape)
        else:  # pragma: no cover - a new layer type needs an explicit rule
            raise ValueError(f"no initialiser for parameter {'/'.join(path)}")
        out[path] = jnp.asarray(val.astype(np.float32))
    return flax.traverse_util.unflatten_dict(out)


def head_kernel(params):
    """The last-layer weight matrix :math:`W_{\\mathrm{head}}`, shape (8*width, num_classes)."""
    return params["head"]["kernel"]


def make_model(net: ResNet18) -> Generic:
    r"""The model definition of ``net`` (:class:`linsam.models.Generic`): what every rule differentiates.

    ``net`` is a :class:`ResNet18` or any module with its interface (``features``, a dense
    ``head``, ``norm``): the small CPU networks of :mod:`linsam.cifar.small` too.

    ``params`` is the Flax ``'params'`` collection. ``apply`` runs ONE example (it adds and
    removes a batch axis of 1), so per-example rules (1-SAM, L-SAM, J-SAM, J-reg) see exactly
    :math:`f(\theta + \epsilon_i, x_i)` with a per-example-safe norm. ``apply_batch`` runs the
    whole batch at once (used by ``gd``/``nsam``); for BatchNorm it normalises with the batch
    statistics (training mode) and discards the running-statistics update, which the trainer
    takes from a separate clean pass (:func:`linsam.cifar.train._train_block_program`).
    ``features`` / ``last_layer`` give :math:`\phi` and :math:`W_{\mathrm{head}}` for the
    fixed-coefficient regulariser (``jreg_fixed``). The loss is softmax cross-entropy over
    ``net.num_classes`` classes. Build it once per network (it is a static argument of
    ``jit``: a new object recompiles); :func:`linsam.cifar.train.rule_model` caches it.
    """
    if net.norm == "batch":

        def apply(params, x):
            raise ValueError(
                "norm='batch' couples the examples of a batch, so there is no per-example apply; "
                "use norm='layer' or 'group' for one_sam, lsam, jsam, jreg and jreg_fixed"
            )

        def apply_batch(params, X):
            logits, _ = net.apply({"params": params}, X, train=True, mutable=["batch_stats"])
            return logits

        features = None
    else:

        def apply(params, x):
            return net.apply({"params": params}, x[None])[0]

        def apply_batch(params, X):
            return net.apply({"params": params}, X)

        def features(params, x):
            return net.apply({"params": params}, x[None], method=type(net).features)[0]

    return Generic(apply=apply, loss_from_logits=rules.softmax_cross_entropy, num_classes=net.num_classes,
                   features=features, last_layer=head_kernel, apply_batch=apply_batch)


def count_params(params) -> int:
    return int(sum(a.size for a in jax.tree_util.tree_leaves(params)))
