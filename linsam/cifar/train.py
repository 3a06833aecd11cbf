r"""Training driver: CIFAR-10 + label noise + ResNet-18 + a linsam update rule + optax SGD.

One training step on a mini-batch :math:`B` of noisy-labelled examples is

.. math::

    u &= \mathrm{direction}_{\mathrm{method}}(\theta; B)
        \quad\text{(from } \texttt{linsam.rules}\text{, see its docs)} \\
    m &\leftarrow \beta m + u + \lambda_{\mathrm{wd}} \theta, \qquad
    \theta \leftarrow \theta - \eta_k m

(``optax.chain(add_decayed_weights(wd), trace(momentum), scale(-lr_k))``, which is optax's
``sgd`` with PyTorch-style coupled weight decay and heavy-ball momentum :math:`\beta`). The
learning rate :math:`\eta_k` is an optax schedule (cosine decay to 0 over all steps, a step
schedule x0.1 at 50% and 75% of the steps, or constant) evaluated on the host and fed to the
compiled step, so one compiled program serves every schedule, learning rate, rho and weight
decay.

Method names (``--method``) and the linsam rule each one calls:

==========  ==============  ====================================================================
name        rule            meaning
==========  ==============  ====================================================================
sgd         ``gd``          plain mini-batch gradient
nsam        ``nsam``        SAM, one perturbation for the batch
one_sam     ``one_sam``     1-SAM, per-example perturbation
lsam        ``lsam``        logit scale at the perturbed point, Jacobian at :math:`\theta`
jsam        ``jsam``        logit scale at :math:`\theta`, Jacobian at the perturbed point
jreg        ``jreg``        GD + :math:`\rho\|J_i^\top \mathrm{sg}(r_i)\|` (Prop. 4.1 penalty)
reg         ``jreg_fixed``  GD + :math:`\frac{\lambda_{\rm last}}2\|W_{\rm head}\|^2
                            + \frac{\lambda_{\rm act}}2 \mathrm{mean}_i\|\phi_i\|^2`
==========  ==============  ====================================================================

Default coefficients of ``reg`` (Proposition 4.1). For the 2-layer linear network
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
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import linsam
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
    make_rules_model,
)

#: CLI method name -> linsam.rules method name.
RULE_OF_METHOD = {
    "sgd": "gd",
    "nsam": "nsam",
    "one_sam": "one_sam",
    "lsam": "lsam",
    "jsam": "jsam",
    "jreg": "jreg",
    "reg": "jreg_fixed",
}
METHODS = tuple(RULE_OF_METHOD)
#: Accepted spellings -> canonical method name.
METHOD_ALIASES = {
    "gd": "sgd", "sam": "nsam", "n_sam": "nsam", "n-sam": "nsam", "1sam": "one_sam", "1-sam": "one_sam",
    "one-sam": "one_sam", "l-sam": "lsam", "j-sam": "jsam", "regularizer": "reg", "jreg_fixed": "reg",
}
#: Methods that need one forward/backward per example (norm must be per-example safe).
PER_EXAMPLE_METHODS = ("one_sam", "lsam", "jsam", "jreg", "reg")
SCHEDULES = ("cosine", "step", "constant")
SCHEMA = "linsam.cifar.results/1"


def canonical_method(name: str) -> str:
    """Canonical method name for ``name`` (aliases such as ``1sam``, ``sam``, ``regularizer``)."""
    key = str(name).strip().lower()
    key = METHOD_ALIASES.get(key, key)
    if key not in RULE_OF_METHOD:
        raise ValueError(f"--method must be one of {', '.join(METHODS)} (aliases: "
                         f"{', '.join(sorted(METHOD_ALIASES))}); got {name!r}")
    return key


@dataclasses.dataclass(frozen=True)
class CifarConfig:
    """One training run. Every field is validated by :func:`validate_config`.

    ``train_subset``: use a random subset of that many training images (None: all);
    ``eval_train_size``: how many of the (subset) training images the per-epoch train
    metrics use (None: all); ``time_limit_s``: stop after the last epoch that fits in this
    wall-clock budget (counted from the start of the method, compile included);
    ``lam_last``/``lam_act`` None: Proposition 4.1 defaults (see module doc).
    """

    method: str = "sgd"
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
    "log_every": "--log-every",
}


def _err(field: str, msg: str) -> ValueError:
    return ValueError(f"{FLAG_OF_FIELD.get(field, field)} ({field}) {msg}")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_real(v) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)


def validate_config(cfg: CifarConfig) -> CifarConfig:
    """Check every field; raise ``ValueError`` naming the flag and the allowed range. Returns cfg
    with the method name canonicalised."""
    cfg = cfg.replace(method=canonical_method(cfg.method))
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
    if cfg.depth not in STAGE_SIZES:
        raise _err("depth", f"must be one of {', '.join(map(str, STAGE_SIZES))}, got {cfg.depth!r}")
    if cfg.schedule not in SCHEDULES:
        raise _err("schedule", f"must be one of {', '.join(SCHEDULES)}, got {cfg.schedule!r}")
    if cfg.norm not in NORMS:
        raise _err("norm", f"must be one of {', '.join(NORMS)}, got {cfg.norm!r}")
    if cfg.compute_dtype not in COMPUTE_DTYPES:
        raise _err("compute_dtype", f"must be one of {', '.join(COMPUTE_DTYPES)}, got {cfg.compute_dtype!r}")
    if cfg.norm not in PER_EXAMPLE_NORMS and cfg.method in PER_EXAMPLE_METHODS:
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


def make_optimizer(weight_decay, momentum, lr) -> optax.GradientTransformation:
    r"""``chain(add_decayed_weights(wd), trace(momentum), scale(-lr))``: optax's ``sgd`` with
    PyTorch-style coupled weight decay, the learning rate of the current step given as a value
    (the schedule is evaluated on the host, so one compiled program serves every schedule)."""
    return optax.chain(optax.add_decayed_weights(weight_decay), optax.trace(decay=momentum), optax.scale(-lr))


class TrainState(NamedTuple):
    """params: Flax 'params' (float32); batch_stats: BatchNorm running stats ({} otherwise);
    opt_state: optax state of :func:`make_optimizer` (float32 momentum buffer)."""

    params: Any
    batch_stats: Any
    opt_state: Any


def _cast_like(tree, like):
    return jax.tree_util.tree_map(lambda a, b: a.astype(b.dtype), tree, like)


class ProgramSpec(NamedTuple):
    """What a compiled training/eval program depends on; everything else (data, learning rate,
    rho, weight decay, momentum, regulariser coefficients) is an argument, so tests and resumed
    runs with the same spec reuse one compiled program."""

    rule: str
    width: int
    depth: int
    norm: str
    compute_dtype: str
    chunk: int | None
    augment: bool

    def net(self) -> ResNet18:
        return ResNet18(num_classes=cdata.NUM_CLASSES, width=self.width, norm=self.norm,
                        compute_dtype=self.compute_dtype, stage_sizes=STAGE_SIZES[self.depth])


def program_spec(cfg: CifarConfig) -> ProgramSpec:
    """The :class:`ProgramSpec` of a config (chunking only matters for per-example rules)."""
    chunk = cfg.chunk_size if (cfg.chunk_size is not None and cfg.chunk_size < cfg.batch_size) else None
    if cfg.method not in PER_EXAMPLE_METHODS or cfg.method == "reg":
        chunk = None
    return ProgramSpec(RULE_OF_METHOD[cfg.method], cfg.width, cfg.depth, cfg.norm, cfg.compute_dtype, chunk,
                       cfg.augment)


def _net_spec(spec: ProgramSpec) -> ProgramSpec:
    """The part of a spec that evaluation depends on (one eval program for every method)."""
    return spec._replace(rule="", chunk=None, augment=False)


@functools.lru_cache(maxsize=None)
def rules_model(spec: ProgramSpec) -> rules.Model:
    """The (cached, so jit caches hit) :class:`linsam.rules.Model` of a spec's network."""
    return make_rules_model(spec.net())


