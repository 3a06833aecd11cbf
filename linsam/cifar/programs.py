r"""The step programs: the optax chain, the method value, and the compiled training block,
evaluation and Proposition 4.1 programs (one ahead-of-time compile per :class:`ProgramSpec`).

The training block is ``lax.scan`` of the step of :mod:`linsam.cifar.train`'s module doc.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

import linsam.optax
from linsam import rules
from linsam.cifar import data as cdata
from linsam.cifar import parallel
from linsam.cifar.config import CifarConfig, rule_compute_dtype
from linsam.cifar.resnet import STAGE_SIZES, ResNet18, head_kernel, make_model
from linsam.cifar.small import make_small_model, small_net


# ----------------------------------------------------------------------------- model + optimizer


def model_arch_name(cfg: CifarConfig) -> str:
    """The network's name in the results: ``resnet18-cifar``, ``mlp1x512``, ``cnn3x16``."""
    if cfg.arch == "resnet":
        return f"resnet{cfg.depth}-cifar"
    return f"{cfg.arch}{cfg.depth}x{cfg.width}"



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
    #: The data-parallel mesh (:mod:`linsam.cifar.parallel`), None on one device.
    mesh: Any = None

    def net(self):
        """The Flax module: :class:`ResNet18`, or a small network (:func:`linsam.cifar.small.small_net`)."""
        if self.arch != "resnet":
            return small_net(self.arch, width=self.width, depth=self.depth, compute_dtype=self.compute_dtype,
                             num_classes=cdata.NUM_CLASSES)
        return ResNet18(num_classes=cdata.NUM_CLASSES, width=self.width, norm=self.norm,
                        compute_dtype=self.compute_dtype, stage_sizes=STAGE_SIZES[self.depth])


def program_spec(cfg: CifarConfig, mesh=None) -> ProgramSpec:
    """The :class:`ProgramSpec` of a config (``mesh``: the data-parallel mesh, or None)."""
    return ProgramSpec(cfg.method, cfg.width, cfg.depth, cfg.norm, cfg.compute_dtype, cfg.augment,
                       rule_compute_dtype(cfg.method, cfg.compute_dtype), cfg.arch, mesh)


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
    model), ...)``. With a mesh (:mod:`linsam.cifar.parallel`) the batch is split over the
    devices: the methods of :data:`~linsam.cifar.parallel.SHARD_MEAN_METHODS` (per-example
    norm) run per shard and average their directions once; n-SAM and BatchNorm run on the
    global batch (XLA places the cross-device means). The state stays replicated.
    """
    net = spec.net()
    model = rule_model(rule_spec(spec))
    mesh = spec.mesh
    per_shard = mesh is not None and spec.method in parallel.SHARD_MEAN_METHODS and spec.norm != "batch"

    def on_batch(a):  # the batch axis split over the mesh (a no-op on one device)
        return a if mesh is None else jax.lax.with_sharding_constraint(a, parallel.batch_sharding(mesh))

    def block(state: TrainState, plan, data, hyper):
        x_train, y_noisy, mean, std = data
        method, wd, momentum = hyper

        def step(state: TrainState, inp):
            idx, offsets, flips, lr = inp
            if spec.augment:
                X = cdata.preprocess(x_train[idx], mean, std, offsets, flips)
            else:
                X = cdata.preprocess(x_train[idx], mean, std)
            X, t = on_batch(X), on_batch(y_noisy[idx])
            params, bstats, opt_state = state
            if spec.norm == "batch":  # running statistics from the clean (unperturbed) batch only
                _, upd = net.apply({"params": params, "batch_stats": bstats}, X, train=True, mutable=["batch_stats"])
                bstats = _cast_like(upd["batch_stats"], bstats)
            rule = linsam.optax.from_method(method, model)
            tx = make_optimizer(parallel.shard_mean(rule, mesh) if per_shard else rule, wd, momentum, lr)
            updates, new_opt = tx.update(None, opt_state, params, batch=(X, t))
            new_params = _cast_like(optax.apply_updates(params, _cast_like(updates, params)), params)
            return TrainState(new_params, bstats, _cast_like(new_opt, opt_state)), None

        return jax.lax.scan(step, state, plan)[0]

    if mesh is None:
        return jax.jit(block, donate_argnums=0)
    return jax.jit(block, donate_argnums=0, out_shardings=parallel.replicated(mesh))


@functools.lru_cache(maxsize=None)
def _eval_program(spec: ProgramSpec):
    """jit: uint8 batch -> (logits (n, 10), penultimate activation norms (n,)) in eval mode."""
    net = spec.net()

    def ev(variables, xb, mean, std):
        X = cdata.preprocess(xb, mean, std)
        logits, phi = net.apply(variables, X, train=False, method=type(net).logits_and_features)
        return logits, jnp.sqrt(jnp.sum(jnp.square(phi), axis=-1))

    if spec.mesh is None:
        return jax.jit(ev)
    return jax.jit(ev, out_shardings=parallel.batch_sharding(spec.mesh))  # each device its part of the batch


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
    return float(parallel.to_host(lam_last)), float(parallel.to_host(lam_act))


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

