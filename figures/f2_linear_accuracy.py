r"""F2. Linear model: test accuracy against step, GD and 1-SAM over the rho grid, peaks marked.

Left: the documented regime (random initialisation); right: zero initialisation, where every
method peaks at the first step (the mean classifier) and no gain is expected. Test accuracy
is the exact population accuracy of :math:`\mathrm{sign}\langle w_k, x\rangle`
(:func:`linsam.data.population_accuracy`), mean over seeds with a 95% t-band. Stars: the
peak of each mean curve (the early-stopped accuracy).
"""

from __future__ import annotations

import numpy as np

from figures._style import fmt_rho, mean_band, new_figure, rho_colors, step_axis

ID = "F2"
NAME = "linear_accuracy"
TITLE = "Linear model: test accuracy of GD and 1-SAM over rho"


def _panel_data(res, label):
    acc = np.asarray(res.metrics["test_acc"])
    sam = res.index("method", "one_sam")
    return dict(label=label, steps=np.asarray(res.axes["step"]), rhos=np.asarray(res.axes["rho"], float),
                acc=acc[sam], bayes=res.bayes_acc, name=res.config.name, seeds=res.config.num_seeds)


def compute(ctx, cfg: dict) -> dict:
    panels = [_panel_data(ctx.sweep(cfg["sweep"], keep_params=True), "random initialisation (documented regime)")]
    if cfg.get("negative_sweep"):
        panels.append(_panel_data(ctx.sweep(cfg["negative_sweep"], keep_params=True),
                                  "zero initialisation (no gain expected)"))
    return dict(panels=panels)


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
            ax.plot(pk_step[j], pk_val[j], marker="*", ms=11, color=cols[j], mec="white", mew=0.7, zorder=5)
        ax.axhline(p["bayes"], color="0.4", ls="--", lw=0.9, label=f"Bayes accuracy {100 * p['bayes']:.1f}%")
        step_axis(ax, p["steps"], 5)
        ax.set_title(p["label"], fontsize=9)
        ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    axes[0, 0].set_ylabel("test accuracy (population, %)")
    axes[0, 0].legend(loc="lower right", fontsize=7)
    fig.suptitle(f"Linear model, label noise: early-stopped accuracy (stars) of GD and 1-SAM "
                 f"({panels[0]['seeds']} seeds, mean with 95% band)", fontsize=9)
    return fig


def caption(data: dict, cfg: dict) -> str:
    parts = []
    for p in data["panels"]:
        pk_step, pk_val = _peaks(p)
        gd = int(np.flatnonzero(p["rhos"] == 0)[0]) if np.any(p["rhos"] == 0) else 0
        sam = [j for j in range(len(p["rhos"])) if j != gd]
        best = max(sam, key=lambda j: pk_val[j]) if sam else gd
        parts.append(f"{p['label'].split(' (')[0]}: GD peaks at {100 * pk_val[gd]:.1f}% (step {pk_step[gd]}), best 1-SAM "
                     f"(rho = {fmt_rho(p['rhos'][best])}) at {100 * pk_val[best]:.1f}% (step {pk_step[best]})")
    return ("F2. Test accuracy (exact population accuracy) against step, GD and 1-SAM over rho, mean over seeds "
            "with 95% band, stars at the peaks. " + "; ".join(parts) + ".")


def summary(data: dict) -> dict:
    out = {}
    for p in data["panels"]:
        pk_step, pk_val = _peaks(p)
        out[p["name"]] = {f"{r:g}": dict(peak=float(v), step=int(s)) for r, v, s in zip(p["rhos"], pk_val, pk_step)}
    return out
