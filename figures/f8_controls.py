r"""F8. Each regime's validation-selected test accuracy for GD, 1-SAM and every control, with 95% CIs.

One panel per regime: on the fresh (report) seeds, the test accuracy at each run's
validation-selected step of GD, 1-SAM at its :math:`\rho^\star` and every control at its own
knob (:mod:`reproduction.controls`: knobs, stopping steps and the best simple control are chosen
on the validation split), mean with the Student-t 95% CI; the oracle peak is a small grey tick
beside each. The best simple control is drawn filled; the title gives 1-SAM minus it (paired
CI) and the TOST verdict at the pre-set margin.
"""

from __future__ import annotations

import numpy as np

from figures._style import new_figure
from linsam.stats import mean_ci
from reproduction import controls as C

ID = "F8"
NAME = "controls"
TITLE = "Validation-selected test accuracy of GD, 1-SAM and every control, per regime"


def compute(ctx, cfg: dict) -> dict:
    return dict(regimes=C.measure_regimes(ctx, cfg))


def draw(data: dict, cfg: dict):
    comps = data["regimes"]
    fig, axes = new_figure(1, len(comps), width=3.4 * len(comps), height=3.8)
    for ax, c in zip(axes[0], comps):
        names = list(c["methods"])
        est = np.array([tuple(mean_ci(np.asarray(c["methods"][m]["selected"])))[:3] for m in names])
        orc = np.array([np.mean(c["methods"][m]["oracle"]) for m in names])
        x = np.arange(len(names))
        for i, m in enumerate(names):
            col = "C3" if m == c["treatment"] else "0.4" if m == c["baseline"] else "C0"
            filled = m in (c["treatment"], c["best_control"], c["baseline"])
            ax.errorbar(x[i], 100 * est[i, 0], yerr=[[100 * (est[i, 0] - est[i, 1])], [100 * (est[i, 2] - est[i, 0])]],
                        fmt="o", color=col, mfc=col if filled else "white", capsize=3, ms=5)
            ax.plot(x[i] + 0.25, 100 * orc[i], "_", color="0.5", ms=7)
        ax.axhline(100 * est[names.index(c["treatment"]), 0], color="C3", lw=0.6, ls=":")
        ax.set_xticks(x, [C.label(m).replace("GD, ", "").replace("GD + ", "+") for m in names], rotation=60,
                      ha="right", fontsize=7)
        g = c["gain"]
        ax.set_title(f"{c['regime']}\n1-SAM - best control {100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, "
                     f"{100 * g['hi']:+.2f}] pp: {g['verdict']}", fontsize=8)
    axes[0, 0].set_ylabel("validation-selected test accuracy (%)")
    return fig


def caption(data: dict, cfg: dict) -> str:
    parts = []
    for c in data["regimes"]:
        bc = c["best_control"]
        parts.append(f"{c['regime']}: 1-SAM minus {C.label(bc)} {C.gain_text(c['gain'])} pp "
                     f"({C.verdict_text(c['gain'])})")
    return ("F8. Test accuracy at the validation-selected step (mean, 95% CI over fresh seeds; grey tick: the oracle "
            "peak) of GD, 1-SAM (red) and every control at its own knob tuned on the validation split of the "
            "selection seeds; filled: GD, 1-SAM and the best simple control. " + "; ".join(parts) + ".")
