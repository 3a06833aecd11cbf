r"""The CPU CIFAR-10 study (issue 20): every method tuned on the same budget, validation
selection, >= 5 report seeds, depth 1 and 2, the paper's table beside ours.

Protocol (docs/cifar_study.md):

* **Data, per seed s.** A seeded subset of ``n_train + n_val`` CIFAR-10 training images
  (:func:`linsam.cifar.plan.prepare_data`: ``default_rng([s, 1])``), symmetric label noise on
  all of them (key ``fold_in(PRNGKey(s), 1)``); the first ``n_train`` are trained on, the last
  ``n_val`` are the **validation set, with their noisy labels**, never trained on. Input
  statistics from the training part. Every epoch: validation accuracy (against the noisy
  labels) and, on report runs, the test accuracy on all 10,000 test images.
* **Tuning** (on the tuning seeds, disjoint from the report seeds): each method's knob on its
  grid (:data:`GRIDS`), scored by the mean over tuning seeds of the validation accuracy at each
  run's validation-selected epoch (:func:`linsam.selection.select_from_curve`); a run whose
  parameters become non-finite or whose weight norm passes ``blowup_norm`` is a failure of the
  setting. A selected value at a grid edge extends the grid (x2 up or /2 down, along the edge
  axis for the two-coefficient ``jreg_fixed``; :func:`linsam.selection.next_rho`) up to
  ``max_extend`` times; a value still at an edge is reported with the cap named.
* **Report** (on the report seeds): each row at its tuned knob; every run stops at its
  validation-selected epoch (the headline), with the oracle peak of the test curve and the
  final test accuracy beside it (:func:`linsam.selection.early_stop`). Rows: SGD at the base
  learning rate (the paper's 0.01), SGD at the tuned learning rate (this is also the
  larger-step control), every method, and L-SAM and J-SAM at 1-SAM's tuned radius.
* **Verdicts** (:func:`report`): paired gains over tuned SGD (Student-t over report seeds),
  TOST of 1-SAM and J-SAM against the best simple control (among tuned SGD, weight decay,
  label smoothing and GCE, chosen on the tuning seeds' validation) at ``margin`` fixed here
  before any run, and J-SAM's and L-SAM's fractions of 1-SAM's gain with bootstrap intervals.

Runs are the unit of resumption: each finished run is one JSON file under the work directory
(written atomically, with its config); a rerun skips them. One progress line per run gives the
time left from the measured seconds per epoch of each (method, depth).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Callable, NamedTuple

import numpy as np

#: The method families of the study, in table order, with their knob names.
KNOBS: dict[str, tuple[str, ...]] = {
    "gd": ("lr",), "weight_decay": ("wd",), "label_smoothing": ("eps",), "gce": ("q",),
    "nsam": ("rho",), "one_sam": ("rho",), "lsam": ("rho",), "jsam": ("rho",), "jreg": ("rho",),
    "jreg_fixed": ("lam_last", "lam_act"),
}
FAMILIES = tuple(KNOBS)
#: The simple (non-SAM) controls: the best of them, on the tuning seeds, is *the* control.
SIMPLE = ("gd", "weight_decay", "label_smoothing", "gce")
LABELS = {
    "gd": "SGD (tuned lr; = larger step)", "gd_base": "SGD, lr 0.01 (paper's)", "weight_decay": "SGD + weight decay",
    "label_smoothing": "label smoothing", "gce": "GCE (Zhang & Sabuncu 2018)", "nsam": "n-SAM", "one_sam": "1-SAM",
    "lsam": "L-SAM", "jsam": "J-SAM", "lsam_at_1sam": "L-SAM at 1-SAM's rho", "jsam_at_1sam": "J-SAM at 1-SAM's rho",
    "jreg": "J-reg (Prop. 4.1 penalty)", "jreg_fixed": "J-reg-fixed (2 coefficients)",
}
#: The paper's table (best test accuracy, CIFAR-10, 30% noise, ResNet-18), as reported by a
#: secondary source (../shared/THEORY.md): SGD, 1-SAM, J-SAM, L-SAM, the regulariser.
PAPER = {"gd": 52.5, "one_sam": 69.5, "jsam": 69.2, "lsam": 54.1, "jreg_fixed": 60.8}
SCHEMA = "linsam.cifar.study/1"

#: The full study's grids (4 points each; ``jreg_fixed`` 2 x 2). lr: the base 0.01 in the
#: middle; wd: the base 5e-4 replaced by the knob; rho: the shipped run's 0.02 inside.
GRIDS = {
    "gd": {"lr": (0.005, 0.01, 0.02, 0.04)},
    "weight_decay": {"wd": (2e-3, 5e-3, 1e-2, 2e-2)},
    "label_smoothing": {"eps": (0.1, 0.2, 0.4, 0.6)},
    "gce": {"q": (0.1, 0.3, 0.5, 0.7)},
    "nsam": {"rho": (0.05, 0.1, 0.2, 0.4)},
    "one_sam": {"rho": (0.005, 0.01, 0.02, 0.04)},
    "lsam": {"rho": (0.005, 0.01, 0.02, 0.04)},
    "jsam": {"rho": (0.005, 0.01, 0.02, 0.04)},
    "jreg": {"rho": (0.005, 0.01, 0.02, 0.04)},
    "jreg_fixed": {"lam_last": (0.01, 0.1), "lam_act": (1e-4, 1e-3)},
}
#: Prior cost of a training epoch relative to SGD's, until measured (time-left estimates only).
COST_PRIOR = {"gd": 1.0, "weight_decay": 1.0, "label_smoothing": 1.0, "gce": 1.0, "nsam": 2.0, "one_sam": 1.6,
              "lsam": 1.6, "jsam": 1.6, "jreg": 3.0, "jreg_fixed": 1.2}


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The study. ``grids``: family -> knob -> values (:data:`GRIDS`); ``margin``: the TOST
    equivalence margin in accuracy units, fixed before any run (0.01 = 1 point)."""

    depths: tuple = (1, 2)
    width: int = 512
    n_train: int = 10000
    n_val: int = 5000
    n_test: int | None = None  # None: all 10,000
    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    noise_rate: float = 0.3
    noise_kind: str = "symmetric"
    tune_seeds: tuple = (100,)
    report_seeds: tuple = (0, 1, 2, 3, 4)
    families: tuple = FAMILIES
    grids: tuple = tuple((f, tuple((k, tuple(v)) for k, v in g.items())) for f, g in GRIDS.items())
    max_extend: int = 4   # the full run first used 2: SGD's lr and jreg_fixed stayed at an edge, so 4
    margin: float = 0.01
    blowup_norm: float = 1e3
    eval_batch_size: int = 500  # measured: 15,000 images in 0.57 s at 500, 0.88 s at 2,500 (2 loaded cores)
    fit_size: int = 2000  # training images whose fit (clean / noisy) report runs record each epoch

    def grid(self, family: str) -> dict:
        return {k: tuple(v) for k, v in dict(self.grids)[family]}

    def replace(self, **kw) -> "StudyConfig":
        return dataclasses.replace(self, **kw)


