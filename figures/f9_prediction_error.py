r"""F9. The a-priori prediction's error against n at fixed d/n (finite-size convergence).

The regime is the settings' base ``sweep`` (the documented regime of C4 and F2:
``reproduce_linear``, random init, 30% symmetric noise) with only the size changed: for each
n in ``ns``, :math:`d = \mathrm{ratio}\cdot n` (``ratio`` defaults to the base's d/n) and
:math:`\sigma, \|\mu\|` rescaled by :math:`\sqrt{d_{\rm base}/d}`, so :math:`\|x\|` and
:math:`\|\mu\|/\sigma` (the Bayes accuracy) stay those of the base. At the base's own n the
base sweep itself is used (the shared context's cache: no new run); other n run GD and 1-SAM
at rho = 0 and the figure's ``rho`` with the base's seeds, steps and recording.

Left: the largest :math:`|\text{predicted} - \text{measured mean}|` test accuracy along the
trajectory, GD and 1-SAM; right: the error at the early-stopped peak
:math:`|\max_k \text{pred} - \max_k \text{mean}|`, with the measured per-seed peak's 95% t
half-width (the seed noise of the measurement, dotted) for scale. Predictions:
:func:`linsam.theory.predict_curves` (discrete-time DMFT, from the config alone) through the
memo :func:`figures.predicted` with the ``predict`` options; measurements:
:func:`linsam.simulate.simulate` through the shared context's cache.

Settings (``[F9]`` of figures.toml): ``sweep``, ``ns``, ``rho``, optional ``ratio`` and
``predict``. Each n other than the base's costs one compilation of the engine for its shapes
(seconds), which is why the quick mode has two n and the tiny mode (the test suite) one.
"""

from __future__ import annotations

import math

import numpy as np

from figures import predicted
from figures._style import new_figure
from linsam.stats import mean_ci

ID = "F9"
NAME = "prediction_error"
TITLE = "A-priori DMFT prediction: error against n at fixed d/n"

METHODS = ("gd", "one_sam")


def configs(ctx, cfg: dict) -> list:
    """The sweep config of each n in ``cfg["ns"]`` (see the module doc), in order."""
    base = ctx.sweep_config(cfg["sweep"])
    ns = cfg.get("ns")
    if not isinstance(ns, list) or not ns or any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in ns):
        raise ValueError(f"F9 ns must be a non-empty list of integers >= 2, got {ns!r}")
    rho = float(cfg["rho"])
    if not math.isfinite(rho) or rho <= 0:
        raise ValueError(f"F9 rho must be a finite number > 0 (1-SAM's radius), got {cfg['rho']!r}")
    ratio = float(cfg.get("ratio", base.data.d / base.n))
    if not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"F9 ratio (d/n) must be a finite number > 0, got {cfg.get('ratio')!r}")
    out = []
    for n in ns:
        d = max(1, int(round(ratio * n)))
        if n == base.n and d == base.data.d:
            if rho not in [float(r) for r in base.rhos]:
                raise ValueError(f"F9 rho {rho:g} is not on the base sweep's rho grid {list(base.rhos)}")
            out.append(base)  # the base sweep itself: shared with F2, C4, C9 through the cache
            continue
        scale = math.sqrt(base.data.d / d)
        data = base.data._replace(d=d, sigma=base.data.sigma * scale, mean_norm=base.data.mean_norm * scale)
        out.append(base.replace(name=f"{base.name}_n{n}_d{d}", n=int(n), rhos=(0.0, rho), data=data))
    return out


def compute(ctx, cfg: dict) -> dict:
    rho = float(cfg["rho"])
    opts = cfg.get("predict", {})
    cfgs = configs(ctx, cfg)
    out = dict(ns=[c.n for c in cfgs], ds=[c.data.d for c in cfgs], rho=rho, seeds=cfgs[0].num_seeds,
               steps=cfgs[0].steps, kind=cfgs[0].data.kind, base=ctx.sweep_config(cfg["sweep"]).name,
               ratio=cfgs[0].data.d / cfgs[0].n, predict=dict(opts), methods={})
    preds = {(c, m): np.asarray(predicted(c, m, rho if m == "one_sam" else 0.0, opts)["test_acc"], float)
             for c in cfgs for m in METHODS}  # a priori: before any sweep of this figure runs
    for m in METHODS:
        out["methods"][m] = dict(max_err=[], max_err_step=[], peak_err=[], half=[], pred_peak=[], meas_peak=[])
    for c in cfgs:
        res = ctx.sweep(c)
        for m in METHODS:
            per_seed = np.asarray(res.sel("test_acc", rule=m, rho=rho if m == "one_sam" else 0.0), float)
            meas, pred = per_seed.mean(0), preds[(c, m)]
            if pred.shape != meas.shape:
                raise ValueError(f"F9: prediction on {pred.shape[0]} steps, sweep {c.name} on {meas.shape[0]}")
            ci = mean_ci(per_seed.max(1))
            rows = out["methods"][m]
            gap = np.abs(pred - meas)
            rows["max_err"].append(float(gap.max()))
            rows["max_err_step"].append(int(np.asarray(res.axes["step"])[int(np.argmax(gap))]))
            rows["peak_err"].append(float(abs(pred.max() - meas.max())))
            rows["half"].append(float((ci.hi - ci.lo) / 2))
            rows["pred_peak"].append(float(pred.max()))
            rows["meas_peak"].append(float(meas.max()))
    return out


