r"""A sweep's results: named axes (method, rho, seed, step), an :class:`xarray.Dataset`,
saved and loaded as one self-consistent unit.

On disk a result is a directory with ``results.npz`` (every array, *and* the config, version
and timing as JSON inside it: the authoritative unit) and ``config.json`` (the same
information, readable; it names the run). Both carry one ``run_id``; :meth:`SweepResult.load`
refuses a pair whose ids differ (files from different runs, or a save interrupted between the
two files) and arrays whose shapes disagree with the config.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import jax
import numpy as np

import linsam
from linsam._src.atomic import write_atomic
from linsam._src.engine.config import SimConfig

AXES = ("method", "rho", "seed", "step")


def _atomic_write(path: Path, write) -> None:
    write_atomic(path, write)


@dataclasses.dataclass
class SweepResult:
    """A labelled sweep: every metric has axes ``(method, rho, seed, step)``.

    Attributes:
      config: the :class:`SimConfig` that produced it.
      axes: dict axis name -> coordinate values (``method``: names, ``rho``: floats,
        ``seed``: ints, ``step``: record steps).
      metrics: dict metric name -> float array of shape
        ``(len(method), len(rho), len(seed), len(step))``.
      noise_rate: ``(seed,)`` realised noise rate of each seed's training set.
      bayes_acc: population accuracy of the Bayes classifier of the data model.
      version: ``linsam.__version__`` that produced it.
      elapsed_s: wall time of the sweep (compile included), seconds.
      params: parameters at record steps (leading axes method, rho, seed, step), if kept.
      cpu_s: CPU time of this process during the sweep (all threads), seconds.
      backend: which backend trained each method (``{"gd": "linear", ...}``).

    ``ds`` is the same result as an :class:`xarray.Dataset` (one variable per metric,
    ``noise_rate`` on ``seed``; config, version and timing in ``attrs``): select with
    ``res.ds["test_acc"].sel({"method": "gd", "rho": 0.5})`` (a dict: ``method`` is also
    ``sel``'s own keyword), reduce with ``.mean("seed")``.
    """

    config: SimConfig
    axes: dict
    metrics: dict
    noise_rate: np.ndarray
    bayes_acc: float
    version: str = linsam.__version__
    elapsed_s: float = float("nan")
    params: Any = None
    cpu_s: float = float("nan")
    backend: dict = dataclasses.field(default_factory=dict)

    # -- labelled access -------------------------------------------------------------
    def index(self, axis: str, value) -> int:
        """Position of ``value`` on ``axis`` (rho compared with a tolerance)."""
        coords = self.axes[axis]
        if axis == "rho":
            hits = np.flatnonzero(np.isclose(np.asarray(coords, float), float(value), rtol=1e-9, atol=1e-12))
        else:
            hits = np.flatnonzero(np.asarray(coords) == value)
        if hits.size == 0:
            raise KeyError(f"{value!r} is not on axis {axis!r} (values: {list(coords)})")
        return int(hits[0])

    def sel(self, metric: str, **coords) -> np.ndarray:
        """``metric`` with the given axes fixed by value, e.g. ``sel("test_acc", method="gd", rho=0.1)``;
        the remaining axes keep their order."""
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; recorded: {sorted(self.metrics)}")
        idx = [slice(None)] * len(AXES)
        for axis, value in coords.items():
            if axis not in AXES:
                raise KeyError(f"unknown axis {axis!r}; axes: {AXES}")
            idx[AXES.index(axis)] = self.index(axis, value)
        return self.metrics[metric][tuple(idx)]

    def _info(self, run_id: str) -> dict:
        return dict(
            run_id=run_id,
            config=self.config.to_dict(),
            linsam_version=self.version,
            elapsed_s=self.elapsed_s,
            cpu_s=self.cpu_s,
            bayes_acc=self.bayes_acc,
            backend=self.backend,
            axes=list(AXES),
            metrics=sorted(self.metrics),
        )

    @property
    def ds(self):
        """The result as an :class:`xarray.Dataset` with dims (method, rho, seed, step)."""
        import xarray as xr

        coords = dict(method=list(self.axes["method"]), rho=np.asarray(self.axes["rho"], float),
                      seed=np.asarray(self.axes["seed"]), step=np.asarray(self.axes["step"]))
        data = {k: (AXES, np.asarray(v)) for k, v in self.metrics.items()}
        data["noise_rate"] = (("seed",), np.asarray(self.noise_rate))
        attrs = {k: (json.dumps(v) if isinstance(v, (dict, list)) else v) for k, v in self._info("").items()}
        del attrs["run_id"]
        return xr.Dataset(data, coords=coords, attrs=attrs)

    # -- one unit on disk ------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``results.npz`` (arrays, config, version, timing) and ``config.json`` (the
        same information, readable) into ``out_dir``, each atomically, with one fresh
        ``run_id`` in both (:meth:`load` checks it)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        info = self._info(uuid.uuid4().hex)
        arrays = {f"metric/{k}": np.asarray(v) for k, v in self.metrics.items()}
        arrays["axis/method"] = np.asarray(self.axes["method"], dtype=str)
        for axis in ("rho", "seed", "step"):
            arrays[f"axis/{axis}"] = np.asarray(self.axes[axis])
        arrays["noise_rate"] = np.asarray(self.noise_rate)
        arrays["info"] = np.asarray(json.dumps(info))
        if self.params is not None:
            for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]:
                arrays["params/" + jax.tree_util.keystr(path)] = np.asarray(leaf)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        _atomic_write(out / "results.npz", lambda fh: fh.write(buf.getvalue()))
        _atomic_write(out / "config.json", lambda fh: fh.write(json.dumps(info, indent=2).encode()))
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "SweepResult":
        """Read a result written by :meth:`save` (parameters are not restored).

        Raises ValueError when ``results.npz`` and ``config.json`` carry different run ids
        (or one lacks it), or when an array's shape disagrees with the config."""
        out = Path(out_dir)
        with open(out / "config.json") as fh:
            info = json.load(fh)
        with np.load(out / "results.npz", allow_pickle=False) as z:
            inner = json.loads(str(z["info"])) if "info" in z.files else {}
            metrics = {k[len("metric/"):]: z[k] for k in z.files if k.startswith("metric/")}
            axes = {a: z[f"axis/{a}"] for a in AXES}
            axes["method"] = [str(m) for m in axes["method"]]
            noise_rate = z["noise_rate"]
        run_id, inner_id = info.get("run_id"), inner.get("run_id")
        if run_id is None or inner_id is None or run_id != inner_id:
            raise ValueError(
                f"{out}: results.npz (run {inner_id}) and config.json (run {run_id}) are not from the same "
                "run (mixed files, or a save that did not finish): re-run the sweep")
        config = SimConfig.from_dict(inner["config"])
        from linsam._src.engine.sweep import record_steps

        expect = (len(config.methods), len(config.rhos), config.num_seeds, len(record_steps(config)))
        for name, arr in metrics.items():
            if arr.shape != expect:
                raise ValueError(f"{out}: metric {name!r} has shape {arr.shape}, but the config gives "
                                 f"(method, rho, seed, step) = {expect}")
        if noise_rate.shape != (config.num_seeds,):
            raise ValueError(f"{out}: noise_rate has shape {noise_rate.shape}, the config has {config.num_seeds} seeds")
        return cls(
            config=config,
            axes=axes,
            metrics=metrics,
            noise_rate=noise_rate,
            bayes_acc=float(inner["bayes_acc"]),
            version=inner["linsam_version"],
            elapsed_s=float(inner["elapsed_s"]),
            cpu_s=float(inner.get("cpu_s", float("nan"))),
            backend=dict(inner.get("backend", {})),
        )