@functools.lru_cache(maxsize=None)
def _train_block_program(spec: ProgramSpec):
    """jit(block): ``lax.scan`` of training steps over a plan of (indices, crop offsets, flips, lr)."""
    net = spec.net()
    model = rules_model(_net_spec(spec))

    def block(state: TrainState, plan, data, hyper):
        x_train, y_noisy, mean, std = data
        rho, lam_last, lam_act, wd, momentum = hyper

        def step(state: TrainState, inp):
            idx, offsets, flips, lr = inp
            if spec.augment:
                X = cdata.preprocess(x_train[idx], mean, std, offsets, flips)
            else:
                X = cdata.preprocess(x_train[idx], mean, std)
            t = y_noisy[idx]
            params, bstats, opt_state = state
            d = rules.direction(spec.rule, model, params, X, t, rho=rho, lam_last=lam_last, lam_act=lam_act,
                                chunk_size=spec.chunk)
            if spec.norm == "batch":  # running statistics from the clean (unperturbed) batch only
                _, upd = net.apply({"params": params, "batch_stats": bstats}, X, train=True, mutable=["batch_stats"])
                bstats = _cast_like(upd["batch_stats"], bstats)
            tx = make_optimizer(wd, momentum, lr)
            updates, new_opt = tx.update(_cast_like(d, params), opt_state, params)
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
        logits, phi = net.apply(variables, X, train=False, method=ResNet18.logits_and_features)
        return logits, jnp.sqrt(jnp.sum(jnp.square(phi), axis=-1))

    return jax.jit(ev)


