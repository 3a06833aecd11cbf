r"""Training driver: CIFAR-10 + label noise + ResNet-18 + a linsam method value + optax SGD.

One training step on a mini-batch :math:`B` of noisy-labelled examples is

.. math::

    u &= \mathrm{direction}_{\mathrm{method}}(\theta; B)
        \quad\text{(}\texttt{linsam.optax.from\_method(method, model)}\text{)} \\
    m &\leftarrow \beta m + u + \lambda_{\mathrm{wd}} \theta, \qquad
    \theta \leftarrow \theta - \eta_k m

(``optax.chain(linsam.optax.from_method(method, model), add_decayed_weights(wd),
trace(momentum), scale(-lr_k))``: the rule's direction replaces the gradient, then optax's
``sgd`` with PyTorch-style coupled weight decay and heavy-ball momentum :math:`\beta`). The
method is a :mod:`linsam.rules` value whose hyper-parameters (``rho``, ``lam_last``,
``lam_act``) are float32 pytree leaves, an argument of the compiled step, so they are traced,
not compiled in; ``chunk_size`` is static. The learning rate :math:`\eta_k` is an optax
schedule (cosine decay to 0 over all steps, a step schedule x0.1 at 50% and 75% of the steps,
or constant) evaluated on the host and fed to the compiled step, so one compiled program per
method serves every schedule, learning rate, rho, regulariser coefficient and weight decay.

Methods (``--method``): the library's names, :data:`linsam.rules.METHODS`, parsed once at the
edge (:func:`parse_method`; the value is built by :func:`method_value`):

==============  ====================================================================
name            direction (:mod:`linsam.rules`)
==============  ====================================================================
``gd``          plain mini-batch gradient (SGD)
``nsam``        SAM, one perturbation for the batch
``one_sam``     1-SAM, per-example perturbation
``lsam``        logit scale at the perturbed point, Jacobian at :math:`\theta`
``jsam``        logit scale at :math:`\theta`, Jacobian at the perturbed point
``jreg``        GD + :math:`\rho\|J_i^\top \mathrm{sg}(r_i)\|` (Prop. 4.1 penalty)
``jreg_fixed``  GD + :math:`\frac{\lambda_{\rm last}}2\|W_{\rm head}\|^2
                + \frac{\lambda_{\rm act}}2 \mathrm{mean}_i\|\phi_i\|^2`
==============  ====================================================================

Default coefficients of ``jreg_fixed`` (Proposition 4.1). For the 2-layer linear network
:math:`f = v^\top W x`, J-SAM adds to the SGD gradient
:math:`\frac{\rho s}{J} (W x) x^\top` on :math:`W` and :math:`\frac{\rho s \|x\|^2}{J} v` on
:math:`v`, i.e. the gradients of :math:`\frac{\lambda_{\rm act}}2 \|Wx\|^2` and
:math:`\frac{\lambda_{\rm last}}2\|v\|^2` with

.. math::

    \lambda_{\mathrm{act}} = \frac{\rho\, s}{J}, \qquad
    \lambda_{\mathrm{last}} = \frac{\rho\, s\, q}{J}, \qquad
    s = \|\nabla_f \ell\|,\quad J = \|\nabla_\theta \langle \hat r, f(\theta, x)\rangle\|,\quad
    q = \frac{\|\nabla_{\theta_{\rm body}} \langle u, \phi(\theta, x)\rangle\|^2}{\|u\|^2},

where :math:`\hat r = r/\|r\|` is the unit logit direction, :math:`u = W_{\rm head}\hat r` and
:math:`\phi` the penultimate activations. For the linear network :math:`q = \|x\|^2`,
:math:`J = \sqrt{\|Wx\|^2 + \|x\|^2\|v\|^2}` and the formulas are exactly Prop. 4.1. For the
ResNet they are the same quantities with :math:`(W_{\rm head}, \phi)` in the roles of
:math:`(v, Wx)`; linsam evaluates them per example at initialisation on the first
``batch_size`` training examples (no augmentation) and uses the batch means as the fixed
coefficients (:func:`prop41_coefficients`). Both values are written to the results; they can
be overridden (``lam_last``, ``lam_act``).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import linsam
import linsam.optax
from linsam import rules
from linsam._src.atomic import write_bytes_atomic
from linsam.cifar import data as cdata
from linsam.cifar.resnet import (
    COMPUTE_DTYPES,
    NORMS,
    PER_EXAMPLE_NORMS,
    STAGE_SIZES,
    ResNet18,
    count_params,
    head_kernel,
    init_variables,
    make_model,
)
from linsam.cifar.small import SMALL_ARCHS, init_small_variables, make_small_model, small_net

#: The method names, in the library's canonical order (:data:`linsam.rules.METHODS`).
METHODS = rules.METHODS
#: Methods that need one forward/backward per example (the norm layer must be per-example safe).
PER_EXAMPLE_METHODS = tuple(c.name for c in (rules.OneSAM, rules.LSAM, rules.JSAM, rules.JReg, rules.JRegFixed))
#: Methods whose direction evaluates the network at perturbed weights theta + eps: their
#: rule runs in float32 whatever the compute dtype (:func:`rule_compute_dtype`).
PERTURBED_METHODS = tuple(c.name for c in (rules.NSAM, rules.OneSAM, rules.LSAM, rules.JSAM))
SCHEDULES = ("cosine", "step", "constant")
#: Network families (``--arch``): the ResNet-18 family, and the small CPU networks of
#: :mod:`linsam.cifar.small` (a ReLU MLP on the pixels, a small CNN).
ARCHS = ("resnet",) + SMALL_ARCHS
#: ``norm`` of the small networks (they have no normalisation layer).
NO_NORM = "none"
#: Largest ``depth`` (conv stages) of the small CNN: 32x32 pooled 2x2 five times is 1x1.
MAX_CNN_DEPTH = 5
SCHEMA = "linsam.cifar.results/1"


def rule_compute_dtype(method: str, compute_dtype: str) -> str:
    r"""Compute dtype of the network inside the update rule of ``method`` (a name).

    ``"float32"`` for the methods with a perturbed pass (:data:`PERTURBED_METHODS`), else
    ``compute_dtype``. A SAM perturbation of radius :math:`\rho = 0.01` spread over the 11 M
    weights of ResNet-18 moves a weight by about 1e-4 of its size, far below bf16's
    resolution (:math:`2^{-8}`): rounding :math:`\theta + \epsilon` to bf16 changes a few
    percent of the weights by a whole unit and leaves the rest unperturbed, and the
    activations of the perturbed pass are rounded the same way. The difference
    :math:`g(\theta + \epsilon) - g(\theta)` that 1-SAM adds to the gradient is then
    mostly rounding noise (tests/test_cifar_precision.py measures it). So these rules
    compute both of their passes in float32 (``Precision.HIGHEST``, not TF32); with
    ``--dtype bfloat16`` only the plain gradient (``gd``), the regularisers and the
    evaluation run in bf16. The results record it (``model.rule_compute_dtype``).
    """
    return "float32" if method in PERTURBED_METHODS else compute_dtype


def parse_method(name) -> str:
    """The method name ``name`` (a config entry or one item of ``--method``), checked against
    :data:`linsam.rules.METHODS`; ValueError naming ``--method`` and the allowed names."""
    if not isinstance(name, str) or name.strip() not in METHODS:
        raise ValueError(f"--method: unknown method {name!r}; use one of {', '.join(METHODS)} "
                         "(SGD is 'gd'; the fixed-coefficient regulariser is 'jreg_fixed')")
    return name.strip()


@dataclasses.dataclass(frozen=True)
class CifarConfig:
    """One training run. Every field is validated by :func:`validate_config`.

    ``train_subset``: use a random subset of that many training images (None: all);
    ``eval_train_size``: how many of the (subset) training images the per-epoch train
    metrics use (None: all); ``time_limit_s``: stop after the last epoch that fits in this
    wall-clock budget (counted from the start of the method, compile included);
    ``lam_last``/``lam_act`` None: Proposition 4.1 defaults (see module doc). ``arch``:
    ``resnet`` (``depth`` 18/10/6, ``width`` channels of the first stage), ``mlp`` (``depth``
    hidden layers of ``width`` units) or ``cnn`` (``depth`` conv stages, ``width`` channels
    of the first); the small networks (:mod:`linsam.cifar.small`) take ``norm="none"``.
    """

    method: str = "gd"
    noise_rate: float = 0.3
    noise_kind: str = "symmetric"
    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    rho: float = 0.01
    lam_last: float | None = None
    lam_act: float | None = None
    width: int = 64
    depth: int = 18
    norm: str = "layer"
    compute_dtype: str = "float32"
    chunk_size: int | None = 32
    augment: bool = True
    train_subset: int | None = None
    eval_train_size: int | None = 10000
    eval_batch_size: int = 1000
    seed: int = 0
    time_limit_s: float | None = None
    log_every: int = 100
    arch: str = "resnet"

    def replace(self, **kw) -> "CifarConfig":
        return dataclasses.replace(self, **kw)


# Config fields that do not change the numbers a run produces (left out of the resume hash).
_NON_RESULT_FIELDS = ("time_limit_s", "log_every", "eval_batch_size")
#: CLI flag of each config field, for error messages.
FLAG_OF_FIELD = {
    "method": "--method", "noise_rate": "--noise", "noise_kind": "--noise-kind", "epochs": "--epochs",
    "batch_size": "--batch-size", "lr": "--lr", "momentum": "--momentum", "weight_decay": "--weight-decay",
    "schedule": "--schedule", "rho": "--rho", "lam_last": "--lam-last", "lam_act": "--lam-act",
    "width": "--width", "depth": "--depth", "norm": "--norm", "compute_dtype": "--dtype", "chunk_size": "--chunk-size",
    "augment": "--no-augment", "train_subset": "--train-subset", "eval_train_size": "--eval-train-size",
    "eval_batch_size": "--eval-batch-size", "seed": "--seed", "time_limit_s": "--time-limit",
    "log_every": "--log-every", "arch": "--arch",
}


def _err(field: str, msg: str) -> ValueError:
    return ValueError(f"{FLAG_OF_FIELD.get(field, field)} ({field}) {msg}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(cfg: CifarConfig) -> CifarConfig:
    """Check every field; raise ``ValueError`` naming the flag and the allowed range. Returns cfg
    (the method name stripped of surrounding blanks)."""
    cfg = cfg.replace(method=parse_method(cfg.method))
    if not _is_real(cfg.noise_rate) or not 0.0 <= cfg.noise_rate < 1.0:
        raise _err("noise_rate", f"must be in [0, 1), got {cfg.noise_rate!r}")
    if cfg.noise_kind not in cdata.NOISE_KINDS:
        raise _err("noise_kind", f"must be one of {', '.join(cdata.NOISE_KINDS)}, got {cfg.noise_kind!r}")
    for f in ("epochs", "batch_size", "width", "eval_batch_size", "log_every"):
        v = getattr(cfg, f)
        if not _is_int(v) or v < 1:
            raise _err(f, f"must be an integer >= 1, got {v!r}")
    if not _is_int(cfg.seed) or cfg.seed < 0:
        raise _err("seed", f"must be an integer >= 0, got {cfg.seed!r}")
    for f in ("train_subset", "eval_train_size", "chunk_size"):
        v = getattr(cfg, f)
        if v is not None and (not _is_int(v) or v < 1):
            raise _err(f, f"must be an integer >= 1 (or omitted), got {v!r}")
    if cfg.train_subset is not None and cfg.train_subset < cfg.batch_size:
        raise _err("train_subset", f"must be >= --batch-size ({cfg.batch_size}), got {cfg.train_subset}")
    if not _is_real(cfg.lr) or cfg.lr <= 0:
        raise _err("lr", f"must be a finite number > 0, got {cfg.lr!r}")
    if not _is_real(cfg.momentum) or not 0.0 <= cfg.momentum < 1.0:
        raise _err("momentum", f"must be in [0, 1), got {cfg.momentum!r}")
    for f in ("weight_decay", "rho"):
        v = getattr(cfg, f)
        if not _is_real(v) or v < 0:
            raise _err(f, f"must be a finite number >= 0, got {v!r}")
    for f in ("lam_last", "lam_act"):
        v = getattr(cfg, f)
        if v is not None and (not _is_real(v) or v < 0):
            raise _err(f, f"must be a finite number >= 0 (or omitted for the Prop. 4.1 default), got {v!r}")
    if cfg.time_limit_s is not None and (not _is_real(cfg.time_limit_s) or cfg.time_limit_s <= 0):
        raise _err("time_limit_s", f"must be a number of seconds > 0, got {cfg.time_limit_s!r}")
    if cfg.arch not in ARCHS:
        raise _err("arch", f"must be one of {', '.join(ARCHS)}, got {cfg.arch!r}")
    if cfg.arch == "resnet" and cfg.depth not in STAGE_SIZES:
        raise _err("depth", f"must be one of {', '.join(map(str, STAGE_SIZES))} for --arch resnet, got {cfg.depth!r}")
    if cfg.arch == "mlp" and (not _is_int(cfg.depth) or cfg.depth < 1):
        raise _err("depth", f"(hidden layers of the MLP) must be an integer >= 1, got {cfg.depth!r}")
    if cfg.arch == "cnn" and (not _is_int(cfg.depth) or not 1 <= cfg.depth <= MAX_CNN_DEPTH):
        raise _err("depth", f"(conv stages of the CNN) must be an integer in [1, {MAX_CNN_DEPTH}], got {cfg.depth!r}")
    if cfg.schedule not in SCHEDULES:
        raise _err("schedule", f"must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.arch == "resnet" and cfg.norm not in NORMS:
        raise _err("norm", f"must be one of {', '.join(NORMS)} for --arch resnet, got {cfg.norm!r}")
    if cfg.arch != "resnet" and cfg.norm != NO_NORM:
        raise _err("norm", f"must be {NO_NORM!r} for --arch {cfg.arch} (it has no normalisation layer), got {cfg.norm!r}")
    if cfg.compute_dtype not in COMPUTE_DTYPES:
        raise _err("compute_dtype", f"must be one of {', '.join(COMPUTE_DTYPES)}, got {cfg.compute_dtype!r}")
    if cfg.norm not in PER_EXAMPLE_NORMS + (NO_NORM,) and cfg.method in PER_EXAMPLE_METHODS:
        raise _err("norm", f"{cfg.norm!r} couples the examples of a batch; method {cfg.method} needs a "
                           f"per-example norm ({', '.join(PER_EXAMPLE_NORMS)})")
    if not isinstance(cfg.augment, bool):
        raise _err("augment", f"must be True or False, got {cfg.augment!r}")
    return cfg


def config_dict(cfg: CifarConfig) -> dict:
    return dataclasses.asdict(cfg)


def config_hash(cfg: CifarConfig, data_fingerprint: str) -> str:
    """Hash of everything that determines a run's numbers (for safe resume)."""
    d = {k: v for k, v in config_dict(cfg).items() if k not in _NON_RESULT_FIELDS}
    if d.get("arch") == "resnet":  # the field came later: ResNet checkpoints keep their hash
        del d["arch"]
    d["data"] = data_fingerprint
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- prepared data