def _grids(d: dict) -> tuple:
    return tuple((f, tuple((k, tuple(v)) for k, v in g.items())) for f, g in d.items())


#: ``linsam cifar-study --preset NAME``. ``full``: the study (docs/cifar_study.md sizes it);
#: ``smoke``: 1 tuning + 2 report seeds, few epochs, 2-point grids (checks the pipeline end to
#: end on real data; its numbers are not results); ``tiny``: synthetic-size, every method, for CI.
STUDY_PRESETS = {
    "full": StudyConfig(),
    "smoke": StudyConfig(depths=(1,), epochs=4, report_seeds=(0, 1), max_extend=0,
                         grids=_grids({f: {k: v[1:3] for k, v in g.items()} if f != "jreg_fixed"
                                       else {"lam_last": (0.01,), "lam_act": (1e-4, 1e-3)} for f, g in GRIDS.items()})),
    "tiny": StudyConfig(depths=(1,), width=8, n_train=64, n_val=32, n_test=64, epochs=2, batch_size=16,
                        report_seeds=(0, 1), max_extend=1, eval_batch_size=32, fit_size=32,
                        grids=_grids({f: {k: (v[1:3] if f == "gd" else v[1:2]) for k, v in g.items()}
                                      for f, g in GRIDS.items()})),
}


def validate_study(cfg: StudyConfig) -> StudyConfig:
    """Check the fields; ValueError naming the field and what is allowed."""
    if not cfg.depths or any(not isinstance(d, int) or d < 1 for d in cfg.depths):
        raise ValueError(f"depths must be integers >= 1 (hidden layers), got {cfg.depths!r}")
    for f in ("width", "n_train", "n_val", "epochs", "batch_size", "eval_batch_size", "fit_size"):
        v = getattr(cfg, f)
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{f} must be an integer >= 1, got {v!r}")
    if cfg.batch_size > cfg.n_train:
        raise ValueError(f"batch_size ({cfg.batch_size}) must be <= n_train ({cfg.n_train})")
    if len(cfg.report_seeds) < 2 or set(cfg.report_seeds) & set(cfg.tune_seeds) or not cfg.tune_seeds:
        raise ValueError(f"report_seeds (>= 2) and tune_seeds (>= 1) must be disjoint, got {cfg.report_seeds} and "
                         f"{cfg.tune_seeds}")
    unknown = [f for f in cfg.families if f not in KNOBS]
    if unknown:
        raise ValueError(f"families: unknown {unknown}; allowed {', '.join(FAMILIES)}")
    if "gd" not in cfg.families:
        raise ValueError("families must include 'gd' (every gain is over tuned SGD)")
    for f in cfg.families:
        g = cfg.grid(f)
        if set(g) != set(KNOBS[f]) or any(not v or min(v) < 0 for v in g.values()):
            raise ValueError(f"grids[{f!r}] must give {KNOBS[f]} each a non-empty list of values >= 0, got {g}")
    if not (0 < cfg.margin < 1):
        raise ValueError(f"margin must be in (0, 1) (accuracy units), got {cfg.margin!r}")
    return cfg


