r"""The CIFAR run's configuration: :class:`CifarConfig`, its checks and its hash.

Every field is checked by :func:`validate_config` before any work starts (the error names the
command-line flag and the allowed range); :func:`config_hash` fingerprints what determines a
run's numbers (safe resume). The driver's math is in :mod:`linsam.cifar.train`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math

import numpy as np

from linsam import rules
from linsam.cifar import data as cdata
from linsam.cifar.resnet import COMPUTE_DTYPES, NORMS, PER_EXAMPLE_NORMS, STAGE_SIZES
from linsam.cifar.small import SMALL_ARCHS


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

