r"""F2. Linear model: test accuracy against step, GD and 1-SAM over the rho grid, peaks marked.

Left: the documented regime (random initialisation); right: zero initialisation, where every
method peaks at the first step (the mean classifier) and no gain is expected. Test accuracy
is the exact population accuracy of :math:`\mathrm{sign}\langle w_k, x\rangle`
(:func:`linsam.data.population_accuracy`), mean over seeds with a 95% t-band. Stars: the
peak of each mean curve (the early-stopped accuracy). Dashed: the a-priori prediction of
each curve, :func:`linsam.theory.predict_curves` ``(res.config, method, rho)`` (discrete-time
DMFT from the config alone: no sampled data, no simulated trajectory; docs/theory.md), with
the options of the ``predict`` settings table (memoised by :func:`figures.predicted`).
"""

from __future__ import annotations

import matplotlib.patheffects as pe
import numpy as np

from figures import predicted
from figures._style import fmt_rho, mean_band, new_figure, rho_colors, step_axis

ID = "F2"
NAME = "linear_accuracy"
TITLE = "Linear model: test accuracy of GD and 1-SAM over rho"

_HALO = [pe.Stroke(linewidth=2.6, foreground="white", alpha=0.8), pe.Normal()]  # dashes readable over the band


def _panel_data(res, label, options):
    acc = np.asarray(res.metrics["test_acc"])
    sam = res.index("rule", "one_sam")
    rhos = np.asarray(res.axes["rho"], float)
    pred = np.stack([np.asarray(predicted(res.config, "one_sam", float(r), options)["test_acc"], float) for r in rhos])
    from linsam import selection

    es = selection.early_stop(res)
    return dict(label=label, steps=np.asarray(res.axes["step"]), rhos=rhos, acc=acc[sam], pred=pred,
                bayes=res.bayes_acc, name=res.config.name, seeds=res.config.num_seeds,
                selected=es.selected[sam], selected_step=es.step[sam])


def compute(ctx, cfg: dict) -> dict:
    opts = cfg.get("predict", {})
    panels = [_panel_data(ctx.sweep(cfg["sweep"], keep_params=True), "random initialisation (documented regime)", opts)]
    if cfg.get("negative_sweep"):
        panels.append(_panel_data(ctx.sweep(cfg["negative_sweep"], keep_params=True),
                                  "zero initialisation (no gain expected)", opts))
    return dict(panels=panels, predict=dict(opts))


def peak_errors(p) -> np.ndarray:
    """Per rho: predicted peak minus the measured mean curve's peak (test accuracy)."""
    return p["pred"].max(axis=1) - np.nanmean(p["acc"], axis=1).max(axis=1)


def _peaks(p):
    mean = np.nanmean(p["acc"], axis=1)  # (rho, step)
    k = np.nanargmax(mean, axis=1)
    return p["steps"][k], mean[np.arange(len(k)), k]


def draw(data: dict, cfg: dict):
    panels = data["panels"]
    fig, axes = new_figure(len(panels), 1, width=4.8, height=3.8, sharey=True)
    for ax, p in zip(axes[0], panels):
        cols = rho_colors(p["rhos"])
        pk_step, pk_val = _peaks(p)
        for j, r in enumerate(p["rhos"]):
            lab = "GD (rho = 0)" if r == 0 else f"1-SAM, rho = {r:g}"
            mean_band(ax, p["steps"], p["acc"][j], color=cols[j], label=lab, clip=(0, 1))
            ax.plot(p["steps"], p["pred"][j], color=cols[j], ls=(0, (4, 2)), lw=1.3, zorder=4,
                    path_effects=_HALO)
            ax.plot(pk_step[j], pk_val[j], marker="*", ms=11, color=cols[j], mec="white", mew=0.7, zorder=5)
            if "selected" in p:
                ax.plot(max(float(np.median(p["selected_step"][j])), 0.5), float(np.mean(p["selected"][j])),
                        marker="o", ms=5, color=cols[j], mec="black", mew=0.5, zorder=6)
        ax.plot([], [], color="0.2", ls=(0, (4, 2)), lw=1.3, label="a-priori prediction (DMFT, dashed)")
        ax.axhline(p["bayes"], color="0.4", ls="--", lw=0.9, label=f"Bayes accuracy {100 * p['bayes']:.1f}%")
        step_axis(ax, p["steps"], 5)
        ax.set_title(p["label"], fontsize=9)
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    axes[0, 0].set_ylabel("test accuracy (population, %)")
    axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Linear model, label noise: validation-selected accuracy (circles) and oracle peaks (stars) of GD and 1-SAM "
                 f"({panels[0]['seeds']} seeds, mean with 95% band; dashed: predicted from the config alone)",
                 fontsize=9)
    return fig


def caption(data: dict, cfg: dict) -> str:
    parts = []
    for p in data["panels"]:
        pk_step, pk_val = _peaks(p)
        gd = int(np.flatnonzero(p["rhos"] == 0)[0]) if np.any(p["rhos"] == 0) else 0
        sam = [j for j in range(len(p["rhos"])) if j != gd]
        best = max(sam, key=lambda j: pk_val[j]) if sam else gd
        err = peak_errors(p)
        vs = ""
        if "selected" in p:
            vs = (f"validation-selected: GD {100 * np.mean(p['selected'][gd]):.1f}%, 1-SAM at rho = "
                  f"{fmt_rho(p['rhos'][best])} {100 * np.mean(p['selected'][best]):.1f}%; oracle: ")
        parts.append(f"{p['label'].split(' (')[0]}: {vs}GD peaks at {100 * pk_val[gd]:.1f}% (step {pk_step[gd]}; predicted "
                     f"{100 * p['pred'][gd].max():.1f}%), best 1-SAM (rho = {fmt_rho(p['rhos'][best])}) at "
                     f"{100 * pk_val[best]:.1f}% (step {pk_step[best]}; predicted {100 * p['pred'][best].max():.1f}%), "
                     f"largest |peak error| over rho {100 * np.max(np.abs(err)):.2f} points")
    opts = data.get("predict") or {}
    how = ", ".join(f"{k} = {v}" for k, v in sorted(opts.items())) or "default options"
    return ("F2. Test accuracy (exact population accuracy) against step, GD and 1-SAM over rho, mean over seeds "
            "with 95% band, circles at the mean validation-selected stopping point (test accuracy at each seed's "
            "highest-validation-accuracy step; validation labels carry the training noise), stars at the oracle peaks of "
            "the mean curves; dashed: the a-priori DMFT prediction from the config alone "
            f"(linsam.theory.predict_curves, {how}). " + "; ".join(parts) + ".")


def summary(data: dict) -> dict:
    out = {}
    for p in data["panels"]:
        pk_step, pk_val = _peaks(p)
        out[p["name"]] = {f"{r:g}": dict(peak=float(v), step=int(s), predicted_peak=float(q.max()))
                          for r, v, s, q in zip(p["rhos"], pk_val, pk_step, p["pred"])}
    return out