# ----------------------------------------------------------------------------- settings


class Setting(NamedTuple):
    """One trained configuration: a family and its knob values (sorted by knob name order)."""

    family: str
    knob: tuple

    def text(self) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in zip(KNOBS[self.family], self.knob))

    def key(self) -> str:
        return f"{self.family}-" + "-".join(f"{v:g}" for v in self.knob)


def train_hyper(cfg: StudyConfig, s: Setting):
    """``(method value, lr, weight decay)`` of a setting: the knob replaces the base lr (``gd``)
    or weight decay (``weight_decay``), or is the rule's hyper-parameter (float32 leaves)."""
    import jax.numpy as jnp

    from linsam import rules

    f32 = jnp.float32
    k = dict(zip(KNOBS[s.family], s.knob))
    lr, wd = cfg.lr, cfg.weight_decay
    if s.family == "gd":
        return rules.GD(), k["lr"], wd
    if s.family == "weight_decay":
        return rules.GD(), lr, k["wd"]
    if s.family == "label_smoothing":
        return rules.LabelSmoothing(f32(k["eps"])), lr, wd
    if s.family == "gce":
        return rules.GCE(f32(k["q"])), lr, wd
    if s.family == "jreg_fixed":
        return rules.JRegFixed(f32(k["lam_last"]), f32(k["lam_act"])), lr, wd
    return rules.METHOD_CLASSES[s.family](f32(k["rho"])), lr, wd


# ----------------------------------------------------------------------------- data


class SeedData(NamedTuple):
    """One seed's arrays (host): training images and noisy labels, validation images and noisy
    labels, test images and labels, the clean training labels and noise mask (fit metrics),
    per-channel statistics of the training part, provenance."""

    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    noise_mask: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    info: dict


def seed_data(ds, cfg: StudyConfig, seed: int) -> SeedData:
    """Subset, noise and the train / validation split of ``seed`` (module doc)."""
    from linsam.cifar import data as cdata
    from linsam.cifar.config import CifarConfig
    from linsam.cifar.plan import prepare_data

    n = cfg.n_train + cfg.n_val
    if ds.x_train.shape[0] < n:
        raise ValueError(f"n_train + n_val ({n}) exceeds the {ds.x_train.shape[0]} training images")
    p = prepare_data(ds, CifarConfig(train_subset=n, seed=seed, noise_rate=cfg.noise_rate, noise_kind=cfg.noise_kind,
                                     batch_size=min(cfg.batch_size, n)))
    a, b = slice(0, cfg.n_train), slice(cfg.n_train, n)
    mean, std = cdata.channel_stats(p.x_train[a])
    nt = p.x_test.shape[0] if cfg.n_test is None else min(cfg.n_test, p.x_test.shape[0])
    info = {"seed": seed, "n_train": cfg.n_train, "n_val": cfg.n_val, "n_test": int(nt),
            "noisy_train": int(p.noise_mask[a].sum()), "noisy_val": int(p.noise_mask[b].sum()),
            "fingerprint": p.info["fingerprint"]}
    return SeedData(p.x_train[a], p.y_noisy[a], p.y_clean[a], p.noise_mask[a], p.x_train[b], p.y_noisy[b],
                    p.x_test[:nt], p.y_test[:nt], mean, std, info)


# ----------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=None)
def _programs(depth: int, width: int):
    """The (jitted) epoch and accuracy functions of the MLP of ``depth`` x ``width``: one
    epoch is ``lax.scan`` of the driver's step (:func:`linsam.cifar.programs.make_optimizer`
    around ``linsam.optax.from_method``); the method value, lr, weight decay and momentum are
    arguments (one compile per rule class and depth)."""
    import jax
    import jax.numpy as jnp
    import optax

    import linsam.optax
    from linsam.cifar import data as cdata
    from linsam.cifar.programs import make_optimizer
    from linsam.cifar.small import MLP, make_small_model

    net = MLP(width=width, depth=depth)
    model = make_small_model(net)

    def tx_of(method, wd, momentum, lr):
        return make_optimizer(linsam.optax.from_method(method, model), wd, momentum, lr)

    @functools.partial(jax.jit, donate_argnums=0)
    def epoch(state, idx, x, y, mean, std, method, wd, momentum, lr):
        tx = tx_of(method, wd, momentum, lr)

        def step(carry, ib):
            params, opt = carry
            X = cdata.preprocess(x[ib], mean, std)
            upd, opt = tx.update(None, opt, params, batch=(X, y[ib]))
            return (optax.apply_updates(params, upd), opt), None

        return jax.lax.scan(step, state, idx)[0]

    @jax.jit
    def hits(params, xb, yb, mean, std):
        logits = net.apply({"params": params}, cdata.preprocess(xb, mean, std))
        return jnp.argmax(logits, axis=-1) == yb

    def init(method, seed, image_shape):
        from linsam.cifar.small import init_small_variables

        params = init_small_variables(net, seed, image_shape)["params"]
        return params, tx_of(method, 0.0, 0.0, 0.0).init(params)

    return SimpleNamespace(epoch=epoch, hits=hits, init=init, model=model)


