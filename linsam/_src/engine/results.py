r"""A sweep's results: named axes (rule, rho, seed, step), an :class:`xarray.Dataset`,
saved and loaded as one self-consistent unit.

On disk a result is a directory with

- ``results.nc``: netCDF (classic format, written with xarray's ``scipy`` engine: no extra
  dependency) that ``xarray.open_dataset`` opens directly. One variable per metric on dims
  (rule, rho, seed, step), ``noise_rate`` on seed; ``long_name`` and ``units`` on every
  variable and coordinate (:data:`VARIABLE_ATTRS`; accuracies are fractions in [0, 1],
  ``units = "1"``); the config (a JSON string), version, timing, ``run_id`` and
  ``content_sha256`` in the attributes. The authoritative unit.
- ``config.json``: the same information, readable (strict JSON: a non-finite number is null,
  with the reason in ``null_reasons``); it names the run.
- ``params.npz``: the recorded parameters, only if the sweep kept them (not read back).

Both main files carry one ``run_id`` and one ``content_sha256`` (:func:`content_hash`: SHA-256
of the config and every array). :meth:`SweepResult.load` refuses, with one ``ValueError`` that
says what happened and how to recover, a directory that is missing a file, a truncated or
damaged file, files from different runs (or a save that did not finish), a config or data
edited after the run (the hash no longer matches), or arrays whose shapes disagree with the
config. Results saved before this format (``results.npz`` + ``config.json``) still load.

The first axis is named ``rule`` (the training rule: a :mod:`linsam.rules` method name), not
``method``, which collides with xarray's own ``sel(method=...)`` keyword (a silent no-op
selection). ``"method"`` is still accepted as an alias in :attr:`SweepResult.axes`,
:meth:`SweepResult.index` and :meth:`SweepResult.sel`, and in files written with that name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np

import linsam
from linsam._src.atomic import strict_json, write_atomic
from linsam._src.engine.config import SimConfig

AXES = ("rule", "rho", "seed", "step")
#: Old axis names still accepted (``method`` collided with xarray's ``sel(method=...)``).
AXIS_ALIASES = {"method": "rule"}
#: ``format`` attribute of a results.nc written by this version.
FORMAT = "linsam.sweep/2"
RESULTS_FILE, CONFIG_FILE, PARAMS_FILE, LEGACY_FILE = "results.nc", "config.json", "params.npz", "results.npz"

#: Unit of every accuracy (``test_acc``, ``train_acc*``): a fraction in [0, 1] (CF ``"1"``).
#: The command line prints percent (100 x the fraction) and says so.
ACCURACY_UNITS = "1"

#: ``long_name`` and ``units`` of every coordinate and variable a result holds (CF conventions:
#: ``"1"`` is dimensionless). A metric not listed here gets its name and ``"1"``.
VARIABLE_ATTRS = {
    "rule": ("training rule (a linsam.rules method name)", "1"),
    "rho": ("perturbation radius rho (the knob of each rule on this axis)", "1"),
    "seed": ("seed of the data draw, label noise and initialisation", "1"),
    "step": ("training step (updates done) at the record", "1"),
    "test_acc": ("test accuracy (population accuracy, or on a held-out clean sample), fraction", ACCURACY_UNITS),
    "train_acc": ("training accuracy against the (noisy) training labels, fraction", ACCURACY_UNITS),
    "train_acc_clean": ("training accuracy on the clean examples, fraction", ACCURACY_UNITS),
    "train_acc_noisy": ("training accuracy on the flipped examples against their noisy labels, fraction",
                        ACCURACY_UNITS),
    "loss_clean": ("mean training loss on the clean examples", "1"),
    "loss_noisy": ("mean training loss on the flipped examples", "1"),
    "grad_norm_clean": ("mean per-example gradient norm, clean examples", "1"),
    "grad_norm_noisy": ("mean per-example gradient norm, flipped examples", "1"),
    "grad_norm_ratio": ("clean / noisy mean per-example gradient norm", "1"),
    "sam_grad_norm_clean": ("mean per-example gradient norm at the 1-SAM point, clean examples", "1"),
    "sam_grad_norm_noisy": ("mean per-example gradient norm at the 1-SAM point, flipped examples", "1"),
    "sam_grad_norm_ratio": ("clean / noisy mean per-example gradient norm at the 1-SAM point", "1"),
    "sam_weight_clean": ("mean 1-SAM loss-derivative weight sigma(-z')/sigma(-z), clean examples", "1"),
    "sam_weight_noisy": ("mean 1-SAM loss-derivative weight sigma(-z')/sigma(-z), flipped examples", "1"),
    "sam_weight_min": ("smallest 1-SAM loss-derivative weight over the training set", "1"),
    "sam_weight_max": ("largest 1-SAM loss-derivative weight over the training set", "1"),
    "jsam_penalty": ("J-SAM penalty rho * mean per-example gradient norm", "1"),
    "w_norm": ("norm of the end-to-end weight vector", "1"),
    "v_norm": ("norm of the last-layer weights v", "1"),
    "W_norm": ("Frobenius norm of the first-layer weights W", "1"),
    "act_norm": ("mean norm of the hidden activations W x_i", "1"),
    "noise_rate": ("realised label-noise rate of the seed's training set, fraction", "1"),
}


def _atomic_write(path: Path, write) -> None:
    write_atomic(path, write)


class Axes(dict):
    """Axis name -> coordinate values; the old name ``"method"`` reads ``"rule"`` (:data:`AXIS_ALIASES`)."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        for k, v in dict(*args, **kwargs).items():
            self[AXIS_ALIASES.get(k, k)] = v

    def __getitem__(self, key):
        return super().__getitem__(AXIS_ALIASES.get(key, key))

    def __contains__(self, key) -> bool:
        return super().__contains__(AXIS_ALIASES.get(key, key))

    def get(self, key, default=None):
        return super().get(AXIS_ALIASES.get(key, key), default)


