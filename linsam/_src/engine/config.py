r"""The sweep config (:class:`SimConfig`), and what the engine builds from it: the model
value and the method values (names exist only here, at the edge).

A config is static and hashable (a TOML file's content); :meth:`SimConfig.validate` refuses
a config that cannot be right, naming the field, when it is built (``SimConfig(lr=-1)``
raises), before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from linsam._src import rules
from linsam._src.data import DrawPlan, GaussianMixture, MixtureSpec, NoiseSpec
from linsam._src.models import DLN, MLP, Generic, LogReg, Softmax
from linsam._src.validate import check_method, check_nonnegative, check_positive, check_positive_int, check_rho

#: Model names of a config; ``"generic"``: the user's model value, passed to
#: :func:`linsam.simulate.simulate` as ``model=Generic(...)`` (a config holds no callables).
MODELS = ("logreg", "dln", "mlp", "softmax", "generic")


def _check_name(name) -> None:
    """``name`` becomes a directory under the output root: a plain file name only."""
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or ".." in name or "\0" in name or name.startswith("."):
        raise ValueError(
            f"name must be a plain file name (letters, digits, '_', '-', '.'; no '/', '\\' or '..', "
            f"not starting with '.'): it names the output directory; got {name!r}")


@dataclasses.dataclass(frozen=True)
class SimConfig:
    r"""Everything that defines a sweep (static and hashable; what a TOML config holds).

    Top-level fields (TOML top level), then ``data`` (TOML ``[data]``, a
    :class:`~linsam.data.MixtureSpec`), ``noise`` (``[noise]``, a
    :class:`~linsam.data.NoiseSpec`) and ``meta`` (``[meta]``: free-form key/values kept
    with the results, e.g. the regime's role and headline rho; sorted ``(key, value)`` pairs).

    Attributes:
      name, description: labels written with the results.
      model: ``"logreg"``, ``"dln"``, ``"mlp"`` (:class:`~linsam.models.MLP`, ReLU, widths
        ``hidden`` and ``hidden2``) or ``"softmax"`` (:class:`~linsam.models.Softmax`, the
        K-class linear softmax model, ``num_classes`` classes: data ``kind = "isotropic"``
        becomes the K-class mixture with orthogonal means :math:`\|\mu\| e_k`
        (:func:`linsam.data.multiclass_mixture`), noise ``"none"``, ``"symmetric"`` or
        ``"cifar10_asymmetric"``; generic scan backend, ``test_acc`` on the held-out sample),
        or ``"generic"``: a binary model of the user's (:class:`~linsam.models.Generic`, e.g.
        a Flax module's apply and init), passed to ``simulate(config, model=...)``; the config
        still describes the data, noise and steps (generic scan backend, ``test_acc`` on the
        held-out sample).
      methods: method names (:data:`linsam.rules.METHODS`).
      rhos: perturbation radii (>= 0); every method runs at every rho.
      num_seeds, seed_offset: seeds ``seed_offset, ..., seed_offset + num_seeds - 1``.
      n: training-set size (>= 2).
      steps: number of updates (>= 1), a multiple of ``record_every``.
      lr: learning rate (> 0).
      batch_size: 0 for full batch, else the mini-batch size (<= n).
      init_scale: 0 for zero init, else the scale of :func:`linsam.logreg.init` /
        :func:`linsam.dln.init` (a zero-init DLN never moves: a stationary point).
      record_every: record interval in steps (>= 1).
      record_dense: record every step for the first ``record_dense`` steps, then every
        ``record_every`` (0 = off); resolves an early peak (zero-init GD peaks at step 1)
        without paying for metrics at every step. ``steps - record_dense`` must be a
        multiple of ``record_every``.
      hidden: DLN width h; MLP: the first hidden layer's width.
      hidden2: MLP only: the second hidden layer's width (0 = one hidden layer).
      num_classes: softmax only: K (2 <= K <= data.d); the binary models keep 2.
      test_size: models without an end-to-end linear map (the MLP), and data without a
        closed-form population accuracy (``data.kind = "xor"``): ``test_acc`` is the accuracy
        on a fixed clean test sample of this size, drawn per seed from the data model with
        key ``fold_in(PRNGKey(seed), TEST_KEY)`` (:data:`linsam._src.data.TEST_KEY`).
        The linear models on Gaussian mixtures keep the exact population accuracy.
      val_size: size of the *validation* sample of every seed (0 = ``n // 4``, the default):
        drawn from the training distribution with the *same* label noise (the labels a user
        has), with key ``fold_in(PRNGKey(seed), VAL_KEY)`` (the training draw is unchanged),
        never trained on. ``val_acc`` is the accuracy on its noisy labels; stopping steps and
        knobs are selected on it (:mod:`linsam.selection`), never on ``test_acc``.
      lam_last, lam_act: ``jreg_fixed`` coefficients.
      lam_scale_by_rho: if true, ``jreg_fixed`` uses ``lam_last * rho`` and ``lam_act * rho``,
        so the rho axis sweeps its strength (selected like any other method's rho); with
        constants of the size of :math:`s_i/J_i` this is Proposition 4.1's coefficient
        :math:`\rho\,s_i/J_i` frozen at a typical value.
      knob_scale: the controls' knobs on the rho axis (TOML table ``{method = factor}``;
        sorted ``(name, factor)`` pairs here): at grid value rho, ``shifted_loss`` uses
        C = factor * rho, ``large_step`` lr_mult = factor * rho, ``weight_decay`` decay =
        factor * rho (factor 1 where not given). One rho grid then tunes every method.
      dtype: ``"float32"`` (sweeps) or ``"float64"`` (exact tests).
      seed_chunk: seeds per compiled call (0 = all at once); smaller chunks give progress
        lines and bound memory, and reuse the same compilation.
    """

    name: str = "sweep"
    description: str = ""
    model: str = "logreg"
    methods: tuple = ("gd", "one_sam")
    rhos: tuple = (0.0,)
    num_seeds: int = 20
    seed_offset: int = 0
    n: int = 500
    steps: int = 3000
    lr: float = 0.1
    batch_size: int = 0
    init_scale: float = 0.0
    record_every: int = 10
    record_dense: int = 0
    hidden: int = 32
    hidden2: int = 0
    num_classes: int = 2
    test_size: int = 10000
    val_size: int = 0
    lam_last: float = 0.0
    lam_act: float = 0.0
    lam_scale_by_rho: bool = False
    knob_scale: tuple = ()
    dtype: str = "float32"
    seed_chunk: int = 0
    data: MixtureSpec = MixtureSpec()
    noise: NoiseSpec = NoiseSpec("symmetric", 0.3)
    meta: tuple = ()

    # -- construction -------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SimConfig":
        """Build from a (TOML-shaped) mapping; unknown keys are refused by name."""
        d = dict(d)
        top = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - top
        if unknown:
            raise ValueError(f"unknown config key(s) {sorted(unknown)}; allowed: {sorted(top)}")
        data = d.pop("data", {})
        noise = d.pop("noise", {})
        meta = d.pop("meta", {})
        if isinstance(data, Mapping):
            bad = set(data) - set(MixtureSpec._fields)
            if bad:
                raise ValueError(f"unknown [data] key(s) {sorted(bad)}; allowed: {list(MixtureSpec._fields)}")
            data = dict(data)
            if "mean_coords" in data:
                data["mean_coords"] = tuple(int(c) for c in np.atleast_1d(data["mean_coords"]))
            data = MixtureSpec(**data)
        if isinstance(noise, Mapping):
            bad = set(noise) - set(NoiseSpec._fields)
            if bad:
                raise ValueError(f"unknown [noise] key(s) {sorted(bad)}; allowed: {list(NoiseSpec._fields)}")
            noise = NoiseSpec(**noise)
        if isinstance(meta, Mapping):
            meta = tuple(sorted((str(k), _freeze(v)) for k, v in meta.items()))
        for key in ("methods", "rhos"):
            if key in d:
                d[key] = tuple(d[key]) if not isinstance(d[key], str) else (d[key],)
        if "rhos" in d:
            d["rhos"] = tuple(float(r) for r in d["rhos"])
        if isinstance(d.get("knob_scale"), Mapping):
            d["knob_scale"] = tuple(sorted((str(k), float(v)) for k, v in d["knob_scale"].items()))
        return cls(data=data, noise=noise, meta=meta, **d)  # validated when built (__post_init__)

    def to_dict(self) -> dict:
        """JSON/TOML-shaped mapping (inverse of :meth:`from_dict`)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["methods"] = list(self.methods)
        out["rhos"] = list(self.rhos)
        out["data"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data._asdict().items()}
        out["noise"] = self.noise._asdict()
        out["meta"] = {k: _thaw(v) for k, v in self.meta}
        out["knob_scale"] = dict(self.knob_scale)
        return out

    def __post_init__(self) -> None:
        self.validate()  # a config that cannot be right is refused when it is built, naming the field

    def replace(self, **changes) -> "SimConfig":
        """A copy with ``changes`` (validated like any new config)."""
        return dataclasses.replace(self, **changes)

    @property
    def meta_dict(self) -> dict:
        return {k: _thaw(v) for k, v in self.meta}

    @property
    def validation_size(self) -> int:
        """The validation sample's size: ``val_size``, or ``max(1, n // 4)`` when it is 0."""
        return int(self.val_size) if self.val_size else max(1, int(self.n) // 4)

    @property
    def seeds(self) -> np.ndarray:
        return np.arange(self.seed_offset, self.seed_offset + self.num_seeds)

    # -- validation ---------------------------------------------------------------
    def validate(self) -> "SimConfig":
        """Refuse a config that cannot be right, naming the field (before any work)."""
        _check_name(self.name)
        check_method(self.model, MODELS, "model")
        if len(self.methods) == 0:
            raise ValueError("methods must name at least one method")
        for m in self.methods:
            check_method(m, rules.METHODS, "methods")
        if len(set(self.methods)) != len(self.methods):
            raise ValueError(f"methods must not repeat, got {list(self.methods)}")
        if len(self.rhos) == 0:
            raise ValueError("rhos must hold at least one value")
        for r in self.rhos:
            check_rho(r, "rhos")
        check_positive_int(self.num_seeds, "num_seeds")
        if isinstance(self.seed_offset, bool) or not isinstance(self.seed_offset, (int, np.integer)) or self.seed_offset < 0:
            raise ValueError(f"seed_offset must be an integer >= 0, got {self.seed_offset!r}")
        check_positive_int(self.n, "n", minimum=2)
        check_positive_int(self.steps, "steps")
        check_positive_int(self.record_every, "record_every")
        if isinstance(self.record_dense, bool) or not isinstance(self.record_dense, (int, np.integer)) or not (
            0 <= self.record_dense <= self.steps
        ):
            raise ValueError(f"record_dense must be an integer in [0, steps = {self.steps}], got {self.record_dense!r}")
        if (self.steps - self.record_dense) % self.record_every:
            raise ValueError(
                f"steps - record_dense ({self.steps} - {self.record_dense}) must be a multiple of "
                f"record_every ({self.record_every})"
            )
        check_positive(self.lr, "lr")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) or not (
            0 <= self.batch_size <= self.n
        ):
            raise ValueError(f"batch_size must be an integer in [0, n = {self.n}] (0 = full batch), got {self.batch_size!r}")
        check_nonnegative(self.init_scale, "init_scale")
        check_positive_int(self.hidden, "hidden")
        if isinstance(self.hidden2, bool) or not isinstance(self.hidden2, (int, np.integer)) or self.hidden2 < 0:
            raise ValueError(f"hidden2 must be an integer >= 0 (0 = one hidden layer), got {self.hidden2!r}")
        if self.hidden2 and self.model != "mlp":
            raise ValueError(f"hidden2 (a second hidden layer) applies to model 'mlp' only, got model {self.model!r}")
        check_positive_int(self.num_classes, "num_classes", minimum=2)
        if self.model != "softmax" and self.num_classes != 2:
            raise ValueError(f"num_classes applies to model 'softmax' only (the other models are binary), got "
                             f"num_classes={self.num_classes} with model {self.model!r}")
        if self.model == "softmax":
            from linsam._src.data import MULTICLASS_NOISE_KINDS

            if self.data.kind != "isotropic" or self.data.norm_frac != 0.0 or self.data.norm_ratio != 1.0:
                raise ValueError("model 'softmax' needs data.kind 'isotropic' without norm_frac/norm_ratio (the "
                                 f"K-class mixture with orthogonal means), got data.kind {self.data.kind!r}")
            if self.num_classes > self.data.d:
                raise ValueError(f"num_classes must be <= data.d = {self.data.d} (orthogonal class means), "
                                 f"got {self.num_classes}")
            if self.noise.kind not in MULTICLASS_NOISE_KINDS:
                raise ValueError(f"model 'softmax': noise.kind must be one of {', '.join(MULTICLASS_NOISE_KINDS)}, "
                                 f"got {self.noise.kind!r}")
            if self.noise.kind == "cifar10_asymmetric" and self.num_classes != 10:
                raise ValueError(f"noise.kind 'cifar10_asymmetric' needs num_classes = 10, got {self.num_classes}")
        elif self.noise.kind == "cifar10_asymmetric":
            raise ValueError("noise.kind 'cifar10_asymmetric' applies to model 'softmax' (K-class labels) only")
        check_positive_int(self.test_size, "test_size")
        if isinstance(self.val_size, bool) or not isinstance(self.val_size, (int, np.integer)) or self.val_size < 0:
            raise ValueError(f"val_size must be an integer >= 0 (0 = n // 4, the default), got {self.val_size!r}")
        check_nonnegative(self.lam_last, "lam_last")
        check_nonnegative(self.lam_act, "lam_act")
        for pair in self.knob_scale:
            if not (isinstance(pair, tuple) and len(pair) == 2):
                raise ValueError(f"knob_scale must map method names to factors, got {self.knob_scale!r}")
            name, factor = pair
            knob = rules.METHOD_CLASSES[name].knob if name in rules.METHOD_CLASSES else None
            if knob is None or knob == "rho":
                raise ValueError(f"knob_scale: {name!r} is not a control with a knob; allowed: "
                                 f"{[m for m, c in rules.METHOD_CLASSES.items() if c.knob not in (None, 'rho')]}")
            check_positive(factor, f"knob_scale.{name}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if isinstance(self.seed_chunk, bool) or not isinstance(self.seed_chunk, (int, np.integer)) or self.seed_chunk < 0:
            raise ValueError(f"seed_chunk must be an integer >= 0 (0 = all seeds at once), got {self.seed_chunk!r}")
        if not isinstance(self.data, MixtureSpec):
            raise ValueError("data must be a linsam.data.MixtureSpec")
        if not isinstance(self.noise, NoiseSpec):
            raise ValueError("noise must be a linsam.data.NoiseSpec")
        self.data.build()  # validates the data fields
        self.noise.validate(self.data.d)
        if self.noise.kind == "boundary" and self.data.kind == "signal_noise" and self.data.signal_std == 0:
            raise ValueError("boundary noise needs a class spread along mu (data.signal_std > 0)")
        return self


def _freeze(v):
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, Mapping):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    return v


def _thaw(v):
    return list(v) if isinstance(v, tuple) else v


def model_of(config: SimConfig, model=None):
    """The model value of ``config`` (:class:`linsam.models.LogReg`, :class:`~linsam.models.DLN`,
    :class:`~linsam.models.MLP` or :class:`~linsam.models.Softmax`), or, for ``config.model =
    "generic"``, the given ``model`` (a :class:`~linsam.models.Generic`), checked: a binary model
    (``num_classes`` None) with an ``init``. Refuses a ``model`` that differs from a named
    model (one source of truth) and a generic config without one, naming the argument."""
    if config.model == "generic":
        return check_generic(model)
    if config.model == "softmax":
        built = Softmax(num_classes=int(config.num_classes))
    elif config.model == "mlp":
        built = MLP(hidden=(int(config.hidden),) + ((int(config.hidden2),) if config.hidden2 else ()))
    else:
        built = LogReg() if config.model == "logreg" else DLN(hidden=int(config.hidden))
    if model is not None and model != built:
        raise ValueError(f"model: config.model is {config.model!r} (built from the config: {built}), but a different "
                         f"model value is given ({type(model).__name__}); set config.model = 'generic' to run your "
                         "own model, or drop model=")
    return built


def check_generic(model) -> Generic:
    """Refuse (ValueError naming ``model``) what the engine cannot run as ``config.model = "generic"``."""
    if model is None:
        raise ValueError("model: config.model is 'generic', so simulate needs the model value: "
                         "simulate(config, model=Generic(apply, loss_from_logits, init=...)) (a config holds no "
                         "callables; the command line cannot run a generic config)")
    if not isinstance(model, Generic):
        raise ValueError(f"model must be a linsam.models.Generic (wrap your apply/init in one; the built-in models are "
                         f"named by config.model), got {type(model).__name__}")
    if model.init is None:
        raise ValueError("model.init is None: the engine draws each seed's initial parameters with "
                         "model.init(key, d, *, scale, dtype); build Generic(..., init=...)")
    if model.num_classes is not None:
        raise ValueError(f"model.num_classes must be None (a binary model, labels -1/+1): the engine's K-class "
                         f"metrics need the softmax model's closed forms; got num_classes={model.num_classes}")
    return model


def record_steps(config: SimConfig) -> np.ndarray:
    """The record steps of ``config``: ``0, 1, ..., record_dense``, then every ``record_every``."""
    dense = np.arange(0, config.record_dense + 1)
    return np.concatenate([dense, np.arange(config.record_dense + config.record_every, config.steps + 1,
                                            config.record_every)])


def uses_test_sample(config: SimConfig, model=None) -> bool:
    """Whether ``test_acc`` is measured on a clean test sample of ``config.test_size`` points per
    seed: the model has no end-to-end linear map (the MLP, a generic model) or the data no
    closed-form population accuracy (XOR, and the K-class softmax model: no closed form for
    K > 2). Otherwise it is the exact population accuracy."""
    if config.model in ("softmax", "generic"):
        return True
    return model_of(config, model).end_to_end is None or not isinstance(config.data.build(), GaussianMixture)


def draw_plan(config: SimConfig, model=None) -> DrawPlan:
    """What a sweep of ``config`` draws per seed (:class:`linsam._src.data.DrawPlan`)."""
    return DrawPlan(config.data, config.noise, int(config.n),
                    int(config.num_classes) if config.model == "softmax" else None,
                    int(config.test_size) if uses_test_sample(config, model) else 0, config.validation_size,
                    config.init_scale, config.dtype)


def trains_with_rho(config: SimConfig, name: str) -> bool:
    """Whether method ``name``'s *training* depends on rho (``gd``, ``linear_loss`` and
    ``jreg_fixed`` unless ``lam_scale_by_rho`` do not: they train once per seed; a control's
    knob rides on rho, see ``knob_scale``)."""
    if name == "jreg_fixed":
        return bool(config.lam_scale_by_rho)
    return rules.METHOD_CLASSES[name].knob is not None


def method_value(config: SimConfig, name: str, rho):
    """The method value for ``name`` at radius ``rho`` (a number, or a traced/array leaf)."""
    if name == "jreg_fixed":
        scale = rho if config.lam_scale_by_rho else 1.0
        return rules.JRegFixed(lam_last=config.lam_last * scale, lam_act=config.lam_act * scale)
    cls = rules.METHOD_CLASSES[name]
    if cls.knob is None:
        return cls()
    if cls.knob == "rho":
        return cls(rho=rho)
    return cls(**{cls.knob: dict(config.knob_scale).get(name, 1.0) * rho})
