r"""One run's shared state: settings, the sweep cache, the derivation results, progress.

Every check and figure receives a :class:`Context`. Sweeps are cached by their final
:class:`linsam.simulate.SimConfig` (after the run's seed is applied), so one linear sweep
feeds F2, F3, F4, C3, C4 and F7's symmetric-noise entry, and one DLN sweep feeds F5, F6,
C5, C6, C7: each is computed once per run.

Seeds: the run's ``seed`` (``--seed N``) shifts every sweep's ``seed_offset`` by
``1000 * N``, so seed 0 reproduces the shipped configs exactly (``linsam simulate --config
reproduce_linear_quick`` gives the same numbers) and different run seeds use disjoint seeds.

The SymPy proofs (derivations D1..D7) and the float64 closed-form-versus-autodiff
comparison (C2) need no sweep; :meth:`Context.start_background` runs them in a second
Python process while the sweeps compile and run here (2 cores), and :meth:`derivations` /
:meth:`c2_measurement` wait for it. Without it they run in this process. The second process
never outlives this one (``paper_checks._worker``: PR_SET_PDEATHSIG, or a parent poll).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from reproduction import _config

__all__ = ["Context", "SEED_STRIDE"]

#: ``--seed N`` shifts every sweep's ``seed_offset`` by ``SEED_STRIDE * N``.
SEED_STRIDE = 1000


class Context:
    """Shared state of one ``reproduce`` / ``check`` / ``figures`` run.

    Args:
      mode: ``"tiny"`` (tests), ``"quick"`` or ``"full"``.
      seed: run seed (see module doc).
      cifar_results: path of the CIFAR-10 results JSON (claim C8), or None.
      config_files: ``{"C3": path, "F2": path, ...}`` user settings files.
      progress: callable receiving one-line progress messages (default: silent).
    """

    def __init__(self, mode: str = "quick", seed: int = 0, cifar_results: str | os.PathLike | None = None,
                 config_files: dict[str, str] | None = None, progress: Callable[[str], None] | None = None):
        if mode not in _config.MODES:
            raise ValueError(f"mode must be one of {_config.MODES}, got {mode!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        self.mode = mode
        self.seed = seed
        self.cifar_results = None if cifar_results is None else str(cifar_results)
        self.config_files = {k.upper(): str(v) for k, v in (config_files or {}).items()}
        self._progress = progress or (lambda msg: None)
        self._settings: dict[str, dict] = {}
        self._sweeps: dict[Any, Any] = {}
        self._data: dict[Any, Any] = {}
        self._derivations: list[dict] | None = None
        self._c2: dict | None = None
        self._bg: subprocess.Popen | None = None
        self._bg_started = 0.0
        self.timings: dict[str, float] = {}

    # ------------------------------------------------------------------ progress
    def log(self, message: str) -> None:
        self._progress(message)

    # ------------------------------------------------------------------ settings
    def settings(self, kind: str, ident: str) -> dict:
        """Settings of check/figure ``ident`` in this run's mode (cached)."""
        key = f"{kind}:{ident.upper()}"
        if key not in self._settings:
            self._settings[key] = _config.load_settings(kind, ident, self.mode, self.config_files.get(ident.upper()))
        return self._settings[key]

    def all_settings(self) -> dict:
        return {k: {kk: vv for kk, vv in v.items()} for k, v in self._settings.items()}

    # ------------------------------------------------------------------ sweeps
    def sweep_config(self, ref: str, **replace):
        """The :class:`~linsam.simulate.SimConfig` named ``ref`` with this run's seed applied."""
        from linsam import simulate

        cfg = simulate.load_config(ref)
        if replace:
            cfg = cfg.replace(**replace)
        return cfg.replace(seed_offset=cfg.seed_offset + SEED_STRIDE * self.seed)

    def sweep(self, ref_or_config, *, keep_params: bool = False, **replace):
        """Run (or fetch from the cache) the sweep ``ref_or_config`` (a config name/path or a
        :class:`~linsam.simulate.SimConfig`, seed applied by :meth:`sweep_config`)."""
        from linsam import simulate

        cfg = self.sweep_config(ref_or_config, **replace) if isinstance(ref_or_config, (str, os.PathLike)) \
            else ref_or_config
        hit = self._sweeps.get(cfg)
        if hit is not None and (hit.params is not None or not keep_params):
            return hit
        t0 = time.perf_counter()
        self.log(f"sweep {cfg.name}: {cfg.model}, {len(cfg.methods)} method(s) x {len(cfg.rhos)} rho x "
                 f"{cfg.num_seeds} seeds x {cfg.steps} steps ...")
        res = simulate.simulate(cfg, keep_params=keep_params, progress=False)
        dt = time.perf_counter() - t0
        self.timings[f"sweep {cfg.name}"] = self.timings.get(f"sweep {cfg.name}", 0.0) + dt
        self.log(f"sweep {cfg.name} done in {dt:.1f} s")
        self._sweeps[cfg] = res
        return res

    def sweep_data(self, res):
        """The training sets ``(X, noisy labels, noise mask)`` (leading seed axis) of sweep result ``res``."""
        if res.config not in self._data:
            from linsam import simulate

            ds, _ = simulate.training_sets(res.config)
            self._data[res.config] = (ds.X, ds.noisy, ds.mask)
        return self._data[res.config]

    def sweeps_run(self) -> list:
        """Configs of every sweep run so far (for the report)."""
        return list(self._sweeps)

    # ------------------------------------------------------------------ background work
    def derivation_names(self) -> list[str] | None:
        """The derivations this mode runs (``reproduce.toml``: ``"all"`` or a list), None = all."""
        which = self.settings("reproduce", "reproduce").get("derivations", "all")
        return None if which == "all" else list(which)

    def start_background(self) -> None:
        """Start the derivations (D1..D7) and C2's float64 comparison in a second process."""
        if self._bg is not None or (self._derivations is not None and self._c2 is not None):
            return
        c2 = self.settings("checks", "C2")
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("JAX_PLATFORMS", "cpu")
        env["LINSAM_PARENT_PID"] = str(os.getpid())  # the worker ends when this process ends
        self._bg = subprocess.Popen(
            [sys.executable, "-m", "paper_checks._worker", json.dumps({"c2": c2, "derivations": self.derivation_names()})],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        )
        self._bg_started = time.perf_counter()
        self.log("derivations D1..D7 and C2 (float64 closed form vs autodiff) started in a second process")

    def _join_background(self) -> None:
        if self._bg is None:
            return
        out, err = self._bg.communicate()
        proc, self._bg = self._bg, None
        if proc.returncode != 0:
            self.log(f"background process failed (exit {proc.returncode}); running its work here. {err.strip()[-400:]}")
            return
        try:
            data = json.loads(out.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            self.log("background process gave no result; running its work here")
            return
        self._derivations = data["derivations"]
        self._c2 = data["c2"]
        self.timings["derivations (background)"] = data["derivations_s"]
        self.timings["C2 comparison (background)"] = data["c2_s"]

    def derivations(self) -> list[dict]:
        """Results of every derivation's proofs, as dicts (name, title, holds, seconds, claims)."""
        self._join_background()
        if self._derivations is None:
            t0 = time.perf_counter()
            self.log("derivations D1..D7: running the SymPy proofs ...")
            self._derivations = run_derivations(self.derivation_names())
            self.timings["derivations"] = time.perf_counter() - t0
            self.log(f"derivations done in {self.timings['derivations']:.1f} s")
        return self._derivations

    def c2_measurement(self) -> dict:
        """C2's comparison (see :mod:`paper_checks.c2_closed_vs_autodiff`)."""
        self._join_background()
        if self._c2 is None:
            from paper_checks import c2_closed_vs_autodiff as c2

            t0 = time.perf_counter()
            self._c2 = c2.compare(self.settings("checks", "C2"))
            self.timings["C2 comparison"] = time.perf_counter() - t0
        return self._c2

    def kill_background(self) -> None:
        """Send SIGKILL to the background process, if one runs (safe from a signal handler)."""
        proc = self._bg
        if proc is not None and proc.returncode is None:
            try:
                os.kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Stop the background process (if any) and reap it."""
        if self._bg is not None:
            self._bg.kill()
            self._bg.wait()
            self._bg = None


def run_derivations(which: list[str] | None = None) -> list[dict]:
    """``derivations.check_all(which)`` as JSON-friendly dicts (``which`` None: all)."""
    import derivations

    out = []
    for res in derivations.check_all(which):
        out.append(dict(
            name=res.name, title=res.title, holds=bool(res.holds), seconds=float(res.seconds),
            claims=[dict(statement=c.statement, holds=bool(c.holds), error=c.error) for c in res.claims],
        ))
    return out


def prop41_coefficients(config, rho: float | None = None) -> tuple[float, float]:
    r"""Proposition 4.1 coefficients of the DLN's J-SAM penalty at initialisation.

    J-SAM adds :math:`\frac{\rho s_i}{J_i}(\|x_i\|^2 v,\ z_i x_i^\top)` to the SGD gradient of
    example i (:math:`s_i = \sigma(-t_i f_i)`, :math:`J_i = \sqrt{\|Wx_i\|^2 + \|x_i\|^2\|v\|^2}`):
    the gradient of :math:`\frac{\lambda_{\rm last}}2\|v\|^2 + \frac{\lambda_{\rm act}}2\|Wx_i\|^2`
    with :math:`\lambda_{\rm last} = \rho s_i\|x_i\|^2/J_i`, :math:`\lambda_{\rm act} = \rho s_i/J_i`.
    ``jreg_fixed`` freezes them at their mean over examples and seeds at step 0.

    Returns ``(lam_last, lam_act)`` for ``config`` (a DLN :class:`~linsam.simulate.SimConfig`);
    ``rho`` defaults to the config's ``[meta] headline_rho``, else its first rho.
    """
    import jax
    import numpy as np

    from linsam import simulate
    from linsam.models import DLN

    config = config.validate()
    if rho is None:
        rho = config.meta_dict.get("headline_rho", config.rhos[0])
    rho = float(rho)
    ds, p = simulate.training_sets(config)  # the training sets and inits of every seed
    lam_last, lam_act = jax.vmap(DLN(hidden=config.hidden).prop41_coefficients, in_axes=(0, 0, 0, None))(
        p, ds.X, ds.noisy, rho)
    return float(np.mean(lam_last)), float(np.mean(lam_act))