def _attrs_of(name: str) -> dict:
    long_name, units = VARIABLE_ATTRS.get(name, (name.replace("_", " "), "1"))
    return {"long_name": long_name, "units": units}


def _canonical(a) -> bytes:
    """Bytes of an array that survive a netCDF round trip: floats as float64 (one NaN), integers
    as int64, strings as UTF-8 joined by NUL; with the shape."""
    a = np.asarray(a)
    if a.dtype.kind in "fc":
        x = np.ascontiguousarray(a, dtype=np.float64)
        x = np.where(np.isnan(x), np.nan, x)
        body = x.tobytes()
    elif a.dtype.kind in "iub":
        body = np.ascontiguousarray(a, dtype=np.int64).tobytes()
    else:
        body = "\0".join(str(v) for v in a.ravel()).encode()
    return f"{a.shape}|{a.dtype.kind in 'fc'}|".encode() + body


def content_hash(config: dict, arrays: dict) -> str:
    """SHA-256 (hex) of a result's config (canonical JSON) and its arrays (name, shape, values):
    what :meth:`SweepResult.save` stamps into both files and :meth:`SweepResult.load` checks."""
    h = hashlib.sha256()
    h.update(strict_json(config, sort_keys=True).encode())
    for name in sorted(arrays):
        h.update(b"\0" + name.encode() + b"\0")
        h.update(_canonical(arrays[name]))
    return h.hexdigest()