def _hits(progs, params, x, y, mean, std, bs: int) -> np.ndarray:
    import jax.numpy as jnp

    out = []
    for s in range(0, x.shape[0], bs):
        xb, yb = x[s:s + bs], y[s:s + bs]
        m = xb.shape[0]
        if m < bs:  # pad: one program per size
            xb = np.concatenate([xb, np.zeros((bs - m,) + xb.shape[1:], xb.dtype)])
            yb = np.concatenate([yb, np.zeros(bs - m, yb.dtype)])
        out.append(np.asarray(progs.hits(params, jnp.asarray(xb), jnp.asarray(yb), mean, std))[:m])
    return np.concatenate(out)


def train_run(cfg: StudyConfig, data: SeedData, depth: int, s: Setting, seed: int, *, report: bool) -> dict:
    """Train one setting on one seed; per epoch the validation accuracy (noisy labels), the
    weight norm, the training seconds, and on report runs the test accuracy and the fit of the
    first ``fit_size`` training images (clean ones to their label, flipped ones to their noisy
    label). A non-finite state or a weight norm above ``blowup_norm`` ends the run
    (``unstable``). Epoch ``e`` draws its batches from ``default_rng([seed, 2, e])``."""
    import jax
    import jax.numpy as jnp

    progs = _programs(depth, cfg.width)
    method, lr, wd = train_hyper(cfg, s)
    state = progs.init(method, seed, tuple(data.x_train.shape[1:]))
    dev = (jnp.asarray(data.x_train), jnp.asarray(data.y_train), jnp.asarray(data.mean, jnp.float32),
           jnp.asarray(data.std, jnp.float32))
    steps = cfg.n_train // cfg.batch_size
    hyper = (method, jnp.float32(wd), jnp.float32(cfg.momentum), jnp.float32(lr))
    epochs, status, t_start = [], "completed", time.perf_counter()
    for e in range(cfg.epochs):
        idx = np.random.default_rng([seed, 2, e]).permutation(cfg.n_train)[: steps * cfg.batch_size]
        t0, c0 = time.perf_counter(), time.process_time()
        state = progs.epoch(state, jnp.asarray(idx.reshape(steps, cfg.batch_size).astype(np.int32)), *dev, *hyper)
        jax.block_until_ready(state)
        t1 = time.perf_counter()
        params = state[0]
        w_norm = float(np.sqrt(sum(float(jnp.sum(jnp.square(a))) for a in jax.tree_util.tree_leaves(params))))
        rec = {"epoch": e + 1, "train_s": t1 - t0, "train_cpu_s": time.process_time() - c0, "w_norm": w_norm}
        if not math.isfinite(w_norm) or w_norm > cfg.blowup_norm:
            rec.update(val_acc=float("nan"), test_acc=float("nan") if report else None)
            epochs.append(rec)
            status = "unstable"
            break
        bs = cfg.eval_batch_size
        rec["val_acc"] = float(_hits(progs, params, data.x_val, data.y_val, dev[2], dev[3], bs).mean())
        if report:
            rec["test_acc"] = float(_hits(progs, params, data.x_test, data.y_test, dev[2], dev[3], bs).mean())
            k = min(cfg.fit_size, cfg.n_train)
            h = _hits(progs, params, data.x_train[:k], data.y_train[:k], dev[2], dev[3], bs)
            mask = data.noise_mask[:k]
            rec["fit_clean"] = float(h[~mask].mean()) if (~mask).any() else float("nan")
            rec["fit_noisy"] = float(h[mask].mean()) if mask.any() else float("nan")
        rec["eval_s"] = time.perf_counter() - t1
        rec["eval_cpu_s"] = time.process_time() - c0 - rec["train_cpu_s"]
        epochs.append(rec)
    return {"status": status, "epochs": epochs, "wall_s": time.perf_counter() - t_start}


# ----------------------------------------------------------------------------- selection