def _labels(data):
    return {"gd": "GD", "one_sam": f"1-SAM, rho = {data['rho']:g}"}


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(2, 1, width=4.2, height=3.4)
    ns = np.asarray(data["ns"], float)
    colors = {"gd": "C0", "one_sam": "C3"}
    style = {"gd": dict(marker="s", ms=8, mfc="white", mew=1.5, lw=2.4, zorder=3),  # hollow and wide: visible
             "one_sam": dict(marker="o", ms=4.5, lw=1.2, zorder=4)}              # where 1-SAM's lies on it
    labels = _labels(data)
    top = 100 * max(max(max(r["max_err"]), max(r["peak_err"]), max(r["half"])) for r in data["methods"].values())
    for j, key in enumerate(("max_err", "peak_err")):
        ax = axes[0, j]
        for m, rows in data["methods"].items():
            ax.plot(ns, 100 * np.asarray(rows[key]), color=colors[m], label=labels[m], **style[m])
            if key == "peak_err":
                ax.plot(ns, 100 * np.asarray(rows["half"]), ls=":", marker=".", color=colors[m], lw=1.0,
                        label=f"{labels[m]}: measured 95% half-width")
        ax.set_xscale("log")
        ax.set_xticks(ns, [f"{int(n)}" for n in ns])
        ax.minorticks_off()
        ax.set_xlim(ns.min() / 1.4, ns.max() * 1.4)
        ax.set_ylim(0, max(3.0, 1.15 * top))  # the 2-point bar always in view, the legend above it
        ax.set_xlabel(f"n (training-set size; d = {data['ratio']:g} n)")
        ax.set_title("max over the trajectory" if key == "max_err" else "at the early-stopped peak", fontsize=9)
    axes[0, 0].set_ylabel("|predicted - measured mean| test acc. (points)")
    axes[0, 0].legend(fontsize=7, loc="upper right")
    axes[0, 1].axhline(2.0, color="0.5", ls="--", lw=0.8, label="2 points (issue 13's bar)")
    axes[0, 1].legend(fontsize=6.5, loc="upper right")
    fig.suptitle(f"A-priori DMFT prediction error, d/n = {data['ratio']:g}, {data['kind']} ({data['base']} regime), "
                 f"{data['seeds']} seeds, {data['steps']} steps", fontsize=9)
    return fig


def caption(data: dict, cfg: dict) -> str:
    labels = _labels(data)
    parts = []
    for m, rows in data["methods"].items():
        parts.append(f"{labels[m]}: peak error {', '.join(f'{100 * e:.2f}' for e in rows['peak_err'])} points "
                     f"(measured 95% half-width {', '.join(f'{100 * e:.2f}' for e in rows['half'])}; max along the "
                     f"trajectory {', '.join(f'{100 * e:.2f} at step {k}' for e, k in zip(rows['max_err'], rows['max_err_step']))})")
    how = ", ".join(f"{k} = {v}" for k, v in sorted(data["predict"].items())) or "default options"
    return (f"F9. Error of the a-priori DMFT prediction (linsam.theory.predict_curves from the config alone, {how}) "
            f"against the measured mean test accuracy ({data['seeds']} seeds, {data['steps']} steps, "
            f"{data['base']} regime), n = {', '.join(str(n) for n in data['ns'])} at d/n = {data['ratio']:g}. "
            + "; ".join(parts) + ".")


def summary(data: dict) -> dict:
    return {m: {str(n): dict(max_err=a, peak_err=b, half_width=h)
                for n, a, b, h in zip(data["ns"], r["max_err"], r["peak_err"], r["half"])}
            for m, r in data["methods"].items()}