class PreparedData(NamedTuple):
    """Training/test data after subsetting and label noise (host numpy arrays).

    x_train (n, 32, 32, 3) uint8 in a seeded random order; y_noisy / y_clean (n,) int32;
    noise_mask (n,) bool; x_test, y_test; mean/std (3,) float32 per-channel statistics of
    x_train; realised_rate = noise_mask.mean(); info: provenance dict for the results.
    """

    x_train: np.ndarray
    y_noisy: np.ndarray
    y_clean: np.ndarray
    noise_mask: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    realised_rate: float
    info: dict


def prepare_data(ds: cdata.CIFAR10, cfg: CifarConfig) -> PreparedData:
    r"""Subset (seeded permutation), label noise (seeded), per-channel statistics.

    Randomness: the order/subset is ``default_rng([seed, 1]).permutation``, the noise key
    ``fold_in(PRNGKey(seed), 1)`` (for :mod:`linsam.data`); neither depends on the method,
    so every method of one seed trains on the same images and the same noisy labels.
    """
    k_noise = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 1)
    n_all = ds.x_train.shape[0]
    n = n_all if cfg.train_subset is None else min(cfg.train_subset, n_all)
    perm = np.random.default_rng([cfg.seed, 1]).permutation(n_all)[:n]
    x = ds.x_train[perm]
    y = ds.y_train[perm].astype(np.int32)
    if cfg.noise_rate > 0:
        nl = cdata.noisy_labels(k_noise, y, cfg.noise_kind, cfg.noise_rate)
        y_noisy = np.asarray(nl.noisy, np.int32)
        mask = np.asarray(nl.mask, bool)
    else:
        y_noisy, mask = y.copy(), np.zeros(n, bool)
    mean, std = cdata.channel_stats(x)
    realised = float(mask.mean())
    info = {
        "source": ds.source, "format": ds.format, "fingerprint": ds.fingerprint,
        "n_train_available": int(n_all), "n_train": int(n), "n_test": int(ds.x_test.shape[0]),
        "train_subset": cfg.train_subset is not None and n < n_all,
        "noise_kind": cfg.noise_kind, "noise_rate": cfg.noise_rate, "realised_rate": realised,
        "n_noisy": int(mask.sum()), "channel_mean": mean.tolist(), "channel_std": std.tolist(),
    }
    return PreparedData(x, y_noisy, y, mask, ds.x_test, ds.y_test.astype(np.int32), mean, std, realised, info)


# ----------------------------------------------------------------------------- model + optimizer


def model_arch_name(cfg: CifarConfig) -> str:
    """The network's name in the results: ``resnet18-cifar``, ``mlp1x512``, ``cnn3x16``."""
    if cfg.arch == "resnet":
        return f"resnet{cfg.depth}-cifar"
    return f"{cfg.arch}{cfg.depth}x{cfg.width}"


def steps_per_epoch(cfg: CifarConfig, n_train: int) -> int:
    """Full batches per epoch (the last incomplete batch is dropped)."""
    return n_train // cfg.batch_size