def run_stats(run: dict, cfg: StudyConfig) -> dict:
    """The three numbers of one run (:func:`linsam.selection.early_stop` on its curves):
    validation-selected test accuracy and epoch, oracle peak, final; ``unstable``."""
    from linsam import selection

    ep = run["epochs"]
    val = np.full(cfg.epochs, np.nan)
    test = np.full(cfg.epochs, np.nan)
    w = np.full(cfg.epochs, np.nan)
    for r in ep:
        val[r["epoch"] - 1] = r["val_acc"]
        w[r["epoch"] - 1] = r["w_norm"]
        if r.get("test_acc") is not None:
            test[r["epoch"] - 1] = r["test_acc"]
    res = SimpleNamespace(metrics={"val_acc": val[None], "test_acc": test[None], "w_norm": w[None]},
                          axes={"step": np.arange(1, cfg.epochs + 1)})
    es = selection.early_stop(res)
    # stability from the validation curve and the weight norm (tuning runs have no test curve)
    checked = SimpleNamespace(metrics={"val_acc": val[None], "w_norm": w[None]}, axes=res.axes)
    bad = bool(selection.unstable(checked, cfg.blowup_norm)[0]) or run["status"] == "unstable"
    return {"val": float(es.val[0]), "epoch": int(es.step[0]), "selected": float(es.selected[0]),
            "oracle": float(es.oracle[0]), "oracle_epoch": int(es.oracle_step[0]), "final": float(test[-1]),
            "unstable": bad}


def select(cfg: StudyConfig, family: str, runs: dict) -> dict:
    """Tune ``family`` from its tuning runs ``runs`` (knob tuple -> list of run dicts over the
    tuning seeds): the best stable mean validation accuracy at each run's validation-selected
    epoch; ``edges``: per knob axis, "low"/"high" where the selected value is the end of the
    values run on that axis (:func:`linsam.selection.select_from_curve` on one axis)."""
    from linsam import selection

    curve, unst = {}, {}
    for knob, rs in runs.items():
        st = [run_stats(r, cfg) for r in rs]
        curve[knob] = float(np.nanmean([s["val"] for s in st])) if st else float("nan")
        n_bad = sum(s["unstable"] for s in st)
        if n_bad:
            unst[knob] = n_bad
    # select_from_curve orders by value; index the knob tuples so it works for 2-D grids too
    keys = sorted(curve)
    best, _ = selection.select_from_curve({i: curve[k] for i, k in enumerate(keys)},
                                          {i: unst[k] for i, k in enumerate(keys) if k in unst})
    knob = keys[int(best)]
    edges = {}
    for j, name in enumerate(KNOBS[family]):
        vals = sorted({k[j] for k in keys})
        if len(vals) >= 2:
            edges[name] = "low" if knob[j] == vals[0] else "high" if knob[j] == vals[-1] else None
        else:
            edges[name] = "single"
    return {"knob": knob, "curve": {Setting(family, k).text(): curve[k] for k in keys},
            "unstable": {Setting(family, k).text(): v for k, v in unst.items()}, "edges": edges}


#: Upper bounds of bounded knobs: label smoothing's eps < 1 (1 is uniform targets, no signal: the
#: extension halves the gap to 1 instead of doubling), GCE's q <= 1 (q = 1 is the MAE limit).
KNOB_MAX = {"eps": 1.0, "q": 1.0}


def extension(family: str, tuned: dict, tried) -> tuple | None:
    """The next knob to try when the selected value sits at a grid edge: along the first edge
    axis, x2 past the high end or /2 past the low end (:func:`linsam.selection.next_rho`);
    None when interior, at 0, or already tried."""
    from linsam import selection

    knob = tuned["knob"]
    for j, name in enumerate(KNOBS[family]):
        edge = tuned["edges"].get(name)
        if edge not in ("low", "high"):
            continue
        vals = sorted({k[j] for k in tried})
        v = selection.next_rho(vals, edge)
        if v is None:
            continue
        top = KNOB_MAX.get(name)
        if top is not None and v > top:  # a bounded knob: approach the bound, never pass it
            last = vals[-1]
            if last >= top or (name == "eps" and top - last < 0.05):
                continue
            v = top if name == "q" else (last + top) / 2.0
        new = tuple(v if i == j else x for i, x in enumerate(knob))
        if new not in tried:
            return new
    return None


# ----------------------------------------------------------------------------- the study


def config_hash(cfg: StudyConfig, depth: int, s: Setting, seed: int, report: bool) -> str:
    d = {k: v for k, v in dataclasses.asdict(cfg).items()
         if k in ("width", "n_train", "n_val", "n_test", "epochs", "batch_size", "lr", "momentum", "weight_decay",
                  "noise_rate", "noise_kind", "blowup_norm", "fit_size")}
    d.update(depth=depth, setting=[s.family, list(s.knob)], seed=seed, report=report)
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


