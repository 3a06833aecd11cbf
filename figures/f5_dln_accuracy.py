r"""F5. Deep linear network: test accuracy against step for SGD, 1-SAM, L-SAM, J-SAM and J-reg.

Test accuracy: population accuracy of the end-to-end map :math:`W^\top v`
(:func:`linsam.data.population_accuracy`), mean over seeds with a 95% band; stars at the peak
of each mean curve. J-reg (the Proposition 4.1 penalty) equals J-SAM exactly for the DLN, so
it is drawn dashed on top of J-SAM; the fixed-coefficient regulariser is the cheap version.
"""

from __future__ import annotations

import numpy as np

from figures._style import METHOD_COLORS, METHOD_LABELS, mean_band, new_figure, step_axis

ID = "F5"
NAME = "dln_accuracy"
TITLE = "Deep linear network: test accuracy of SGD, 1-SAM, L-SAM, J-SAM and the regularisers"


def compute(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"])
    rho = float(cfg["rho"])
    j = res.index("rho", rho)
    acc = np.asarray(res.metrics["test_acc"])[:, j]  # (method, seed, T)
    methods = [m for m in cfg.get("methods", res.axes["rule"]) if m in res.axes["rule"]]
    return dict(steps=np.asarray(res.axes["step"]), rho=rho, methods=methods, bayes=res.bayes_acc,
                acc={m: acc[res.index("rule", m)] for m in methods}, seeds=res.config.num_seeds)


def _peak(steps, Y):
    mean = np.nanmean(Y, axis=0)
    k = int(np.nanargmax(mean))
    return steps[k], mean[k]


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(1, 1, width=6.0, height=4.2)
    ax = axes[0, 0]
    for m in data["methods"]:
        dashed = m == "jreg"
        mean_band(ax, data["steps"], data["acc"][m], color=METHOD_COLORS[m], label=METHOD_LABELS[m],
                  ls="--" if dashed else "-", lw=1.2 if dashed else 1.6, alpha=0.0 if dashed else 0.18,
                  zorder=4 if dashed else 2, clip=(0, 1))
        s, v = _peak(data["steps"], data["acc"][m])
        ax.plot(s, v, marker="*", ms=11, color=METHOD_COLORS[m], mec="white", mew=0.7, zorder=6)
    step_axis(ax, data["steps"], 10)
    ax.set_ylabel("test accuracy (population, %)")
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_title(f"2-layer linear network, rho = {data['rho']:g} ({data['seeds']} seeds, mean with 95% band; "
                 f"stars: peaks)", fontsize=9)
    ax.legend(loc="lower left", fontsize=7)
    return fig


def caption(data: dict, cfg: dict) -> str:
    names = {"gd": "SGD", "one_sam": "1-SAM", "lsam": "L-SAM", "jsam": "J-SAM", "jreg": "J-reg",
             "jreg_fixed": "fixed reg."}
    peaks = [f"{names.get(m, m)} {100 * _peak(data['steps'], data['acc'][m])[1]:.1f}%" for m in data["methods"]]
    finals = [f"{names.get(m, m)} {100 * np.nanmean(data['acc'][m][:, -1]):.1f}%" for m in data["methods"]]
    return (f"F5. DLN test accuracy against step (rho = {data['rho']:g}); peak of the mean curve: " + ", ".join(peaks)
            + "; at the last step: " + ", ".join(finals) + ". J-reg (dashed) coincides with J-SAM (Prop. 4.1).")


def summary(data: dict) -> dict:
    return {m: dict(peak=float(_peak(data["steps"], data["acc"][m])[1]), final=float(np.nanmean(data["acc"][m][:, -1])))
            for m in data["methods"]}