def make_schedule(cfg: CifarConfig, total_steps: int) -> Callable:
    """Learning-rate schedule :math:`\\eta_k` over ``total_steps`` steps."""
    if cfg.schedule == "cosine":
        return optax.cosine_decay_schedule(cfg.lr, max(total_steps, 1))
    if cfg.schedule == "step":
        return optax.piecewise_constant_schedule(cfg.lr, {int(0.5 * total_steps): 0.1, int(0.75 * total_steps): 0.1})
    return optax.constant_schedule(cfg.lr)


def make_optimizer(direction: optax.GradientTransformation, weight_decay, momentum, lr):
    r"""``chain(direction, add_decayed_weights(wd), trace(momentum), scale(-lr))``.

    ``direction`` is the rule as an optax transformation (``linsam.optax.from_method(method,
    model)``): its update is the method's direction :math:`u`, which replaces the gradient;
    the rest is optax's ``sgd`` with PyTorch-style coupled weight decay and heavy-ball
    momentum, :math:`m \leftarrow \beta m + u + \lambda_{\rm wd}\theta`,
    :math:`\theta \leftarrow \theta - \eta m`. The learning rate of the current step is a
    value (the schedule is evaluated on the host, so one compiled program serves every
    schedule). Use as ``tx.update(None, state, params, batch=(X, t))``.
    """
    return optax.chain(direction, optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum),
                       optax.scale(-lr))


def method_value(cfg: CifarConfig, lam_last=None, lam_act=None) -> rules.Method:
    """The :mod:`linsam.rules` value of ``cfg.method`` (:attr:`Trainer.method`).

    ``rho``, ``lam_last``, ``lam_act`` become float32 leaves (arguments of the compiled step:
    traced, never compiled in; None counts as 0 until :meth:`Trainer.calibrate` fills in the
    Prop. 4.1 defaults); ``chunk_size`` (static) only where it splits the batch, so a chunk of
    at least the batch and no chunk share one program. Settings a method does not take are
    dropped (``rules.method(..., ignore_extra=True)``).
    """
    chunk = cfg.chunk_size if (cfg.chunk_size is not None and cfg.chunk_size < cfg.batch_size) else None
    f32 = lambda v: jnp.float32(0.0 if v is None else v)  # noqa: E731
    return rules.method(cfg.method, ignore_extra=True, rho=f32(cfg.rho), lam_last=f32(lam_last),
                        lam_act=f32(lam_act), chunk_size=chunk)


def method_chunks(method: rules.Method, batch: int) -> int:
    """Chunks a per-example method splits a batch into (1 without ``chunk_size``)."""
    chunk = getattr(method, "chunk_size", None)
    return 1 if chunk is None else -(-batch // chunk)


def method_hyper(method: rules.Method) -> dict:
    """The hyper-parameters of a method value as plain numbers (for the results)."""
    return {k: None if v is None else (int(v) if k == "chunk_size" else float(v)) for k, v in method.hyper.items()}


class TrainState(NamedTuple):
    """params: Flax 'params' (float32); batch_stats: BatchNorm running stats ({} otherwise);
    opt_state: optax state of :func:`make_optimizer` (the rule's and the decay's empty states,
    the float32 momentum buffer)."""

    params: Any
    batch_stats: Any
    opt_state: Any


def _cast_like(tree, like):
    return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), tree, like)


class ProgramSpec(NamedTuple):
    """What a compiled training/eval program depends on besides its arguments' shapes, dtypes
    and tree structure (the method value's class and ``chunk_size`` are part of that
    structure); everything else (data, learning rate, rho, regulariser coefficients, weight
    decay, momentum) is an argument, so tests and resumed runs with the same spec reuse one
    compiled program."""

    method: str
    width: int
    depth: int
    norm: str
    compute_dtype: str
    augment: bool
    rule_dtype: str = ""
    arch: str = "resnet"

    def net(self):
        """The Flax module: :class:`ResNet18`, or a small network (:func:`linsam.cifar.small.small_net`)."""
        if self.arch != "resnet":
            return small_net(self.arch, width=self.width, depth=self.depth, compute_dtype=self.compute_dtype,
                             num_classes=cdata.NUM_CLASSES)
        return ResNet18(num_classes=cdata.NUM_CLASSES, width=self.width, norm=self.norm,
                        compute_dtype=self.compute_dtype, stage_sizes=STAGE_SIZES[self.depth])


def program_spec(cfg: CifarConfig) -> ProgramSpec:
    """The :class:`ProgramSpec` of a config."""
    return ProgramSpec(cfg.method, cfg.width, cfg.depth, cfg.norm, cfg.compute_dtype, cfg.augment,
                       rule_compute_dtype(cfg.method, cfg.compute_dtype), cfg.arch)


def _net_spec(spec: ProgramSpec) -> ProgramSpec:
    """The part of a spec that evaluation depends on (one eval program for every method)."""
    return spec._replace(method="", augment=False, rule_dtype="")


def rule_spec(spec: ProgramSpec) -> ProgramSpec:
    """The network spec the update rule differentiates (its compute dtype: :func:`rule_compute_dtype`)."""
    return _net_spec(spec)._replace(compute_dtype=spec.rule_dtype or spec.compute_dtype)


@functools.lru_cache(maxsize=None)
def rule_model(spec: ProgramSpec):
    """The (cached, so jit caches hit) :class:`linsam.models.Generic` model of a spec's network
    (the MLP's carries the closed forms of 1-SAM, L-SAM and J-SAM: :mod:`linsam.cifar.small`)."""
    net = spec.net()
    return make_model(net) if spec.arch == "resnet" else make_small_model(net)


@functools.lru_cache(maxsize=None)
def _train_block_program(spec: ProgramSpec):
    """jit(block): ``lax.scan`` of training steps over a plan of (indices, crop offsets, flips, lr).

    ``hyper = (method, weight_decay, momentum)``: ``method`` a :mod:`linsam.rules` value (its
    hyper-parameters traced leaves), the step ``make_optimizer(linsam.optax.from_method(method,
    model), ...)``.
    """
    net = spec.net()
    model = rule_model(rule_spec(spec))

    def block(state: TrainState, plan, data, hyper):
        x_train, y_noisy, mean, std = data
        method, wd, momentum = hyper

        def step(state: TrainState, inp):
            idx, offsets, flips, lr = inp
            if spec.augment:
                X = cdata.preprocess(x_train[idx], mean, std, offsets, flips)
            else:
                X = cdata.preprocess(x_train[idx], mean, std)
            t = y_noisy[idx]
            params, bstats, opt_state = state
            if spec.norm == "batch":  # running statistics from the clean (unperturbed) batch only
                _, upd = net.apply({"params": params, "batch_stats": bstats}, X, train=True, mutable=["batch_stats"])
                bstats = _cast_like(upd["batch_stats"], bstats)
            tx = make_optimizer(linsam.optax.from_method(method, model), wd, momentum, lr)
            updates, new_opt = tx.update(None, opt_state, params, batch=(X, t))
            new_params = _cast_like(optax.apply_updates(params, _cast_like(updates, params)), params)
            return TrainState(new_params, bstats, _cast_like(new_opt, opt_state)), None

        return jax.lax.scan(step, state, plan)[0]

    return jax.jit(block, donate_argnums=0)


@functools.lru_cache(maxsize=None)
def _eval_program(spec: ProgramSpec):
    """jit: uint8 batch -> (logits (n, 10), penultimate activation norms (n,)) in eval mode."""
    net = spec.net()

    def ev(variables, xb, mean, std):
        X = cdata.preprocess(xb, mean, std)
        logits, phi = net.apply(variables, X, train=False, method=type(net).logits_and_features)
        return logits, jnp.sqrt(jnp.sum(jnp.square(phi), axis=-1))

    return jax.jit(ev)


@functools.lru_cache(maxsize=None)
def _prop41_program(spec: ProgramSpec):
    model = rule_model(spec)

    def coefficients(params, X, t, rho):
        def one(x, ti):
            logits = model.apply(params, x)
            r = jax.nn.softmax(logits) - jax.nn.one_hot(ti, logits.shape[0], dtype=logits.dtype)
            s = jnp.sqrt(jnp.sum(r * r))
            r_hat = r / jnp.maximum(s, 1e-30)
            J = rules.safe_norm(jax.grad(lambda p: jnp.vdot(r_hat, model.apply(p, x)))(params))
            u = head_kernel(params) @ r_hat
            q = rules.safe_norm(jax.grad(lambda p: jnp.vdot(u, model.features(p, x)))(params)) ** 2
            q = q / jnp.maximum(jnp.sum(u * u), 1e-30)
            J = jnp.maximum(J, 1e-30)
            return rho * s * q / J, rho * s / J

        lam_last, lam_act = jax.vmap(one)(X, t)
        return jnp.mean(lam_last), jnp.mean(lam_act)

    return jax.jit(coefficients)


def prop41_coefficients(spec: ProgramSpec, params, X, t, rho: float) -> tuple[float, float]:
    r"""Proposition 4.1 coefficients :math:`(\lambda_{\rm last}, \lambda_{\rm act})`, batch means.

    Per example: :math:`s = \|p - e_t\|`, :math:`\hat r = (p - e_t)/s`,
    :math:`J = \|\nabla_\theta\langle\hat r, f\rangle\|`, :math:`u = W_{\rm head}\hat r`,
    :math:`q = \|\nabla_\theta\langle u, \phi\rangle\|^2/\|u\|^2`; then
    :math:`\lambda_{\rm act} = \rho s/J`, :math:`\lambda_{\rm last} = \rho s q/J` (module doc).
    ``X`` (n, 32, 32, 3) normalised float32 inputs, ``t`` (n,) int labels.
    """
    args = (params, X, t, jnp.float32(rho))
    lam_last, lam_act = _compiled("prop41", spec, *args)(*args)
    return float(lam_last), float(lam_act)