class Study:
    """Runs the study into ``work`` (one JSON per run; resumable) and reports it.

    ``dataset``: a :class:`linsam.cifar.data.CIFAR10`; ``say``: the progress printer.
    """

    def __init__(self, cfg: StudyConfig, dataset, work, *, say: Callable = print):
        self.cfg = validate_study(cfg)
        self.ds = dataset
        self.work = Path(work)
        self.say = say
        self._data: dict = {}
        self.t0 = time.monotonic()
        self.done_now = 0  # runs trained in this call
        self.sec_epoch: dict = {}  # (depth, family, report) -> list of seconds per epoch (train + eval)

    # -- files
    def path(self, depth: int, role: str, s: Setting, seed: int) -> Path:
        return self.work / f"depth{depth}" / role / f"{s.key()}-seed{seed}.json"

    def load(self, depth, role, s, seed):
        p = self.path(depth, role, s, seed)
        if not p.exists():
            return None
        try:
            r = json.loads(p.read_text())
        except (OSError, ValueError):
            return None
        return r if r.get("hash") == config_hash(self.cfg, depth, s, seed, role == "report") else None

    def data(self, seed: int) -> SeedData:
        if seed not in self._data:
            if len(self._data) >= 3:
                self._data.pop(next(iter(self._data)))
            self._data[seed] = seed_data(self.ds, self.cfg, seed)
        return self._data[seed]

    # -- cost model (time left)
    def epoch_cost(self, depth: int, family: str, report: bool) -> float:
        m = self.sec_epoch.get((depth, family, report))
        if m:
            return float(np.median(m))
        base = self.sec_epoch.get((depth, "gd", report)) or self.sec_epoch.get((depth, "gd", not report))
        if base:
            return float(np.median(base)) * COST_PRIOR[family]
        anyv = [v for vs in self.sec_epoch.values() for v in vs]
        return (float(np.median(anyv)) if anyv else 2.0) * COST_PRIOR[family]

    def planned(self) -> list:
        """The runs still expected (depth, role, family, seed count) for the time-left estimate:
        the base grid of each family on the tuning seeds, then its report rows."""
        c = self.cfg
        out = []
        for d in c.depths:
            for f in c.families:
                g = c.grid(f)
                for knob in itertools.product(*(g[k] for k in KNOBS[f])):
                    for sd in c.tune_seeds:
                        out.append((d, "tune", Setting(f, tuple(knob)), sd))
        return out

    def time_left(self, pending: list) -> float:
        return sum(self.epoch_cost(d, s.family, role == "report") * self.cfg.epochs for d, role, s, _ in pending)

    # -- one run
    def ensure(self, depth: int, role: str, s: Setting, seed: int, pending: list) -> dict:
        r = self.load(depth, role, s, seed)
        item = (depth, role, s, seed)
        if r is None:
            from linsam._src.atomic import write_text_atomic as atomic_write_text

            t0 = time.monotonic()
            out = train_run(self.cfg, self.data(seed), depth, s, seed, report=role == "report")
            r = {"schema": SCHEMA, "hash": config_hash(self.cfg, depth, s, seed, role == "report"), "depth": depth,
                 "role": role, "family": s.family, "knob": list(s.knob), "seed": seed, **out,
                 "config": dataclasses.asdict(self.cfg), "version": _version()}
            p = self.path(depth, role, s, seed)
            p.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(p, json.dumps(r, indent=1))
            self.done_now += 1
            st = run_stats(r, self.cfg)
            if item in pending:
                pending.remove(item)
            left = self.time_left(pending)
            per = [(x["train_s"] + x.get("eval_s", 0.0)) for x in r["epochs"][1:]] or \
                  [(x["train_s"] + x.get("eval_s", 0.0)) for x in r["epochs"]]
            self.sec_epoch.setdefault((depth, s.family, role == "report"), []).append(float(np.median(per)))
            test = f" test@sel {st['selected']:.4f} oracle {st['oracle']:.4f} final {st['final']:.4f}" \
                if role == "report" else ""
            self.say(f"[study] d{depth} {role} {s.family} {s.text()} seed {seed}: val {st['val']:.4f} @ epoch "
                     f"{st['epoch']}{test}{' UNSTABLE' if st['unstable'] else ''} | {time.monotonic() - t0:.1f}s "
                     f"({float(np.median(per)):.2f}s/epoch) | {self.done_now} runs, "
                     f"{(time.monotonic() - self.t0) / 60:.1f} min; left ~{left / 60:.1f} min "
                     f"(>= {len(pending)} runs)", flush=True)
        elif item in pending:
            pending.remove(item)
            for x in r["epochs"][1:2]:
                self.sec_epoch.setdefault((depth, s.family, role == "report"), []).append(
                    x["train_s"] + x.get("eval_s", 0.0))
        return r

    # -- phases
    def tune(self, depth: int, family: str, pending: list) -> dict:
        c = self.cfg
        g = c.grid(family)
        runs = {}
        for knob in itertools.product(*(g[k] for k in KNOBS[family])):
            runs[tuple(knob)] = [self.ensure(depth, "tune", Setting(family, tuple(knob)), sd, pending)
                                 for sd in c.tune_seeds]
        tuned, k = select(c, family, runs), 0
        while k < c.max_extend:
            new = extension(family, tuned, runs)
            if new is None:
                break
            runs[new] = [self.ensure(depth, "tune", Setting(family, new), sd, pending) for sd in c.tune_seeds]
            tuned, k = select(c, family, runs), k + 1
        tuned["extensions"] = k
        tuned["capped"] = any(e in ("low", "high") for e in tuned["edges"].values()) and k >= c.max_extend
        return tuned

    def rows(self, tuned: dict) -> dict:
        """Report rows -> Setting: every family at its tuned knob, SGD at the base lr, L-SAM and
        J-SAM at 1-SAM's radius (a row equal to another runs once)."""
        c = self.cfg
        rows = {f: Setting(f, tuple(tuned[f]["knob"])) for f in c.families}
        rows["gd_base"] = Setting("gd", (c.lr,))
        if "one_sam" in tuned:
            r1 = tuple(tuned["one_sam"]["knob"])
            for f in ("lsam", "jsam"):
                if f in c.families:
                    rows[f"{f}_at_1sam"] = Setting(f, r1)
        return rows

    def run(self) -> dict:
        """Tune and report every depth (depth by depth); returns the report dict."""
        c = self.cfg
        pending = self.planned()
        for item in list(pending):  # count what is on disk
            if self.load(item[0], item[1], item[2], item[3]) is not None:
                self.ensure(*item, pending)
        self.say(f"[study] {len(pending)} tuning runs to go; estimate of the time left needs measured epochs",
                 flush=True)
        out = {}
        for d in c.depths:
            tuned = {}
            for f in c.families:
                tuned[f] = self.tune(d, f, pending)
            rows = self.rows(tuned)
            todo = [(d, "report", s, sd) for s in dict.fromkeys(rows.values()) for sd in c.report_seeds]
            pending.extend(x for x in todo if x not in pending)
            per_row = {}
            for name, s in rows.items():
                per_row[name] = [self.ensure(d, "report", s, sd, pending) for sd in c.report_seeds]
            out[d] = {"tuned": tuned, "rows": {k: list(s) for k, s in rows.items()}, "runs": per_row}
        return report(c, out, wall_s=time.monotonic() - self.t0)


