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

PANELS = (("v_norm", r"last-layer norm $\|v\|$", "parameter norm"),
          ("act_norm", r"mean activation norm $\|W x_i\|$", "input-space norm"),
          ("jsam_penalty", r"Prop. 4.1 penalty $\frac{\rho}{n}\sum_i \sigma(-z_i) J_i$", "loss units"))


def compute(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"])
    rho = float(cfg["rho"])
    j = res.index("rho", rho)
    methods = [m for m in cfg.get("methods", res.axes["rule"]) if m in res.axes["rule"]]
    vals = {metric: {m: np.asarray(res.metrics[metric])[res.index("rule", m), j] for m in methods}
            for metric, _, _ in PANELS}
    return dict(steps=np.asarray(res.axes["step"]), rho=rho, methods=methods, vals=vals, seeds=res.config.num_seeds)


def draw(data: dict, cfg: dict):
    from matplotlib.ticker import LogLocator, NullFormatter

    fig, axes = new_figure(3, 1, width=3.8, height=3.4)
    for ax, (metric, title, unit) in zip(axes[0], PANELS):
        for m in data["methods"]:
            mean_band(ax, data["steps"], data["vals"][metric][m], color=METHOD_COLORS[m], label=METHOD_LABELS[m])
        ax.set_xlabel("step (full-batch iterations)")
        ax.set_ylabel(unit)
        ax.set_title(title)
        if metric == "v_norm":  # spans a decade: log scale with 1-2-5 ticks
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(lambda v, _: f"{v:g}")
            ax.yaxis.set_minor_formatter(NullFormatter())
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=len(labels), fontsize=7, frameon=False)
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
            for metric, _, _ in PANELS}
