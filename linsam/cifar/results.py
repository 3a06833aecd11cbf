r"""Results: atomic JSON writes, per-method summaries, the aggregate of several methods
(:func:`aggregate`) and of several seeds with paired intervals (:func:`aggregate_seeds`),
and the optional figures. Schemas: docs/cifar.md.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optax

import linsam
from linsam._src.atomic import write_bytes_atomic
from linsam._src.engine import shard
from linsam.cifar.config import METHODS, SCHEMA


def _atomic_write_bytes(path: Path, payload: bytes) -> None:
    write_bytes_atomic(path, payload)


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write strict JSON (a non-finite number is null, with its reason: ``linsam._src.atomic.strict_json``)
    through a temporary file and ``os.replace`` (never a half-written file). On several hosts only
    process 0 writes (:func:`linsam._src.engine.shard.is_primary`)."""
    if not shard.is_primary():
        return
    from linsam._src.atomic import strict_json

    _atomic_write_bytes(Path(path), (strict_json(obj, indent=1) + "\n").encode())



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
    """``linsam.cifar.plot.<plotter>(agg, out_dir/curves.png)``; any failure is a warning.
    Process 0 only."""
    if not shard.is_primary():
        return False
    try:
        from linsam.cifar import plot

        getattr(plot, plotter)(agg, Path(out_dir) / "curves.png")
        return True
    except Exception as err:  # noqa: BLE001 - the figure is optional by design
        print(f"[cifar] warning: figure not drawn ({type(err).__name__}: {err}); the results are unaffected",
              file=sys.stderr, flush=True)
        return False



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