def _version() -> str:
    try:
        import linsam

        return str(getattr(linsam, "__version__", "unknown"))
    except Exception:  # noqa: BLE001
        return "unknown"


# ----------------------------------------------------------------------------- report


def _ci(x) -> dict:
    from linsam.stats import mean_ci

    m = mean_ci(np.asarray(x, float))
    return {"mean": m.mean, "lo": m.lo, "hi": m.hi, "n": m.n}


def report(cfg: StudyConfig, by_depth: dict, *, wall_s: float | None = None) -> dict:
    """Per depth: per row the per-seed selected / oracle / final numbers with intervals, the
    paired gain over tuned SGD, the knob and whether it is interior, the cost per epoch relative
    to SGD; the best simple control (on the tuning seeds' validation); TOST of 1-SAM and J-SAM
    against it at ``cfg.margin``; J-SAM's and L-SAM's fractions of 1-SAM's gain (bootstrap)."""
    from linsam.stats import paired_diff_ci, ratio_of_means_ci, tost

    out = {"schema": SCHEMA, "config": dataclasses.asdict(cfg), "version": _version(), "wall_s": wall_s,
           "paper": PAPER, "depths": {}}
    for d, z in by_depth.items():
        tuned, runs = z["tuned"], z["runs"]
        stats = {k: [run_stats(r, cfg) for r in rs] for k, rs in runs.items()}
        sel = {k: np.array([s["selected"] for s in st]) for k, st in stats.items()}
        cost = {k: float(np.median([np.median([e["train_s"] for e in r["epochs"][1:]] or [r["epochs"][0]["train_s"]])
                                    for r in rs])) for k, rs in runs.items()}
        rows = {}
        for k, st in stats.items():
            fam = z["rows"][k][0]
            t = tuned.get(fam, {})
            knob = z["rows"][k][1]
            edges = t.get("edges", {}) if k == fam else {}
            rows[k] = {
                "label": LABELS.get(k, k), "family": fam, "knob": Setting(fam, tuple(knob)).text(),
                "interior": (all(e is None for e in edges.values()) if k == fam else None),
                "edges": edges, "capped": t.get("capped") if k == fam else None,
                "selected": _ci(sel[k]), "selected_per_seed": sel[k].tolist(),
                "epoch_per_seed": [s["epoch"] for s in st],
                "oracle": _ci([s["oracle"] for s in st]), "final": _ci([s["final"] for s in st]),
                "fit_noisy_final": float(np.nanmean([r["epochs"][-1].get("fit_noisy", np.nan) for r in runs[k]])),
                "unstable_runs": int(sum(s["unstable"] for s in st)),
                "train_s_per_epoch": cost[k], "cost_vs_sgd": cost[k] / cost["gd"] if cost.get("gd") else None,
            }
            if k != "gd":
                g = paired_diff_ci(sel[k], sel["gd"])
                rows[k]["gain_over_tuned_sgd"] = {"mean": g.mean, "lo": g.lo, "hi": g.hi, "n": g.n}
        simple = [f for f in SIMPLE if f in tuned]
        best = max(simple, key=lambda f: tuned[f]["curve"][Setting(f, tuple(tuned[f]["knob"])).text()])
        verdicts = {}
        for m in ("one_sam", "jsam", "jsam_at_1sam"):
            if m in sel:
                e = tost(sel[m] - sel[best], cfg.margin)
                verdicts[m] = {"vs": best, **e._asdict()}
        fractions = {}
        if "one_sam" in sel:
            den = sel["one_sam"] - sel["gd"]
            for m in ("jsam", "lsam", "jsam_at_1sam", "lsam_at_1sam", "jreg", "jreg_fixed", "nsam"):
                if m in sel:
                    b = ratio_of_means_ci(sel[m] - sel["gd"], den)
                    fractions[m] = {"estimate": b.estimate, "lo": b.lo, "hi": b.hi, "n": b.n}
        out["depths"][str(d)] = {"rows": rows, "best_simple_control": best, "tost": verdicts,
                                 "fractions_of_1sam_gain": fractions,
                                 "tuning": {f: {k: v for k, v in t.items()} for f, t in tuned.items()}}
    p = PAPER
    out["paper_gains"] = {m: p[m] - p["gd"] for m in p if m != "gd"}
    out["paper_fractions"] = {m: (p[m] - p["gd"]) / (p["one_sam"] - p["gd"]) for m in ("jsam", "lsam", "jreg_fixed")}
    return out