#: Compiled executables by (program, spec, argument shapes, options): one compile per program.
_EXECUTABLES: dict = {}
#: One (program, method name, seconds) entry per compilation in this process (the log counts them).
COMPILE_EVENTS: list = []
#: XLA compiler options for every program compiled here. Empty by default. The CPU tests set
#: ``{"xla_backend_optimization_level": 0}`` (also: env ``LINSAM_CIFAR_FAST_COMPILE=1``),
#: which cuts XLA's CPU compile time about 3x for a slower run, right for 2-step tests.
COMPILER_OPTIONS: dict = (
    {"xla_backend_optimization_level": 0} if os.environ.get("LINSAM_CIFAR_FAST_COMPILE") == "1" else {}
)


def _compiled(program: str, spec: ProgramSpec, *args):
    """AOT-compiled executable of ``program`` ('train', 'eval', 'prop41') for these args, cached."""
    if program != "train":
        spec = _net_spec(spec)
    key = (program, spec, _signature(*args), tuple(sorted(COMPILER_OPTIONS.items())))
    if key not in _EXECUTABLES:
        t0 = time.perf_counter()
        jitted = {"train": _train_block_program, "eval": _eval_program, "prop41": _prop41_program}[program](spec)
        _EXECUTABLES[key] = jitted.lower(*args).compile(dict(COMPILER_OPTIONS) or None)
        COMPILE_EVENTS.append((program, spec.method, time.perf_counter() - t0))
    return _EXECUTABLES[key]


def _signature(*args) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (str(treedef),) + tuple((np.shape(a), str(np.asarray(a).dtype) if not hasattr(a, "dtype") else str(a.dtype))
                                   for a in leaves)


def _block_flops(executable, chunks: int) -> float | None:
    """FLOPs of one training block from XLA's cost analysis (a ``lax.map`` body is counted
    once: times the chunks of a per-example method); None where the backend gives none."""
    try:
        ca = executable.cost_analysis()
        ca = ca[0] if isinstance(ca, (list, tuple)) else ca
        flops = float(ca["flops"])
    except Exception:  # noqa: BLE001 - an estimate only
        return None
    return flops * chunks if math.isfinite(flops) and flops > 0 else None


def block_length(steps: int, log_every: int) -> int:
    """Largest divisor of ``steps`` that is at most ``log_every`` (>= 1)."""
    return max(d for d in range(1, min(log_every, steps) + 1) if steps % d == 0)


class OutOfTime(Exception):
    """The next block of training would end past the method's deadline."""


class Terminated(BaseException):
    """SIGTERM arrived (``linsam cifar`` turns it into this exception: e.g. the outer time
    guard of bench/gpu_cifar.sh). A BaseException, like KeyboardInterrupt, so that no
    ``except Exception`` swallows it."""