def _diff(a, b, prefix: str = "") -> list[str]:
    """Fields where mappings ``a`` and ``b`` differ (``key: a_value != b_value``)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff(a.get(k, "<missing>"), b.get(k, "<missing>"), f"{prefix}{k}.")
        return out
    return [] if a == b else [f"{prefix[:-1]} {json.dumps(a, default=str)} vs {json.dumps(b, default=str)}"]


def _rerun_hint(name) -> str:
    return f"re-run the sweep (linsam simulate --config {name} --out DIR), or restore the files from a copy"


@dataclasses.dataclass
class SweepResult:
    """A labelled sweep: every metric has axes ``(rule, rho, seed, step)``.

    Attributes:
      config: the :class:`SimConfig` that produced it.
      axes: dict axis name -> coordinate values (``rule``: the training rules' method names,
        ``rho``: floats, ``seed``: ints, ``step``: record steps); ``axes["rule"]`` is an
        alias of ``axes["rule"]``.
      metrics: dict metric name -> float array of shape
        ``(len(rule), len(rho), len(seed), len(step))``.
      noise_rate: ``(seed,)`` realised noise rate of each seed's training set.
      bayes_acc: population accuracy of the Bayes classifier of the data model.
      version: ``linsam.__version__`` that produced it.
      elapsed_s: wall time of the sweep (compile included), seconds.
      params: parameters at record steps (leading axes rule, rho, seed, step), if kept.
      cpu_s: CPU time of this process during the sweep (all threads), seconds.
      backend: which backend trained each method (``{"gd": "linear", ...}``).

    ``ds`` is the same result as an :class:`xarray.Dataset` (one variable per metric,
    ``noise_rate`` on ``seed``; config, version and timing in ``attrs``): select with
    ``res.ds["test_acc"].sel(rule="gd", rho=0.5)``, reduce with ``.mean("seed")``.
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

    def __post_init__(self) -> None:
        self.axes = Axes(self.axes)  # "method" (the old name) becomes "rule"

    # -- labelled access -------------------------------------------------------------
    def index(self, axis: str, value) -> int:
        """Position of ``value`` on ``axis`` (rho compared with a tolerance)."""
        axis = AXIS_ALIASES.get(axis, axis)
        coords = self.axes[axis]
        if axis == "rho":
            hits = np.flatnonzero(np.isclose(np.asarray(coords, float), float(value), rtol=1e-9, atol=1e-12))
        else:
            hits = np.flatnonzero(np.asarray(coords) == value)
        if hits.size == 0:
            raise KeyError(f"{value!r} is not on axis {axis!r} (values: {list(coords)})")
        return int(hits[0])

    def sel(self, metric: str, **coords) -> np.ndarray:
        """``metric`` with the given axes fixed by value, e.g. ``sel("test_acc", rule="gd", rho=0.1)``;
        the remaining axes keep their order."""
        if metric not in self.metrics:
            raise KeyError(f"no metric {metric!r}; recorded: {sorted(self.metrics)}")
        idx = [slice(None)] * len(AXES)
        for axis, value in coords.items():
            axis = AXIS_ALIASES.get(axis, axis)
            if axis not in AXES:
                raise KeyError(f"unknown axis {axis!r}; axes: {AXES}")
            idx[AXES.index(axis)] = self.index(axis, value)
        return self.metrics[metric][tuple(idx)]

    def _info(self, run_id: str) -> dict:
        return dict(
            format=FORMAT,
            run_id=run_id,
            content_sha256=self.content_hash(),
            config=self.config.to_dict(),
            linsam_version=self.version,
            elapsed_s=self.elapsed_s,
            cpu_s=self.cpu_s,
            bayes_acc=self.bayes_acc,
            backend=self.backend,
            axes=list(AXES),
            metrics=sorted(self.metrics),
            accuracy_units="fraction in [0, 1] (units '1'); the command line prints percent",
        )

    def _arrays(self) -> dict:
        """Every array of the result by name (what :func:`content_hash` covers, with the config)."""
        out = {f"metric/{k}": np.asarray(v) for k, v in self.metrics.items()}
        out["axis/rule"] = np.asarray(list(self.axes["rule"]), dtype=str)
        for axis in ("rho", "seed", "step"):
            out[f"axis/{axis}"] = np.asarray(self.axes[axis])
        out["noise_rate"] = np.asarray(self.noise_rate)
        out["bayes_acc"] = np.asarray(float(self.bayes_acc))
        return out

    def content_hash(self) -> str:
        """:func:`content_hash` of this result's config and arrays."""
        return content_hash(self.config.to_dict(), self._arrays())

    @property
    def ds(self):
        """The result as an :class:`xarray.Dataset` with dims (rule, rho, seed, step): what
        ``results.nc`` holds (``long_name``/``units`` on every variable and coordinate; config,
        version, timing and the content hash in ``attrs``, dicts as JSON strings)."""
        import xarray as xr

        coords = dict(rule=np.asarray(list(self.axes["rule"]), dtype=str),
                      rho=np.asarray(self.axes["rho"], float),
                      seed=np.asarray(self.axes["seed"]).astype(np.int32),
                      step=np.asarray(self.axes["step"]).astype(np.int32))
        data = {k: (AXES, np.asarray(v), _attrs_of(k)) for k, v in self.metrics.items()}
        data["noise_rate"] = (("seed",), np.asarray(self.noise_rate), _attrs_of("noise_rate"))
        info = self._info("")
        info.pop("run_id")
        attrs = {k: (strict_json(v) if isinstance(v, (dict, list)) else v) for k, v in info.items()}
        ds = xr.Dataset(data, coords=coords, attrs=attrs)
        for c in AXES:
            ds[c].attrs.update(_attrs_of(c))
        return ds

    # -- one unit on disk ------------------------------------------------------------------
    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write ``results.nc`` (netCDF: arrays, config, version, timing) and ``config.json``
        (the same information, readable) into ``out_dir``, each atomically, with one fresh
        ``run_id`` and the :func:`content_hash` in both (:meth:`load` checks them); also
        ``params.npz`` if the parameters were kept. A legacy ``results.npz`` there is removed."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        info = self._info(uuid.uuid4().hex)
        ds = self.ds
        ds.attrs["run_id"] = info["run_id"]
        payload = bytes(ds.to_netcdf(engine="scipy"))
        if self.params is not None:
            import jax

            arrays = {jax.tree_util.keystr(path): np.asarray(leaf)
                      for path, leaf in jax.tree_util.tree_flatten_with_path(self.params)[0]}
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            write_atomic(out / PARAMS_FILE, lambda fh: fh.write(buf.getvalue()))
        write_atomic(out / RESULTS_FILE, lambda fh: fh.write(payload))
        write_atomic(out / CONFIG_FILE, lambda fh: fh.write((strict_json(info, indent=2) + "\n").encode()))
        (out / LEGACY_FILE).unlink(missing_ok=True)  # an older run's file would contradict this one
        return out

    @classmethod
    def load(cls, out_dir: str | os.PathLike) -> "SweepResult":
        """Read a result written by :meth:`save` (parameters are not restored), or a legacy
        ``results.npz`` + ``config.json`` pair.

        Raises:
          ValueError: one message saying what is wrong and how to recover, for a missing
            directory or file, a truncated or damaged file, files from different runs (or a
            save that did not finish), a config or data changed after the run (content hash,
            or config.json differing from the results file), or arrays whose shapes disagree
            with the config. Never a raw library exception.
        """
        out = Path(out_dir)
        if not out.is_dir():
            raise ValueError(f"{out}: no saved sweep here ({'not a directory' if out.exists() else 'no such directory'})")
        nc, legacy, cj = out / RESULTS_FILE, out / LEGACY_FILE, out / CONFIG_FILE
        if not nc.is_file() and not legacy.is_file():
            raise ValueError(f"{out}: no {RESULTS_FILE} (nor a legacy {LEGACY_FILE}): not a saved sweep, or its save "
                             f"did not finish; re-run the sweep (linsam simulate --config NAME --out {out})")
        if not cj.is_file():
            raise ValueError(f"{out}: {CONFIG_FILE} is missing (a save that did not finish, or a file removed): "
                             f"re-run the sweep (linsam simulate --config NAME --out {out})")
        try:
            info = json.loads(cj.read_bytes().decode("utf-8"))
            if not isinstance(info, dict):
                raise ValueError(f"a JSON {type(info).__name__}, not an object")
        except (OSError, UnicodeDecodeError, ValueError) as err:
            raise ValueError(f"{cj}: damaged or not the config of a saved sweep ({err}); "
                             f"{_rerun_hint(out.name)}") from None
        if nc.is_file():
            return cls._load_nc(out, nc, info)
        return cls._load_npz(out, legacy, info)

    @classmethod
    def _load_nc(cls, out: Path, nc: Path, info: dict) -> "SweepResult":
        import xarray as xr

        try:
            with xr.open_dataset(nc, engine="scipy") as ds:
                ds = ds.load()
        except Exception as err:  # noqa: BLE001 - scipy/xarray raise many kinds on a damaged file
            raise ValueError(f"{nc}: not a readable netCDF file (truncated or damaged: {type(err).__name__}: "
                             f"{err}); {_rerun_hint(out.name)}") from None
        attrs = dict(ds.attrs)
        if attrs.get("format") != FORMAT:
            raise ValueError(f"{nc}: not a linsam sweep result (format {attrs.get('format')!r}, expected {FORMAT!r})")
        cls._same_run(out, RESULTS_FILE, attrs.get("run_id"), attrs.get("content_sha256"), info)
        try:
            config_d = json.loads(attrs["config"])
            config = SimConfig.from_dict(config_d)
            backend = json.loads(attrs.get("backend", "{}"))
            metrics = {k: np.asarray(ds[k].values) for k in json.loads(attrs["metrics"])}
            ds = ds.rename({k: v for k, v in AXIS_ALIASES.items() if k in ds.dims})
            axes = dict(rule=[str(m) for m in ds["rule"].values], rho=np.asarray(ds["rho"].values, float),
                        seed=np.asarray(ds["seed"].values, np.int64), step=np.asarray(ds["step"].values, np.int64))
            noise_rate = np.asarray(ds["noise_rate"].values)
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{nc}: incomplete or invalid saved sweep ({type(err).__name__}: {err}); "
                             f"{_rerun_hint(out.name)}") from None
        res = cls(config=config, axes=axes, metrics=metrics, noise_rate=noise_rate,
                  bayes_acc=float(attrs["bayes_acc"]), version=str(attrs["linsam_version"]),
                  elapsed_s=float(attrs["elapsed_s"]), cpu_s=float(attrs.get("cpu_s", float("nan"))), backend=backend)
        res._check_shapes(out)
        res._check_content(out, config_d, attrs["content_sha256"], info)
        return res

    @classmethod
    def _load_npz(cls, out: Path, legacy: Path, info: dict) -> "SweepResult":
        try:
            with np.load(legacy, allow_pickle=False) as z:
                inner = json.loads(str(z["info"])) if "info" in z.files else {}
                metrics = {k[len("metric/"):]: z[k] for k in z.files if k.startswith("metric/")}
                axes = {a: z[f"axis/{a}"] for a in ("method", "rho", "seed", "step")}  # the old names
                axes = {"rule": [str(m) for m in axes.pop("method")], **axes}
                noise_rate = z["noise_rate"]
        except Exception as err:  # noqa: BLE001 - zipfile/numpy raise many kinds on a damaged file
            raise ValueError(f"{legacy}: not a readable results file (truncated or damaged: {type(err).__name__}: "
                             f"{err}); {_rerun_hint(out.name)}") from None
        cls._same_run(out, LEGACY_FILE, inner.get("run_id"), inner.get("content_sha256"), info)
        try:
            config = SimConfig.from_dict(inner["config"])
            res = cls(config=config, axes=axes, metrics=metrics, noise_rate=noise_rate,
                      bayes_acc=float(inner["bayes_acc"]), version=inner["linsam_version"],
                      elapsed_s=float(inner["elapsed_s"]), cpu_s=float(inner.get("cpu_s", float("nan"))),
                      backend=dict(inner.get("backend", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{legacy}: incomplete or invalid saved sweep ({type(err).__name__}: {err}); "
                             f"{_rerun_hint(out.name)}") from None
        res._check_shapes(out)
        if info.get("config") != inner["config"]:
            raise ValueError(cls._edited(out, info.get("config"), inner["config"], LEGACY_FILE))
        if inner.get("content_sha256") is not None and res.content_hash() != inner["content_sha256"]:
            raise ValueError(f"{out}: {LEGACY_FILE} was changed after the run (its content hash does not match); "
                             f"{_rerun_hint(config.name)}")
        return res

    @staticmethod
    def _same_run(out: Path, file: str, run_id, digest, info: dict) -> None:
        if run_id is None or info.get("run_id") is None or run_id != info.get("run_id") or (
                digest is not None and info.get("content_sha256") not in (None, digest)):
            raise ValueError(
                f"{out}: {file} (run {run_id}) and {CONFIG_FILE} (run {info.get('run_id')}) are not from the same "
                f"run (mixed files, or a save that did not finish): re-run the sweep into a fresh directory "
                f"(linsam simulate --config NAME --out DIR)")

    @staticmethod
    def _edited(out: Path, json_config, run_config, file: str) -> str:
        diff = _diff(json_config, run_config) if isinstance(json_config, dict) else ["config: not an object"]
        return (f"{out}: {CONFIG_FILE} was edited after the run: its config differs from the one the data were "
                f"computed with ({'; '.join(diff[:3])}{'; ...' if len(diff) > 3 else ''}; {CONFIG_FILE} first, "
                f"{file} second). The results do not belong to the edited config: undo the edit (the run's config "
                f"is in {file}), or re-run the sweep with the config you want (linsam simulate --config FILE "
                f"--out DIR)")

    def _check_shapes(self, out: Path) -> None:
        from linsam._src.engine.config import record_steps

        config = self.config
        expect = (len(config.methods), len(config.rhos), config.num_seeds, len(record_steps(config)))
        for name, arr in self.metrics.items():
            if arr.shape != expect:
                raise ValueError(f"{out}: metric {name!r} has shape {arr.shape}, but the config gives "
                                 f"(rule, rho, seed, step) = {expect}")
        if np.shape(self.noise_rate) != (config.num_seeds,):
            raise ValueError(f"{out}: noise_rate has shape {np.shape(self.noise_rate)}, the config has "
                             f"{config.num_seeds} seeds")

    def _check_content(self, out: Path, config_d: dict, stored: str, info: dict) -> None:
        if info.get("config") != config_d:
            raise ValueError(self._edited(out, info.get("config"), config_d, RESULTS_FILE))
        if content_hash(config_d, self._arrays()) != stored:
            raise ValueError(f"{out}: {RESULTS_FILE} was changed after the run: its config and data no longer match "
                             f"their content hash (content_sha256 {stored[:12]}...); {_rerun_hint(self.config.name)}")