@functools.lru_cache(maxsize=None)
def _prop41_program(spec: ProgramSpec):
    model = rules_model(spec)

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
        jitted = {"train": _train_block_program, "eval": _eval_program, "prop41": _prop41_program}[program](spec)
        _EXECUTABLES[key] = jitted.lower(*args).compile(dict(COMPILER_OPTIONS) or None)
    return _EXECUTABLES[key]


def _signature(*args) -> tuple:
    leaves, treedef = jax.tree_util.tree_flatten(args)
    return (str(treedef),) + tuple((np.shape(a), str(np.asarray(a).dtype) if not hasattr(a, "dtype") else str(a.dtype))
                                   for a in leaves)


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
        self.rule = self.spec.rule
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

    # -- state
    def init_state(self) -> TrainState:
        variables = init_variables(self.net, self.cfg.seed)
        params = variables["params"]
        bstats = variables.get("batch_stats", {})
        opt_state = make_optimizer(0.0, 0.0, 0.0).init(params)
        return TrainState(params, bstats, opt_state)

    def calibrate(self, state: TrainState) -> None:
        """Fill in the Prop. 4.1 defaults of ``reg`` (only where the config leaves them None)."""
        if self.cfg.method != "reg" or (self.lam_last is not None and self.lam_act is not None):
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
        """(rho, lam_last, lam_act, weight_decay, momentum) as float32 scalars."""
        c = self.cfg
        return tuple(jnp.float32(v) for v in (c.rho, self.lam_last or 0.0, self.lam_act or 0.0, c.weight_decay,
                                                c.momentum))

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
        """Block lengths covering one epoch: ``log_every``-step scans plus a remainder."""
        b = min(self.cfg.log_every, self.steps)
        out = [b] * (self.steps // b)
        if self.steps % b:
            out.append(self.steps % b)
        return out

    def _executable(self, state, plan):
        return _compiled("train", self.spec, state, plan, self.device_data, self.hyper())

    def compile(self, state: TrainState) -> float:
        """Ahead-of-time compile the train blocks and the evaluation; returns seconds (0 when
        an identical program was compiled before in this process)."""
        t0 = time.perf_counter()
        plan = self.epoch_plan(0)
        for length in sorted(set(self.blocks())):
            self._executable(state, tuple(jnp.asarray(a[:length]) for a in plan))
        self._logits(state, self.data.x_test[: self.cfg.eval_batch_size])
        return time.perf_counter() - t0

    def train_epoch(self, state: TrainState, epoch: int, progress: Callable | None = None) -> TrainState:
        plan = self.epoch_plan(epoch)
        start = 0
        hyper = self.hyper()
        for length in self.blocks():
            block = tuple(jnp.asarray(a[start : start + length]) for a in plan)
            state = self._executable(state, block)(state, block, self.device_data, hyper)
            start += length
            if progress is not None:
                jax.block_until_ready(state.params)
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
    """Write JSON through a temporary file and ``os.replace`` (never a half-written file)."""
    _atomic_write_bytes(Path(path), (json.dumps(obj, indent=1, allow_nan=True) + "\n").encode())


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


def run_method(cfg: CifarConfig, data: PreparedData, out_dir: str | os.PathLike, *, fresh: bool = False,
               stop_after_epochs: int | None = None, verbose: bool = True, extra_info: dict | None = None,
               on_epoch: Callable | None = None) -> dict:
    """Train one method, checkpointing each epoch in ``out_dir``; returns its results dict.

    Resumes from ``out_dir/checkpoint.npz`` when its config hash matches (``fresh=True``
    starts over). ``stop_after_epochs`` ends this call after that many new epochs (a
    simulated interruption; the checkpoint lets a later call continue). ``out_dir/results.json``
    is rewritten atomically after every epoch, after which ``on_epoch()`` is called.
    """
    cfg = validate_config(cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
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
        say(f"[{cfg.method}] resuming after epoch {len(epochs_done)} from {ckpt}", flush=True)
    elif fresh and ckpt.exists():
        ckpt.unlink()
    if not epochs_done:
        trainer.calibrate(state)
    status = "completed" if len(epochs_done) >= cfg.epochs else "running"

    def results(status_now, compile_s=None):
        return {
            "schema": SCHEMA,
            "method": cfg.method,
            "rule": trainer.rule,
            "status": status_now,
            "config": config_dict(cfg),
            "config_hash": chash,
            "versions": _versions(),
            "linsam_version": linsam.__version__,
            "device": device_description(),
            "data": data.info,
            "model": {"arch": f"resnet{cfg.depth}-cifar", "width": cfg.width, "norm": cfg.norm,
                      "compute_dtype": cfg.compute_dtype, "n_params": count_params(state.params)},
            "steps_per_epoch": trainer.steps,
            "lam_last": trainer.lam_last, "lam_act": trainer.lam_act,
            "compile_s": compile_s if compile_s is not None else meta_extra.get("compile_s"),
            "epochs": epochs_done,
            "summary": summarize(epochs_done),
            **(extra_info or {}),
        }

    compile_s = None
    if status != "completed":
        say(f"[{cfg.method}] {trainer.n_train} train images ({data.info['n_noisy']} noisy, realised noise rate "
            f"{data.realised_rate:.4f}), {trainer.steps} steps/epoch, {cfg.epochs} epochs; compiling ...", flush=True)
        compile_s = trainer.compile(state)
        meta_extra = {"compile_s": compile_s}
        say(f"[{cfg.method}] compiled in {compile_s:.1f}s", flush=True)
    new_epochs = 0
    last_epoch_cost = 0.0
    while len(epochs_done) < cfg.epochs:
        if stop_after_epochs is not None and new_epochs >= stop_after_epochs:
            status = "interrupted"
            break
        elapsed = time.perf_counter() - t_start
        if cfg.time_limit_s is not None and new_epochs > 0 and elapsed + last_epoch_cost > cfg.time_limit_s:
            status = "time_limit"
            say(f"[{cfg.method}] stopping: the next epoch would pass --time-limit {cfg.time_limit_s:.0f}s", flush=True)
            break
        e = len(epochs_done)
        t0 = time.perf_counter()
        prog = None
        if verbose and len(trainer.blocks()) > 1:
            def prog(s, n, e=e, t0=t0):
                say(_fmt_progress(cfg.method, e + 1, cfg.epochs, s, n, t0), flush=True)
        state = trainer.train_epoch(state, e, prog)
        t1 = time.perf_counter()
        m = trainer.evaluate(state)
        t2 = time.perf_counter()
        m = {"epoch": e + 1, "step": (e + 1) * trainer.steps,
             "lr": float(trainer.learning_rates([(e + 1) * trainer.steps - 1])[0]), **m,
             "epoch_time_s": t1 - t0, "eval_time_s": t2 - t1}
        epochs_done.append(m)
        new_epochs += 1
        last_epoch_cost = t2 - t0
        save_checkpoint(ckpt, state, {"config_hash": chash, "epochs": epochs_done, "lam_last": trainer.lam_last,
                                      "lam_act": trainer.lam_act, "compile": meta_extra})
        status = "completed" if len(epochs_done) >= cfg.epochs else "running"
        write_json_atomic(out / "results.json", results(status, compile_s))
        if on_epoch is not None:
            on_epoch()
        say(f"[{cfg.method}] epoch {e + 1}/{cfg.epochs}: test acc {m['test_acc']:.4f}  train acc clean "
            f"{m['train_acc_clean']:.4f} noisy(fit) {m['train_acc_noisy']:.4f}  train loss {m['train_loss']:.4f}  "
            f"|W_last| {m['last_layer_norm']:.3f} |phi| {m['feature_norm']:.3f}  {m['epoch_time_s']:.1f}s",
            flush=True)
    res = results(status, compile_s)
    write_json_atomic(out / "results.json", res)
    return res


def aggregate(out_dir: str | os.PathLike, methods: list[str] | None = None) -> dict:
    """Combine ``out_dir/<method>/results.json`` into ``out_dir/results.json`` (atomic).

    Schema (docs/cifar.md): ``methods[<name>]`` has ``peak_test_acc``, ``peak_epoch``,
    ``final_test_acc``, ``completed_epochs``, ``mean_epoch_time_s``, ``status`` and the full
    per-epoch list ``epochs``; ``gaps`` has ``<m>_minus_sgd`` peak differences;
    ``comparable`` is True when every method ran with the same data, noise and training
    settings (methods can be run in separate calls into one ``out_dir``).
    """
    out = Path(out_dir)
    runs = {}
    for sub in sorted(out.iterdir()) if out.exists() else []:
        f = sub / "results.json"
        if sub.is_dir() and f.exists() and (methods is None or sub.name in methods):
            runs[sub.name] = json.loads(f.read_text())
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
        agg["methods"][m] = {**r["summary"], "status": r["status"], "config": r["config"], "data": r["data"],
                             "model": r["model"], "lam_last": r.get("lam_last"), "lam_act": r.get("lam_act"),
                             "compile_s": r.get("compile_s"), "preset": r.get("preset"), "device": r.get("device"),
                             "epochs": r["epochs"]}
    shared = [{k: v for k, v in r["config"].items() if k not in ("method", "lam_last", "lam_act", "time_limit_s")}
              | {"data": r["data"].get("fingerprint")} for r in agg["methods"].values()]
    agg["comparable"] = all(s == shared[0] for s in shared)  # same data, noise and training settings
    base = agg["methods"].get("sgd", {}).get("peak_test_acc")
    for m, r in agg["methods"].items():
        if m != "sgd" and base is not None and r.get("peak_test_acc") is not None:
            agg["gaps"][f"{m}_minus_sgd"] = r["peak_test_acc"] - base
    write_json_atomic(out / "results.json", agg)
    return agg


def run(configs: list[CifarConfig], out_dir: str | os.PathLike, *, data_path=None, fresh: bool = False,
        stop_after_epochs: int | None = None, verbose: bool = True, plot: bool = True,
        dataset: cdata.CIFAR10 | None = None, extra_info: dict | None = None) -> dict:
    """Run several methods (one config each, same data and noise) into ``out_dir/<method>/``.

    Loads the data once (``dataset`` to pass arrays directly, e.g. in tests), writes the
    aggregate ``out_dir/results.json`` after each method and, with ``plot``, the figure
    ``out_dir/curves.png``. Returns the aggregate dict.
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
    if dataset is None:
        cdata.check_data_path(data_path)
        dataset = cdata.load_cifar10(data_path, verbose=verbose)
    prepared = prepare_data(dataset, configs[0])
    if verbose:
        print(f"[cifar] {prepared.info['n_train']} train / {prepared.info['n_test']} test images from "
              f"{prepared.info['source']}; noise {configs[0].noise_kind} p={configs[0].noise_rate}: realised rate "
              f"{prepared.realised_rate:.4f} ({prepared.info['n_noisy']} flipped); device {device_description()}",
              flush=True)
    agg = None
    for c in configs:
        run_method(c, prepared, out / c.method, fresh=fresh, stop_after_epochs=stop_after_epochs,
                   verbose=verbose, extra_info=extra_info, on_epoch=lambda: aggregate(out))
        agg = aggregate(out)
        if plot:
            from linsam.cifar.plot import plot_curves

            plot_curves(agg, out / "curves.png")
    if verbose and agg is not None:
        for m, r in agg["methods"].items():
            print(f"[cifar] {m}: peak test acc {r['peak_test_acc']:.4f} at epoch {r['peak_epoch']} "
                  f"({r['completed_epochs']} epochs, {r['status']})", flush=True)
    return agg
