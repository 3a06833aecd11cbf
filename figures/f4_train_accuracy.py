r"""F4. Linear model: clean and noisy training accuracy against step (the paper's Figure 1 reading).

Clean training accuracy: fraction of clean examples classified correctly; noisy training
accuracy: fraction of flipped examples whose *noisy* label the model fits (memorisation;
chance 1/2). Both fall out of :func:`linsam.simulate.record_metrics` (``train_acc_clean``,
``train_acc_noisy``), GD and 1-SAM at the headline rho, mean over seeds with a 95% band.

Reading: after the noisy accuracy's dip (the model first learns the clean signal and gets the
flipped examples "wrong"), the step at which it climbs back above chance marks the start of
memorisation; the clean accuracy at that step is how much of the clean data a method fits
before it starts fitting noise (per seed, then averaged). The paper: 1-SAM reaches a higher
clean accuracy before fitting noisy examples.
"""

from __future__ import annotations

import numpy as np

from figures._style import METHOD_COLORS, mean_band, new_figure, step_axis
from linsam.stats import mean_ci

ID = "F4"
NAME = "train_accuracy"
TITLE = "Linear model: clean accuracy reached before the noisy labels are fit"


def crossing(steps, noisy, clean):
    """Per seed: first step after the noisy accuracy's minimum with noisy accuracy > 1/2, and the
    clean accuracy there (NaN if it never crosses). ``noisy``, ``clean``: (seed, T).
    (:func:`linsam.theory.early_stopping`'s memorisation onset.)"""
    from linsam import theory

    noisy = np.asarray(noisy, float)
    es = theory.early_stopping(steps, np.zeros_like(noisy), clean, noisy)
    return np.asarray(es.memorize_step), np.asarray(es.clean_acc_at_memorize)


def compute(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"], keep_params=True)
    rho = float(cfg["rho"])
    j = res.index("rho", rho)
    steps = np.asarray(res.axes["step"])
    out = dict(steps=steps, rho=rho, seeds=res.config.num_seeds, methods={})
    for meth in ("gd", "one_sam"):
        i = res.index("rule", meth)
        clean = np.asarray(res.metrics["train_acc_clean"])[i, j]
        noisy = np.asarray(res.metrics["train_acc_noisy"])[i, j]
        cs, ca = crossing(steps, noisy, clean)
        out["methods"][meth] = dict(clean=clean, noisy=noisy, cross_step=cs, cross_clean=ca)
    return out


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(1, 1, width=5.8, height=4.0)
    ax = axes[0, 0]
    labels = {"gd": "GD", "one_sam": f"1-SAM (rho = {data['rho']:g})"}
    notes = []
    for meth, d in data["methods"].items():
        col = METHOD_COLORS[meth]
        mean_band(ax, data["steps"], d["clean"], color=col, label=f"{labels[meth]}: clean examples", clip=(0, 1))
        mean_band(ax, data["steps"], d["noisy"], color=col, ls="--", label=f"{labels[meth]}: noisy examples (fit)",
                  clip=(0, 1))
        s = np.nanmedian(d["cross_step"])
        c = np.nanmean(d["cross_clean"])
        if np.isfinite(s):
            ax.axvline(s, color=col, ls=":", lw=1.0)
            ax.plot([s], [c], marker="D", color=col, ms=7, mec="white", zorder=6)
            notes.append(f"{labels[meth]}: {100 * c:.0f}% (step {s:.0f})")
    if notes:
        ax.text(0.02, 0.97, "clean accuracy when the noisy\naccuracy climbs above chance (diamonds):\n" + "\n".join(notes),
                transform=ax.transAxes, va="top", ha="left", fontsize=7,
                bbox=dict(boxstyle="round", fc="white", ec="0.7", alpha=0.9))
    ax.axhline(0.5, color="0.4", lw=0.8, ls="-.", label="chance (1/2)")
    step_axis(ax, data["steps"], 5)
    ax.set_ylabel("training accuracy on the (noisy) training labels")
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_title(f"Clean vs noisy training accuracy ({data['seeds']} seeds, mean with 95% band)")
    ax.legend(loc="lower right", fontsize=7)
    return fig


def caption(data: dict, cfg: dict) -> str:
    parts = []
    for meth, d in data["methods"].items():
        est, lo, hi, _ = mean_ci(d["cross_clean"])
        name = "GD" if meth == "gd" else f"1-SAM (rho = {data['rho']:g})"
        n_cross = int(np.sum(np.isfinite(d["cross_clean"])))
        parts.append(f"{name} {100 * est:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] at median step "
                     f"{np.nanmedian(d['cross_step']):.0f} ({n_cross}/{len(d['cross_clean'])} seeds cross)")
    return ("F4. Clean (solid) and noisy (dashed, fraction of flipped labels fit) training accuracy against step. "
            "Clean accuracy at the step where the noisy accuracy climbs back above chance (diamonds, mean [95% CI]): "
            + "; ".join(parts) + ".")


def summary(data: dict) -> dict:
    return {m: dict(zip(("clean_at_cross", "low", "high"), mean_ci(d["cross_clean"])[:3]))
            for m, d in data["methods"].items()}