def _pp(x) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:.1f}"


def markdown(rep: dict, *, smoke: bool = False) -> str:
    """The report as Markdown tables (docs/cifar_study.md explains the columns)."""
    lines = []
    if smoke:
        lines += ["**SMOKE RUN: pipeline check on few seeds and epochs; these numbers are not results.**", ""]
    c = rep["config"]
    lines += [f"Tuning seeds {c['tune_seeds']}, report seeds {c['report_seeds']}, {c['epochs']} epochs, "
              f"{c['n_train']} training + {c['n_val']} validation images (noisy labels), "
              f"TOST margin {100 * c['margin']:.1f} points (fixed before the run)."
              + (f" Wall time of the last call {rep['wall_s'] / 60:.1f} min (runs finished by earlier calls of a resumed "
                 "study are not counted)." if rep.get("wall_s") else ""), ""]
    for d, z in rep["depths"].items():
        lines += [f"### MLP, {d} hidden layer{'s' if d != '1' else ''} of {c['width']}", "",
                  "| method | knob (interior?) | val-selected test acc. [95% CI] | paired gain over tuned SGD "
                  "[95% CI] | oracle peak | final | noisy fit (final) | epoch cost vs SGD |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, r in z["rows"].items():
            s, g = r["selected"], r.get("gain_over_tuned_sgd")
            inter = "" if r["interior"] is None else (" (interior)" if r["interior"] else
                                                      f" (edge{', capped' if r['capped'] else ''})")
            gain = "-" if g is None else f"{100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]"
            cost = "n/a" if r["cost_vs_sgd"] is None else f"{r['cost_vs_sgd']:.2f}x"
            lines.append(f"| {r['label']} | {r['knob']}{inter} | {_pp(s['mean'])} [{_pp(s['lo'])}, {_pp(s['hi'])}] | "
                         f"{gain} | {_pp(r['oracle']['mean'])} | {_pp(r['final']['mean'])} | "
                         f"{_pp(r['fit_noisy_final'])} | {cost} |")
        lines += ["", f"Best simple control (tuning seeds' validation): **{LABELS.get(z['best_simple_control'])}**.", ""]
        for m, v in z["tost"].items():
            lines.append(f"- {LABELS[m]} minus it: {100 * v['mean']:+.2f} points, 95% CI [{100 * v['lo']:+.2f}, "
                         f"{100 * v['hi']:+.2f}], TOST p = {v['p_tost']:.3f}: **{v['verdict']}** (n = {v['n']})")
        lines += ["", "| fraction of 1-SAM's gain | ours [95% bootstrap CI] | paper |", "|---|---|---|"]
        pf = rep["paper_fractions"]
        for m, f in z["fractions_of_1sam_gain"].items():
            base = m.replace("_at_1sam", "")
            paper = f"{pf[base]:.2f}" if base in pf and m == base or (m.endswith("_at_1sam") and base in pf) else "-"
            lines.append(f"| {LABELS[m]} | {f['estimate']:.2f} [{f['lo']:.2f}, {f['hi']:.2f}] | {paper} |")
        lines.append("")
    pg = rep["paper_gains"]
    lines += ["Paper (ResNet-18, best test accuracy, secondary source): SGD 52.5, "
              + ", ".join(f"{LABELS[m]} {PAPER[m]} ({pg[m]:+.1f})" for m in ("one_sam", "jsam", "lsam", "jreg_fixed")),
              ""]
    return "\n".join(lines)


def write(rep: dict, out, *, smoke: bool = False) -> None:
    """``out/study.json`` and ``out/study.md``, atomically."""
    from linsam._src.atomic import write_text_atomic as atomic_write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    from linsam._src.atomic import strict_json

    atomic_write_text(out / "study.json", strict_json(rep, indent=1) + "\n")  # strict: non-finite -> null
    atomic_write_text(out / "study.md", markdown(rep, smoke=smoke))
