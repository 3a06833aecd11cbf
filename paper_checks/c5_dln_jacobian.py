r"""C5: in the deep linear network, J-SAM recovers most of 1-SAM's gain over SGD, L-SAM less.

Setting: :math:`f = \langle v, Wx\rangle` trained on noisy labels by SGD (``gd``), 1-SAM,
L-SAM (logit scale at the perturbed point, Jacobian at w) and J-SAM (logit scale at w,
Jacobian at the perturbed point), same data and initialisation per seed.

Statistic (``statistic = "peak"``, as in the paper: best test accuracy over training): per
seed the gain of each method over SGD; the fraction of 1-SAM's gain a method recovers is the
ratio of the seed means,

.. math::  F_m = \overline{\mathrm{acc}_m - \mathrm{acc}_{\mathrm{SGD}}} \big/
                 \overline{\mathrm{acc}_{\mathrm{1SAM}} - \mathrm{acc}_{\mathrm{SGD}}},

with a paired percentile-bootstrap 95% CI over seeds (also for :math:`F_J - F_L`). Holds iff
1-SAM's gain is positive (t-CI above 0), :math:`F_J` > ``most`` (CI above it, default 1/2)
and :math:`F_J - F_L > 0` (CI above 0). The same fractions for the end-of-training accuracy
(``final``) are measured and reported alongside.

Other radii on the sweep's rho grid are reported too (not in the verdict): L-SAM's gain keeps
growing with rho where 1-SAM's and J-SAM's collapse (see docs/regimes.md), so "L-SAM less"
is a statement at a common rho.

The paper's evidence for this claim is from deep networks (CIFAR-10 ResNet-18); the DLN is
the model of its Proposition 4.1, so this is a transfer to the DLN and is not must-hold.
"""

from __future__ import annotations

import numpy as np

from linsam.stats import bootstrap_ci, mean_ci, ratio_of_means, ratio_of_means_ci
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec, fmt_ci, fmt_pct_ci
from reproduction._sweepstats import at_step, peak, regime_text

SPEC = ClaimSpec(
    id="C5",
    claim="In the DLN, J-SAM recovers most of 1-SAM's gain over SGD, and L-SAM less.",
    where="Sec. 4 (Jacobian vs logit-scale effect; paper's evidence: CIFAR-10, Table/Fig. of SAM variants)",
    expected="fraction of 1-SAM's best-test-accuracy gain: J-SAM > 1/2 and J-SAM > L-SAM (95% bootstrap CIs)",
    must_hold=False,
)


def method_gains(res, rho: float, statistic: str) -> dict:
    """Per-seed accuracy of every method and its gain over ``gd`` at ``rho``: ``{method: {...}}``."""
    if statistic == "peak":
        acc, step = peak(res, "test_acc")
    elif statistic == "final":
        acc, step = at_step(res, "test_acc", "final"), None
    else:
        raise ValueError(f"statistic must be 'peak' or 'final', got {statistic!r}")
    j = res.index("rho", rho)
    base = acc[res.index("method", "gd"), j]
    out = {}
    for i, meth in enumerate(res.axes["method"]):
        out[meth] = dict(acc=acc[i, j].tolist(), gain=(acc[i, j] - base).tolist(),
                         step=None if step is None else step[i, j].tolist())
    return out


def measure(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"])
    rho = float(cfg["rho"])
    stat = cfg.get("statistic", "peak")
    others = {f"{float(r):g}": method_gains(res, float(r), stat) for r in res.axes["rho"] if float(r) != rho}
    return dict(rho=rho, peak=method_gains(res, rho, "peak"), final=method_gains(res, rho, "final"),
                statistic=stat, other_rhos=others, regime=regime_text(res, f"rho = {rho:g}"))


def fractions(g: dict, methods=("jsam", "lsam"), seed: int = 0) -> dict:
    """Fractions of 1-SAM's gain recovered, with bootstrap CIs, and J-SAM minus L-SAM."""
    sam = np.asarray(g["one_sam"]["gain"])
    out = {"one_sam_gain": mean_ci(sam)}
    for m in methods:
        if m in g:
            out[m] = ratio_of_means_ci(g[m]["gain"], sam, seed=seed)
    if "jsam" in g and "lsam" in g:
        out["jsam_minus_lsam"] = bootstrap_ci(
            lambda a, b, c, axis=-1: ratio_of_means(a, c, axis) - ratio_of_means(b, c, axis),
            g["jsam"]["gain"], g["lsam"]["gain"], sam, seed=seed)
    return out


def _text(f: dict) -> str:
    return (f"1-SAM gain {fmt_pct_ci(f['one_sam_gain'])}; fraction recovered: J-SAM {fmt_ci(f['jsam'], 2)}, "
            f"L-SAM {fmt_ci(f['lsam'], 2)}; J minus L {fmt_ci(f['jsam_minus_lsam'], 2)}")


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    most = float(cfg.get("most", 0.5))
    stat = m["statistic"]
    f = fractions(m[stat])
    other = "final" if stat == "peak" else "peak"
    fo = fractions(m[other])
    ok = bool(f["one_sam_gain"].lo > 0 and f["jsam"].lo > most and f["jsam_minus_lsam"].lo > 0)
    why = []
    if not f["one_sam_gain"].lo > 0:
        why.append("1-SAM's own gain is not established")
    if not f["jsam"].lo > most:
        why.append(f"J-SAM's fraction is not established above {most:g}")
    if not f["jsam_minus_lsam"].lo > 0:
        why.append("J-SAM > L-SAM is not established" + (" (point estimate agrees, CI too wide)"
                                                         if f["jsam_minus_lsam"].estimate > 0 else ""))
    label = {"peak": "best (early-stopped) test accuracy", "final": "end-of-training test accuracy"}
    measured = f"{label[stat]}: {_text(f)}. {label[other]}: {_text(fo)}"
    if why:
        measured += ". Not established: " + "; ".join(why)
    for r, g in (m.get("other_rhos") or {}).items():  # the rest of the rho grid (not in the verdict)
        fr = fractions(g)
        measured += (f". At rho = {r}: 1-SAM gain {fmt_pct_ci(fr['one_sam_gain'])}, J-SAM {fr['jsam'].estimate:.2f}, "
                     f"L-SAM {fr['lsam'].estimate:.2f} of it")
    return ClaimResult.from_spec(
        SPEC, regime=m["regime"], measured=measured, estimate=f["jsam"].estimate, ci=(f["jsam"].lo, f["jsam"].hi),
        verdict=HOLDS if ok else FAILS, details=dict(m, fractions={stat: f, other: fo}),
        expected=f"fraction of 1-SAM's {label[stat]} gain: J-SAM > {most:g} and J-SAM > L-SAM (95% bootstrap CIs)",
    )