class Trainer:
    """Training and evaluation of one config on prepared data.

    Randomness, all explicit and seeded: initial weights from numpy PCG64 seeded by ``seed``
    (:func:`~linsam.cifar.resnet.init_variables`); epoch ``e`` (0-based) shuffles and draws
    its crop offsets and flips from ``default_rng([seed, 2, e])`` on the host, and the
    device applies them. (Host-side draws keep the random-number generator out of the
    compiled training program: XLA's CPU compile of threefry dominated the test time.)
    Nothing depends on wall-clock or on how the run was split into calls, so a resumed run
    repeats an uninterrupted one bit for bit.
    """

    def __init__(self, cfg: CifarConfig, data: PreparedData):
        self.cfg = cfg
        self.data = data
        self.spec = program_spec(cfg)
        self.net = self.spec.net()
        self.model = rule_model(rule_spec(self.spec))
        self.n_train = int(data.x_train.shape[0])
        self.steps = steps_per_epoch(cfg, self.n_train)
        if self.steps < 1:
            raise _err("batch_size", f"({cfg.batch_size}) exceeds the number of training images ({self.n_train})")
        self.total_steps = self.steps * cfg.epochs
        self.schedule = make_schedule(cfg, self.total_steps)
        self.device_data = (jnp.asarray(data.x_train), jnp.asarray(data.y_noisy),
                            jnp.asarray(data.mean, jnp.float32), jnp.asarray(data.std, jnp.float32))
        self.lam_last = cfg.lam_last
        self.lam_act = cfg.lam_act

    @property
    def method(self) -> rules.Method:
        """The method value (:func:`method_value`) with the current regulariser coefficients."""
        return method_value(self.cfg, self.lam_last, self.lam_act)

    # -- state
    def init_state(self) -> TrainState:
        variables = (init_variables(self.net, self.cfg.seed) if self.cfg.arch == "resnet"
                     else init_small_variables(self.net, self.cfg.seed, tuple(self.data.x_train.shape[1:])))
        params = variables["params"]
        bstats = variables.get("batch_stats", {})
        opt_state = make_optimizer(linsam.optax.from_method(self.method, self.model), 0.0, 0.0, 0.0).init(params)
        return TrainState(params, bstats, opt_state)

    def calibrate(self, state: TrainState) -> None:
        """Fill in the Prop. 4.1 defaults of ``jreg_fixed`` (only where the config leaves them None)."""
        if self.cfg.method != rules.JRegFixed.name or (self.lam_last is not None and self.lam_act is not None):
            return
        n = min(self.cfg.batch_size, self.n_train)
        x, y, mean, std = self.device_data
        X = cdata.preprocess(x[:n], mean, std)
        lam_last, lam_act = prop41_coefficients(self.spec, state.params, X, y[:n], self.cfg.rho)
        if self.lam_last is None:
            self.lam_last = lam_last
        if self.lam_act is None:
            self.lam_act = lam_act

    def hyper(self):
        """(method value, weight_decay, momentum): the method's leaves and the rest float32 scalars."""
        return self.method, jnp.float32(self.cfg.weight_decay), jnp.float32(self.cfg.momentum)

    # -- training
    def epoch_plan(self, epoch: int):
        """(indices (steps, batch) int32, crop offsets (steps, batch, 2) int32, flips
        (steps, batch) bool, learning rates (steps,) float32) for 0-based ``epoch``; the
        random parts from ``default_rng([seed, 2, epoch])``, the rates from the optax schedule."""
        rng = np.random.default_rng([self.cfg.seed, 2, int(epoch)])
        shape = (self.steps, self.cfg.batch_size)
        idx = rng.permutation(self.n_train)[: shape[0] * shape[1]].reshape(shape).astype(np.int32)
        offsets, flips = cdata.augmentation_params(rng, shape)
        lr = self.learning_rates(epoch * self.steps + np.arange(self.steps))
        return idx, offsets, flips, lr

    def learning_rates(self, steps) -> np.ndarray:
        return np.asarray(jax.vmap(self.schedule)(jnp.asarray(steps, jnp.int32)), np.float32)

    def blocks(self):
        """Block lengths covering one epoch, all equal, so one program is compiled per method:
        the largest divisor of the steps per epoch that is at most ``log_every`` (78 steps,
        ``log_every`` 20: 6 blocks of 13)."""
        b = block_length(self.steps, self.cfg.log_every)
        return [b] * (self.steps // b)

    def _executable(self, state, plan):
        return _compiled("train", self.spec, state, plan, self.device_data, self.hyper())

    def compile(self, state: TrainState) -> float:
        """Ahead-of-time compile the training block and the evaluation, and time one
        evaluation batch; returns seconds (the compile part is 0 when an identical program
        was compiled before in this process). ``compile_info`` says what was compiled."""
        t0 = time.perf_counter()
        n0 = len(COMPILE_EVENTS)
        plan = self.epoch_plan(0)
        for length in sorted(set(self.blocks())):
            exe = self._executable(state, tuple(jnp.asarray(a[:length]) for a in plan))
        self.block_flops = _block_flops(exe, method_chunks(self.method, self.cfg.batch_size))
        t1 = time.perf_counter()
        self._logits(state, self.data.x_test[: self.cfg.eval_batch_size])  # compiles (or reuses) and runs once
        t2 = time.perf_counter()
        self._logits(state, self.data.x_test[: self.cfg.eval_batch_size])  # timed: one evaluation batch
        self.eval_batch_s = time.perf_counter() - t2
        new = COMPILE_EVENTS[n0:]
        self.compile_info = {
            "train_programs": sum(1 for p, _, _ in new if p == "train"),
            "eval_programs": sum(1 for p, _, _ in new if p == "eval"),
            "block_steps": self.blocks()[0], "blocks_per_epoch": len(self.blocks()),
            "train_compile_s": t1 - t0, "eval_compile_s": t2 - t1,
        }
        return t2 - t0

    def eval_seconds_estimate(self) -> float:
        """Seconds of one :meth:`evaluate`, from the timed batch of :meth:`compile`."""
        n_eval = self.n_train if self.cfg.eval_train_size is None else min(self.cfg.eval_train_size, self.n_train)
        bs = self.cfg.eval_batch_size
        batches = -(-self.data.x_test.shape[0] // bs) + -(-n_eval // bs)
        return batches * getattr(self, "eval_batch_s", 0.0)

    def train_epoch(self, state: TrainState, epoch: int, progress: Callable | None = None,
                    may_continue: Callable | None = None) -> TrainState:
        """One epoch in :meth:`blocks`. ``may_continue(blocks_left, block_s)`` is asked before
        every block (``block_s``: the slowest block so far, None before the first); when it
        says no, :class:`OutOfTime` is raised and the epoch is abandoned (``state`` has been
        donated to the blocks that ran: the caller keeps the last finished epoch)."""
        plan = self.epoch_plan(epoch)
        start = 0
        hyper = self.hyper()
        lengths = self.blocks()
        for k, length in enumerate(lengths):
            if may_continue is not None and not may_continue(len(lengths) - k, getattr(self, "block_s", None)):
                raise OutOfTime(f"epoch {epoch + 1}: {len(lengths) - k} of {len(lengths)} blocks left")
            t0 = time.perf_counter()
            block = tuple(jnp.asarray(a[start : start + length]) for a in plan)
            state = self._executable(state, block)(state, block, self.device_data, hyper)
            start += length
            if progress is not None or may_continue is not None:
                jax.block_until_ready(state.params)
                self.block_s = max(getattr(self, "block_s", 0.0), time.perf_counter() - t0)
            if progress is not None:
                progress(start, self.steps)
        jax.block_until_ready(state.params)
        return state

    # -- evaluation
    def _logits(self, state: TrainState, x_uint8: np.ndarray):
        """(logits (n, 10) float64, feature norms (n,)) in eval mode, batched with padding."""
        variables = {"params": state.params}
        if self.cfg.norm == "batch":
            variables["batch_stats"] = state.batch_stats
        bs = self.cfg.eval_batch_size
        _, _, mean, std = self.device_data
        n = x_uint8.shape[0]
        logits, norms = [], []
        for s in range(0, n, bs):
            xb = x_uint8[s : s + bs]
            m = xb.shape[0]
            if m < bs:
                xb = np.concatenate([xb, np.zeros((bs - m,) + xb.shape[1:], xb.dtype)])
            args = (variables, jnp.asarray(xb), mean, std)
            lg, nm = _compiled("eval", self.spec, *args)(*args)
            logits.append(np.asarray(lg, np.float64)[:m])
            norms.append(np.asarray(nm, np.float64)[:m])
        return np.concatenate(logits), np.concatenate(norms)

    def evaluate(self, state: TrainState) -> dict:
        """Per-epoch metrics (docs/cifar.md lists them)."""
        d = self.data
        n_eval = self.n_train if self.cfg.eval_train_size is None else min(self.cfg.eval_train_size, self.n_train)
        lt, _ = self._logits(state, d.x_test)
        lr_, fn = self._logits(state, d.x_train[:n_eval])
        yn, yc, mask = d.y_noisy[:n_eval], d.y_clean[:n_eval], d.noise_mask[:n_eval]

        def loss_acc(logits, y):
            lse = np.logaddexp.reduce(logits, axis=1)
            loss = lse - logits[np.arange(len(y)), y]
            return loss, (np.argmax(logits, axis=1) == y)

        test_loss, test_hit = loss_acc(lt, d.y_test)
        tr_loss, tr_hit = loss_acc(lr_, yn)
        _, tr_hit_true = loss_acc(lr_, yc)
        mean_or_nan = lambda a: float(np.mean(a)) if a.size else float("nan")  # noqa: E731
        return {
            "test_acc": mean_or_nan(test_hit),
            "test_loss": mean_or_nan(test_loss),
            "train_acc": mean_or_nan(tr_hit),
            "train_loss": mean_or_nan(tr_loss),
            "train_acc_clean": mean_or_nan(tr_hit[~mask]),
            "train_acc_noisy": mean_or_nan(tr_hit[mask]),
            "train_acc_noisy_true": mean_or_nan(tr_hit_true[mask]),
            "train_loss_clean": mean_or_nan(tr_loss[~mask]),
            "train_loss_noisy": mean_or_nan(tr_loss[mask]),
            "last_layer_norm": float(np.linalg.norm(np.asarray(head_kernel(state.params), np.float64))),
            "feature_norm": mean_or_nan(fn),
            "n_eval_train": int(n_eval),
        }


# ----------------------------------------------------------------------------- checkpoints, results


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    write_bytes_atomic(path, payload)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write strict JSON (a non-finite number is null, with its reason: ``linsam._src.atomic.strict_json``)
    through a temporary file and ``os.replace`` (never a half-written file)."""
    from linsam._src.atomic import strict_json

    _atomic_write_bytes(Path(path), (strict_json(obj, indent=1) + "\n").encode())


def save_checkpoint(path: Path, state: TrainState, meta: dict) -> None:
    """All leaves of ``state`` plus a JSON ``meta`` (epoch, metrics, hash), atomically."""
    import io

    leaves = jax.tree_util.tree_leaves(state)
    buf = io.BytesIO()
    np.savez(buf, meta=np.asarray(json.dumps(meta)), **{f"leaf_{i}": np.asarray(a) for i, a in enumerate(leaves)})
    _atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, template: TrainState) -> tuple[TrainState, dict]:
    """Inverse of :func:`save_checkpoint`; shapes/dtypes are checked against ``template``."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        n = sum(1 for k in z.files if k.startswith("leaf_"))
        if n != len(leaves):
            raise ValueError(f"checkpoint {path} has {n} arrays, the model needs {len(leaves)}")
        new = []
        for i, ref in enumerate(leaves):
            a = z[f"leaf_{i}"]
            if a.shape != np.shape(ref) or a.dtype != np.asarray(ref).dtype:
                raise ValueError(f"checkpoint {path}: array {i} is {a.dtype}{a.shape}, expected "
                                 f"{np.asarray(ref).dtype}{np.shape(ref)}")
            new.append(jnp.asarray(a))
    return jax.tree_util.tree_unflatten(treedef, new), meta


def summarize(epochs: list[dict]) -> dict:
    """Peak test accuracy and its (1-based) epoch, final values, mean time per epoch."""
    if not epochs:
        return {"peak_test_acc": None, "peak_epoch": None, "final_test_acc": None, "completed_epochs": 0,
                "mean_epoch_time_s": None}
    accs = [e["test_acc"] for e in epochs]
    i = int(np.nanargmax(accs))
    times = [e["epoch_time_s"] for e in epochs if e.get("epoch_time_s") is not None]
    return {
        "peak_test_acc": accs[i],
        "peak_epoch": epochs[i]["epoch"],
        "final_test_acc": accs[-1],
        "completed_epochs": len(epochs),
        "mean_epoch_time_s": float(np.mean(times)) if times else None,
        "peak_train_acc_noisy": epochs[i]["train_acc_noisy"],
        "final_train_acc_noisy": epochs[-1]["train_acc_noisy"],
    }


def device_description() -> str:
    devs = jax.devices()
    kinds = sorted({getattr(d, "device_kind", d.platform) for d in devs})
    return f"{len(devs)} x {', '.join(kinds)} ({devs[0].platform}); host {platform.node() or 'unknown'}, " \
           f"{os.cpu_count()} CPUs"


def _versions() -> dict:
    import flax

    return {"linsam": linsam.__version__, "jax": jax.__version__, "flax": flax.__version__,
            "optax": optax.__version__, "python": platform.python_version()}


# ----------------------------------------------------------------------------- the run


def _fmt_progress(method, epoch, epochs, step, steps, t0):
    rate = step / max(time.perf_counter() - t0, 1e-9)
    return f"[{method}] epoch {epoch}/{epochs} step {step}/{steps} ({rate:.1f} steps/s)"


#: Safety factors of the time plan: the next block is charged the slowest block so far
#: times BLOCK_SAFETY, the evaluation and writes after it their slowest measured cost times
#: TAIL_SAFETY (the first epoch: the timed evaluation batch and the timed setup checkpoint).
BLOCK_SAFETY = 1.25
TAIL_SAFETY = 1.5
#: The first block of a method, before anything of it is timed, is charged its FLOPs at the
#: previous method's measured seconds per FLOP times this, then x BLOCK_SAFETY like any block.
#: (2.0 refused 1-SAM outright in a CPU run where its block took 1.7x SGD's for 2.07x the
#: FLOPs; an underestimate only takes time from the methods after it, inside the total.)
FIRST_BLOCK_SAFETY = 1.0

#: Statuses of a method's results (docs/cifar.md).
STATUSES = ("running", "completed", "time_limit", "interrupted", "killed")


def run_method(cfg: CifarConfig, data: PreparedData, out_dir: str | os.PathLike, *, fresh: bool = False,
               stop_after_epochs: int | None = None, verbose: bool = True, extra_info: dict | None = None,
               on_epoch: Callable | None = None, deadline: float | None = None,
               seconds_per_flop: float | None = None) -> dict:
    """Train one method, checkpointing each epoch in ``out_dir``; returns its results dict.

    Resumes from ``out_dir/checkpoint.npz`` when its config hash matches (``fresh=True``
    starts over). ``stop_after_epochs`` ends this call after that many new epochs (a
    simulated interruption; the checkpoint lets a later call continue). ``out_dir/results.json``
    is rewritten atomically after every epoch, after which ``on_epoch()`` is called.

    Time (``cfg.time_limit_s`` from the start of this call, and ``deadline``, a
    :func:`time.monotonic` value; the earlier one counts): the compile is measured and
    charged; before every block of training (:meth:`Trainer.blocks`) the blocks left in the
    epoch are charged the slowest block so far (x :data:`BLOCK_SAFETY`) plus the evaluation
    and the writes that end an epoch, measured (x :data:`TAIL_SAFETY`); when that passes the
    deadline the method stops with status ``time_limit`` and keeps its finished epochs. Not
    bounded in advance: the compile itself, and the first block of the method, which is charged
    ``seconds_per_flop`` (measured on the method before, see :func:`run`) times its FLOPs x
    :data:`FIRST_BLOCK_SAFETY` when given, else nothing. KeyboardInterrupt leaves status ``interrupted``, :class:`Terminated`
    (SIGTERM) ``killed``, both written before the exception goes on.
    """
    cfg = validate_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.monotonic()
    limits = [t for t in (None if cfg.time_limit_s is None else t_start + cfg.time_limit_s, deadline) if t is not None]
    stop_at = min(limits) if limits else None
    say = print if verbose else (lambda *a, **k: None)
    chash = config_hash(cfg, data.info["fingerprint"])
    ckpt = out / "checkpoint.npz"
    trainer = Trainer(cfg, data)
    state = trainer.init_state()
    epochs_done: list[dict] = []
    meta_extra = {}
    if ckpt.exists() and not fresh:
        try:
            loaded, meta = load_checkpoint(ckpt, state)
        except Exception as err:
            raise ValueError(f"cannot resume from {ckpt}: {err}; use --fresh to start over") from err
        if meta.get("config_hash") != chash:
            raise ValueError(f"{ckpt} belongs to a run with a different configuration (hash {meta.get('config_hash')} "
                             f"!= {chash}); use --fresh to overwrite it or choose another --out")
        state, epochs_done = loaded, meta["epochs"]
        trainer.lam_last, trainer.lam_act = meta.get("lam_last"), meta.get("lam_act")
        meta_extra = meta.get("compile", {})
        if epochs_done:
            say(f"[{cfg.method}] resuming after epoch {len(epochs_done)} from {ckpt}", flush=True)
    elif fresh and ckpt.exists():
        ckpt.unlink()
    if not epochs_done:
        trainer.calibrate(state)
    status = "completed" if len(epochs_done) >= cfg.epochs else "running"
    stop_reason = None
    timing = {"compile_s": None, "max_block_s": None, "block_flops": None, "max_eval_s": None, "max_write_s": None,
              "time_limit_s": cfg.time_limit_s,
              "deadline_in_s": None if stop_at is None else round(stop_at - t_start, 3)}

    def results(status_now, compile_s=None):
        return {
            "schema": SCHEMA,
            "method": cfg.method,
            "hyper": method_hyper(trainer.method),
            "status": status_now,
            "stop_reason": stop_reason,
            "config": config_dict(cfg),
            "config_hash": chash,
            "versions": _versions(),
            "linsam_version": linsam.__version__,
            "device": device_description(),
            "data": data.info,
            "model": {"arch": model_arch_name(cfg), "width": cfg.width, "norm": cfg.norm,
                      "compute_dtype": cfg.compute_dtype, "rule_compute_dtype": trainer.spec.rule_dtype,
                      "n_params": count_params(state.params)},
            "steps_per_epoch": trainer.steps,
            "lam_last": trainer.lam_last, "lam_act": trainer.lam_act,
            "compile_s": compile_s if compile_s is not None else meta_extra.get("compile_s"),
            "compile": getattr(trainer, "compile_info", None),
            "timing": timing,
            "epochs": epochs_done,
            "summary": summarize(epochs_done),
            **(extra_info or {}),
        }

    def record(status_now):
        write_json_atomic(out / "results.json", results(status_now, compile_s))
        if on_epoch is not None:
            on_epoch()

    def save(st):
        save_checkpoint(ckpt, st, {"config_hash": chash, "epochs": epochs_done, "lam_last": trainer.lam_last,
                                   "lam_act": trainer.lam_act, "compile": meta_extra})

    compile_s = None
    try:
        if status != "completed":
            if stop_at is not None and time.monotonic() >= stop_at:
                status, stop_reason = "time_limit", "no time left to start this method"
                say(f"[{cfg.method}] skipped: no time left", flush=True)
                record(status)
                return results(status, compile_s)
            say(f"[{cfg.method}] {trainer.n_train} train images ({data.info['n_noisy']} noisy, realised noise rate "
                f"{data.realised_rate:.4f}), {trainer.steps} steps/epoch, {cfg.epochs} epochs; compiling ...",
                flush=True)
            record("running")
            compile_s = trainer.compile(state)
            meta_extra = {"compile_s": compile_s}
            timing["compile_s"] = compile_s
            ci = trainer.compile_info
            say(f"[{cfg.method}] compiled in {compile_s:.1f}s: {ci['train_programs']} training program(s) "
                f"({ci['train_compile_s']:.1f}s; {ci['blocks_per_epoch']} blocks of {ci['block_steps']} steps per "
                f"epoch), {ci['eval_programs']} evaluation program(s) ({ci['eval_compile_s']:.1f}s)", flush=True)
            t0 = time.monotonic()
            save(state)  # the setup checkpoint: also times the write that ends every epoch
            tail_s = trainer.eval_seconds_estimate() + (time.monotonic() - t0)
        new_epochs = 0

        def may_continue(blocks_left, block_s):
            if stop_at is None:
                return True
            if block_s is None and seconds_per_flop is not None and getattr(trainer, "block_flops", None):
                block_s = FIRST_BLOCK_SAFETY * seconds_per_flop * trainer.block_flops / BLOCK_SAFETY
            now = time.monotonic()
            need = TAIL_SAFETY * tail_s + (0.0 if block_s is None else BLOCK_SAFETY * block_s * blocks_left)
            return now + need <= stop_at

        while len(epochs_done) < cfg.epochs:
            if stop_after_epochs is not None and new_epochs >= stop_after_epochs:
                status, stop_reason = "interrupted", f"stop_after_epochs={stop_after_epochs}"
                break
            e = len(epochs_done)
            t0 = time.perf_counter()
            prog = None
            if verbose and len(trainer.blocks()) > 1:
                def prog(s, n, e=e, t0=t0):
                    say(_fmt_progress(cfg.method, e + 1, cfg.epochs, s, n, t0), flush=True)
            try:
                state = trainer.train_epoch(state, e, prog, may_continue=may_continue)
            except OutOfTime as err:
                status = "time_limit"
                blk = getattr(trainer, "block_s", None)
                stop_reason = (f"the rest of epoch {e + 1} would pass the time limit ({err}; slowest block "
                               f"{'not run yet' if blk is None else f'{blk:.2f}s'}, evaluation + writes "
                               f"{tail_s:.2f}s, {stop_at - time.monotonic():.1f}s left)")
                say(f"[{cfg.method}] stopping: {stop_reason}", flush=True)
                break
            t1 = time.perf_counter()
            m = trainer.evaluate(state)
            t2 = time.perf_counter()
            m = {"epoch": e + 1, "step": (e + 1) * trainer.steps,
                 "lr": float(trainer.learning_rates([(e + 1) * trainer.steps - 1])[0]), **m,
                 "epoch_time_s": t1 - t0, "eval_time_s": t2 - t1}
            epochs_done.append(m)
            new_epochs += 1
            save(state)
            status = "completed" if len(epochs_done) >= cfg.epochs else "running"
            timing["max_block_s"] = getattr(trainer, "block_s", None)
            timing["block_flops"] = getattr(trainer, "block_flops", None)
            timing["max_eval_s"] = max(timing["max_eval_s"] or 0.0, t2 - t1)
            record(status)
            t3 = time.perf_counter()
            timing["max_write_s"] = max(timing["max_write_s"] or 0.0, t3 - t2)
            tail_s = max(tail_s, t3 - t1)
            say(f"[{cfg.method}] epoch {e + 1}/{cfg.epochs}: test acc {m['test_acc']:.4f}  train acc clean "
                f"{m['train_acc_clean']:.4f} noisy(fit) {m['train_acc_noisy']:.4f}  train loss {m['train_loss']:.4f}  "
                f"|W_last| {m['last_layer_norm']:.3f} |phi| {m['feature_norm']:.3f}  {m['epoch_time_s']:.1f}s",
                flush=True)
    except KeyboardInterrupt:
        stop_reason = "KeyboardInterrupt"
        record("interrupted")
        raise
    except Terminated:
        stop_reason = "SIGTERM (e.g. the outer time guard of bench/gpu_cifar.sh)"
        record("killed")
        raise
    res = results(status, compile_s)
    write_json_atomic(out / "results.json", res)
    return res


def _read_method_results(work: Path, methods=None) -> dict:
    runs = {}
    for sub in sorted(work.iterdir()) if work.exists() else []:
        f = sub / "results.json"
        if sub.is_dir() and f.exists() and (methods is None or sub.name in methods):
            runs[sub.name] = json.loads(f.read_text())
    return runs


def aggregate(out_dir: str | os.PathLike, methods: list[str] | None = None, *,
              work_dir: str | os.PathLike | None = None) -> dict:
    """Combine ``work_dir/<method>/results.json`` (default ``work_dir = out_dir``) into
    ``out_dir/results.json`` (atomic).

    Schema (docs/cifar.md): ``methods[<name>]`` has ``peak_test_acc``, ``peak_epoch``,
    ``final_test_acc``, ``completed_epochs``, ``mean_epoch_time_s``, ``status`` and the full
    per-epoch list ``epochs``; ``gaps`` has ``<m>_minus_gd`` peak differences (gd: SGD);
    ``comparable`` is True when every method ran with the same data, noise and training
    settings (methods can be run in separate calls into one ``out_dir``).
    """
    out = Path(out_dir)
    runs = _read_method_results(Path(work_dir) if work_dir is not None else out, methods)
    order = [m for m in METHODS if m in runs]
    agg = {
        "schema": SCHEMA + "+aggregate",
        "linsam_version": linsam.__version__,
        "versions": _versions(),
        "device": device_description(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "methods": {},
        "gaps": {},
    }
    for m in order:
        r = runs[m]
        agg["methods"][m] = {**r["summary"], "status": r["status"], "stop_reason": r.get("stop_reason"),
                             "config": r["config"], "data": r["data"], "model": r["model"],
                             "lam_last": r.get("lam_last"), "lam_act": r.get("lam_act"),
                             "compile_s": r.get("compile_s"), "compile": r.get("compile"), "timing": r.get("timing"),
                             "preset": r.get("preset"), "device": r.get("device"), "epochs": r["epochs"]}
    shared = [{k: v for k, v in r["config"].items() if k not in ("method", "lam_last", "lam_act", "time_limit_s")}
              | {"data": r["data"].get("fingerprint")} for r in agg["methods"].values()]
    agg["comparable"] = all(s == shared[0] for s in shared)  # same data, noise and training settings
    base = agg["methods"].get("gd", {}).get("peak_test_acc")
    for m, r in agg["methods"].items():
        if m != "gd" and base is not None and r.get("peak_test_acc") is not None:
            agg["gaps"][f"{m}_minus_gd"] = r["peak_test_acc"] - base
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", agg)
    return agg


def draw_figure(agg: dict, out_dir: str | os.PathLike) -> bool:
    """``out_dir/curves.png`` from ``agg``; a failure (no matplotlib, a bad backend, a full
    disk) is a warning on stderr, never an error: the results never depend on the figure."""
    return _draw("plot_curves", agg, out_dir)


def _draw(plotter: str, agg: dict, out_dir) -> bool:
    """``linsam.cifar.plot.<plotter>(agg, out_dir/curves.png)``; any failure is a warning."""
    try:
        from linsam.cifar import plot

        getattr(plot, plotter)(agg, Path(out_dir) / "curves.png")
        return True
    except Exception as err:  # noqa: BLE001 - the figure is optional by design
        print(f"[cifar] warning: figure not drawn ({type(err).__name__}: {err}); the results are unaffected",
              file=sys.stderr, flush=True)
        return False


def method_deadlines(now: float, deadline: float | None, shares: dict | None, methods: list[str]):
    """Deadline of the first of ``methods`` when the time left, ``deadline - now``, is split
    by ``shares`` over the methods still to run (a method that ends early leaves its time to
    the rest). None when there is no deadline."""
    if deadline is None:
        return None
    if not shares:
        return deadline
    w = [float(shares.get(m, 1.0)) for m in methods]
    return now + max(deadline - now, 0.0) * w[0] / sum(w)


def run(configs: list[CifarConfig], out_dir: str | os.PathLike, *, data_path=None, fresh: bool = False,
        stop_after_epochs: int | None = None, verbose: bool = True, plot: bool = True,
        dataset: cdata.CIFAR10 | None = None, extra_info: dict | None = None,
        work_dir: str | os.PathLike | None = None, deadline: float | None = None,
        time_shares: dict | None = None) -> dict:
    """Run several methods (one config each, same data and noise).

    Per-method results and checkpoints go to ``work_dir/<method>/`` (default: ``out_dir``);
    the aggregate ``out_dir/results.json`` is rewritten after every epoch and, with ``plot``,
    the figure ``out_dir/curves.png`` after each method (a failed figure is a warning). So
    with a separate ``work_dir``, ``out_dir`` holds only those two files. Nothing is created
    before the data has loaded. ``deadline`` (:func:`time.monotonic`) ends the whole call:
    each method gets the time left split by ``time_shares`` (e.g. ``{"gd": 1, "one_sam":
    2}``) over the methods still to run, within its own ``time_limit_s``. Loads the data
    once (``dataset`` to pass arrays directly, e.g. in tests). Returns the aggregate dict.
    """
    configs = [validate_config(c) for c in configs]
    names = [c.method for c in configs]
    if len(set(names)) != len(names):
        raise ValueError(f"--method lists a method twice: {names}")
    base = {k: v for k, v in config_dict(configs[0]).items() if k not in ("method", "lam_last", "lam_act")}
    for c in configs[1:]:
        d = {k: v for k, v in config_dict(c).items() if k not in ("method", "lam_last", "lam_act", "time_limit_s")}
        b = {k: v for k, v in base.items() if k != "time_limit_s"}
        if d != b:
            raise ValueError("all methods of one run must share the data/noise/training settings")
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    if dataset is None:
        cdata.check_data_path(data_path)
        dataset = cdata.load_cifar10(data_path, verbose=verbose)
    prepared = prepare_data(dataset, configs[0])
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if verbose:
        print(f"[cifar] {prepared.info['n_train']} train / {prepared.info['n_test']} test images from "
              f"{prepared.info['source']}; noise {configs[0].noise_kind} p={configs[0].noise_rate}: realised rate "
              f"{prepared.realised_rate:.4f} ({prepared.info['n_noisy']} flipped); device {device_description()}",
              flush=True)
        if deadline is not None:
            print(f"[cifar] time left for the methods: {deadline - time.monotonic():.0f}s (shares "
                  f"{time_shares or 'equal: none'})", flush=True)
    agg = None
    seconds_per_flop = None
    for i, c in enumerate(configs):
        dl = method_deadlines(time.monotonic(), deadline, time_shares, names[i:])
        try:
            res = run_method(c, prepared, work / c.method, fresh=fresh, stop_after_epochs=stop_after_epochs,
                             verbose=verbose, extra_info=extra_info, deadline=dl, seconds_per_flop=seconds_per_flop,
                             on_epoch=lambda: aggregate(out, names, work_dir=work))
            t = res.get("timing") or {}
            if t.get("max_block_s") and t.get("block_flops"):
                seconds_per_flop = t["max_block_s"] / t["block_flops"]
        except BaseException:
            aggregate(out, names, work_dir=work)  # the results, quickly (no figure: SIGKILL may follow)
            raise
        agg = aggregate(out, names, work_dir=work)
        if plot:
            draw_figure(agg, out)
    if verbose and agg is not None:
        for m, r in agg["methods"].items():
            peak = "none" if r["peak_test_acc"] is None else f"{r['peak_test_acc']:.4f}"
            print(f"[cifar] {m}: peak test acc {peak} at epoch {r['peak_epoch']} "
                  f"({r['completed_epochs']} epochs, {r['status']})", flush=True)
    return agg


def finalize(out_dir: str | os.PathLike, *, work_dir: str | os.PathLike | None = None, killed: bool = False,
             plot: bool = True) -> dict:
    """After a run ended, however it ended: mark methods still ``running`` as ``killed``
    (when ``killed``: the process was stopped from outside, e.g. SIGKILL after the time
    guard), rewrite ``out_dir/results.json`` (and the figure), and remove temporary files
    a killed atomic write left in ``out_dir``. Used by bench/gpu_cifar.sh."""
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    if killed:
        for name, r in _read_method_results(work).items():
            if r.get("status") == "running":
                r["status"] = "killed"
                r["stop_reason"] = "stopped from outside while running (the outer time guard: SIGTERM/SIGKILL)"
                write_json_atomic(work / name / "results.json", r)
    for tmp in out.glob(".*.tmp") if out.exists() else []:
        tmp.unlink()
    agg = aggregate(out, work_dir=work)
    if plot:
        draw_figure(agg, out)
    return agg


# ----------------------------------------------------------------------------- several seeds

SEEDS_SCHEMA = SCHEMA + "+seeds"
#: Per-epoch curves kept for each method and seed in the several-seed results.
CURVE_KEYS = ("test_acc", "test_loss", "train_acc", "train_acc_clean", "train_acc_noisy", "train_acc_noisy_true",
              "train_loss", "last_layer_norm", "feature_norm", "epoch_time_s", "eval_time_s")


def _seed_dir(work: Path, seed: int) -> Path:
    return work / f"seed_{int(seed)}"


def _interval(ci) -> dict:
    return {"mean": float(ci.mean), "lo": float(ci.lo), "hi": float(ci.hi), "n": int(ci.n)}


def aggregate_seeds(out_dir: str | os.PathLike, seeds, *, work_dir: str | os.PathLike | None = None,
                    extra: dict | None = None) -> dict:
    r"""Combine the per-seed aggregates ``work_dir/seed_<s>/results.json`` (written by
    :func:`run`) into ``out_dir/results.json`` (atomic; schema ``linsam.cifar.results/1+seeds``).

    ``methods[<name>]``: ``peak_test_acc`` (mean over the seeds that ran the method) with
    ``peak_test_acc_ci`` (Student-t 95%, :func:`linsam.stats.mean_ci`), ``gain_over_gd``
    (the paired difference of peak test accuracies, seed by seed, with its 95% interval:
    :func:`linsam.stats.paired_diff_ci`), means of ``peak_epoch``, ``final_test_acc``,
    ``final_train_acc_clean``, ``final_train_acc_noisy``; ``config``, ``data``, ``model`` of
    the first seed (the fields C8 reads); and ``seeds[<s>]``: that seed's peak test accuracy,
    its epoch, final accuracy, clean and noisy train accuracy (final and at the peak), status,
    and the per-epoch ``curves``. ``extra`` (e.g. the call's wall and CPU time) is stored as is.
    """
    from linsam import stats

    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    per_seed = {}
    for s in seeds:
        f = _seed_dir(work, s) / "results.json"
        if f.exists():
            per_seed[int(s)] = json.loads(f.read_text())
    order = [m for m in METHODS if any(m in a["methods"] for a in per_seed.values())]
    agg = {"schema": SEEDS_SCHEMA, "linsam_version": linsam.__version__, "versions": _versions(),
           "device": device_description(), "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "seeds": [int(s) for s in seeds], "seeds_run": sorted(per_seed), "methods": {}, "gaps": {}, "paired": {}}
    for m in order:
        runs = {s: a["methods"][m] for s, a in per_seed.items() if m in a["methods"]}
        table = {}
        for s, r in runs.items():
            ep = r.get("epochs") or []
            i = None if r.get("peak_epoch") is None else int(r["peak_epoch"]) - 1
            table[s] = {
                "peak_test_acc": r.get("peak_test_acc"), "peak_epoch": r.get("peak_epoch"),
                "final_test_acc": r.get("final_test_acc"), "completed_epochs": r.get("completed_epochs"),
                "final_train_acc_clean": ep[-1]["train_acc_clean"] if ep else None,
                "final_train_acc_noisy": ep[-1]["train_acc_noisy"] if ep else None,
                "peak_train_acc_clean": ep[i]["train_acc_clean"] if ep and i is not None else None,
                "peak_train_acc_noisy": ep[i]["train_acc_noisy"] if ep and i is not None else None,
                "status": r.get("status"), "stop_reason": r.get("stop_reason"),
                "mean_epoch_time_s": r.get("mean_epoch_time_s"), "realised_rate": (r.get("data") or {}).get("realised_rate"),
                "lam_last": r.get("lam_last"), "lam_act": r.get("lam_act"),
                "curves": {"epoch": [e["epoch"] for e in ep], **{k: [e.get(k) for e in ep] for k in CURVE_KEYS}},
            }

        def mean_of(key):
            v = [t[key] for t in table.values() if t[key] is not None]
            return float(np.mean(v)) if v else None

        peaks = [t["peak_test_acc"] for t in table.values() if t["peak_test_acc"] is not None]
        first = runs[min(runs)]
        statuses = {t["status"] for t in table.values()}
        agg["methods"][m] = {
            "peak_test_acc": float(np.mean(peaks)) if peaks else None,
            "peak_test_acc_ci": _interval(stats.mean_ci(peaks)) if peaks else None,
            "peak_epoch": mean_of("peak_epoch"), "final_test_acc": mean_of("final_test_acc"),
            "final_train_acc_clean": mean_of("final_train_acc_clean"),
            "final_train_acc_noisy": mean_of("final_train_acc_noisy"),
            "peak_train_acc_noisy": mean_of("peak_train_acc_noisy"),
            "completed_epochs": min((t["completed_epochs"] or 0) for t in table.values()),
            "mean_epoch_time_s": mean_of("mean_epoch_time_s"),
            "status": statuses.pop() if len(statuses) == 1 else "mixed",
            "n_seeds": len(table), "config": {k: v for k, v in first["config"].items() if k != "seed"},
            "data": first["data"], "model": first["model"], "preset": first.get("preset"),
            "seeds": {str(s): t for s, t in sorted(table.items())},
        }
    base = agg["methods"].get("gd")
    for m, r in agg["methods"].items():
        if m == "gd" or base is None:
            continue
        pairs = [(r["seeds"][s]["peak_test_acc"], base["seeds"][s]["peak_test_acc"]) for s in r["seeds"]
                 if s in base["seeds"] and r["seeds"][s]["peak_test_acc"] is not None
                 and base["seeds"][s]["peak_test_acc"] is not None]
        if pairs:
            a, b = np.asarray(pairs, float).T
            r["gain_over_gd"] = _interval(stats.paired_diff_ci(a, b))
            agg["gaps"][f"{m}_minus_gd"] = r["gain_over_gd"]["mean"]
            agg["paired"][f"{m}_minus_gd"] = r["gain_over_gd"]
    shared = [{k: v for k, v in r["config"].items() if k not in ("method", "lam_last", "lam_act", "time_limit_s")}
              for r in agg["methods"].values()]
    agg["comparable"] = (all(s == shared[0] for s in shared)
                         and all(a.get("comparable", True) for a in per_seed.values()))
    agg.update(extra or {})
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / "results.json", agg)
    return agg


def draw_seed_figure(agg: dict, out_dir: str | os.PathLike) -> bool:
    """``out_dir/curves.png`` of a several-seed run (:func:`linsam.cifar.plot.plot_seed_curves`);
    a failure is a warning, as in :func:`draw_figure`."""
    return _draw("plot_seed_curves", agg, out_dir)


def _usage() -> dict:
    """CPU seconds (user + system) of this process and its finished children."""
    import resource

    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return {"cpu_user_s": s.ru_utime + c.ru_utime, "cpu_system_s": s.ru_stime + c.ru_stime}


def run_seeds(configs: list[CifarConfig], seeds, out_dir: str | os.PathLike, *, data_path=None,
              dataset: cdata.CIFAR10 | None = None, work_dir: str | os.PathLike | None = None,
              deadline: float | None = None, time_shares: dict | None = None, plot: bool = True,
              verbose: bool = True, fresh: bool = False, extra_info: dict | None = None,
              started: float | None = None) -> dict:
    """Run the methods of ``configs`` once per seed (each seed's data subset, label noise and
    initial weights from that seed), then combine them with paired intervals over the seeds.

    Seed ``s`` is a whole :func:`run` into ``work_dir/seed_<s>/`` (default ``work_dir =
    out_dir``; its per-method results and checkpoints, and its own aggregate); after each seed
    ``out_dir/results.json`` (:func:`aggregate_seeds`) and ``out_dir/curves.png`` are rewritten.
    The data are loaded once. ``deadline`` (:func:`time.monotonic`) ends the whole call: each
    seed gets an equal part of the time left, split over its methods by ``time_shares``.
    ``started`` (a :func:`time.monotonic` value, e.g. the process start) gives the call's wall
    time in the results (``run.wall_s``, with the process's CPU seconds). Returns the aggregate.
    """
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds must list distinct integers >= 0, got {seeds}")
    configs = [validate_config(c.replace(seed=seeds[0])) for c in configs]
    started = time.monotonic() if started is None else started
    if dataset is None:
        cdata.check_data_path(data_path)
        dataset = cdata.load_cifar10(data_path, verbose=verbose)
    out = Path(out_dir)
    work = Path(work_dir) if work_dir is not None else out
    agg = None
    for i, s in enumerate(seeds):
        now = time.monotonic()
        dl = None if deadline is None else now + max(deadline - now, 0.0) / (len(seeds) - i)
        if verbose:
            print(f"[cifar] seed {s} ({i + 1}/{len(seeds)})", flush=True)
        run([c.replace(seed=s) for c in configs], _seed_dir(work, s), dataset=dataset, work_dir=_seed_dir(work, s),
            deadline=dl, time_shares=time_shares, plot=False, verbose=verbose, fresh=fresh, extra_info=extra_info)
        extra = {"preset": (extra_info or {}).get("preset"),
                 "run": {"wall_s": time.monotonic() - started, **_usage(), "complete": i == len(seeds) - 1}}
        agg = aggregate_seeds(out, seeds, work_dir=work, extra=extra)
        if plot:
            draw_seed_figure(agg, out)
    if verbose and agg is not None:
        for m, r in agg["methods"].items():
            ci, g = r["peak_test_acc_ci"], r.get("gain_over_gd")
            gain = "" if g is None else f"; paired gain over SGD {g['mean']:+.4f} [{g['lo']:+.4f}, {g['hi']:+.4f}]"
            print(f"[cifar] {m}: peak test acc {ci['mean']:.4f} [{ci['lo']:.4f}, {ci['hi']:.4f}] over {ci['n']} seeds "
                  f"(mean peak epoch {r['peak_epoch']:.1f}){gain}", flush=True)
    return agg
