r"""F6. Deep linear network: :math:`\|v\|`, mean :math:`\|Wx\|` and the Proposition 4.1 penalty against step.

Proposition 4.1: J-SAM = SGD + the gradient of :math:`\rho\,\mathrm{sg}(\sigma(-tf))\,J`,
:math:`J = \sqrt{\|Wx\|^2 + \|x\|^2\|v\|^2}`, an L2-type penalty on the last-layer weights
:math:`v` and the hidden activations :math:`Wx`. Panels: :math:`\|v\|`; mean over training
examples of :math:`\|Wx_i\|`; the penalty value :math:`\frac{\rho}{n}\sum_i\sigma(-z_i)J_i`
along each method's trajectory (``jsam_penalty`` of :func:`linsam.simulate.record_metrics`).
Mean over seeds with a 95% band.
"""

from __future__ import annotations

import numpy as np

from figures._style import METHOD_COLORS, METHOD_LABELS, mean_band, new_figure

ID = "F6"
NAME = "dln_norms"
TITLE = "Deep linear network: 1-SAM and J-SAM shrink ||v|| and ||Wx|| (Prop. 4.1)"

PANELS = (("v_norm", "last-layer norm ||v||"), ("act_norm", "mean activation norm ||W x_i||"),
          ("jsam_penalty", "Prop. 4.1 penalty (rho/n) sum_i sigma(-z_i) J_i"))


def compute(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"])
    rho = float(cfg["rho"])
    j = res.index("rho", rho)
    methods = [m for m in cfg.get("methods", res.axes["method"]) if m in res.axes["method"]]
    vals = {metric: {m: np.asarray(res.metrics[metric])[res.index("method", m), j] for m in methods}
            for metric, _ in PANELS}
    return dict(steps=np.asarray(res.axes["step"]), rho=rho, methods=methods, vals=vals, seeds=res.config.num_seeds)


def draw(data: dict, cfg: dict):
    fig, axes = new_figure(3, 1, width=3.9, height=3.6)
    for ax, (metric, label) in zip(axes[0], PANELS):
        for m in data["methods"]:
            mean_band(ax, data["steps"], data["vals"][metric][m], color=METHOD_COLORS[m], label=METHOD_LABELS[m])
        ax.set_xlabel("step (full-batch iterations)")
        ax.set_ylabel(label + (" (loss units)" if metric == "jsam_penalty" else " (input units)"
                               if metric == "act_norm" else " (parameter norm)"))
        if metric != "jsam_penalty":
            ax.set_yscale("log")
    axes[0, 0].legend(loc="best", fontsize=6.5)
    fig.suptitle(f"DLN norms along training, rho = {data['rho']:g} ({data['seeds']} seeds, mean with 95% band)",
                 fontsize=9)
    return fig


def caption(data: dict, cfg: dict) -> str:
    names = {"gd": "SGD", "one_sam": "1-SAM", "lsam": "L-SAM", "jsam": "J-SAM", "jreg": "J-reg",
             "jreg_fixed": "fixed reg."}
    v = ", ".join(f"{names.get(m, m)} {np.nanmean(data['vals']['v_norm'][m][:, -1]):.2f}" for m in data["methods"])
    a = ", ".join(f"{names.get(m, m)} {np.nanmean(data['vals']['act_norm'][m][:, -1]):.2f}" for m in data["methods"])
    return (f"F6. DLN ||v||, mean ||Wx|| and the Prop. 4.1 penalty against step (rho = {data['rho']:g}). At the last step "
            f"||v||: {v}; mean ||Wx||: {a}. The Jacobian term (J-SAM, 1-SAM) shrinks both; L-SAM does not.")


def summary(data: dict) -> dict:
    return {metric: {m: float(np.nanmean(data["vals"][metric][m][:, -1])) for m in data["methods"]}
            for metric, _ in PANELS}
