r"""C3: the clean/noisy gradient-norm ratio decays more slowly for larger rho (linear model).

Statistic: at step k of a 1-SAM run with radius rho, the ratio of the mean per-example
gradient norm that enters the update, clean over noisy examples,

.. math::

    R_k(\rho) = \frac{\mathrm{mean}_{i\,\mathrm{clean}} \|\nabla\ell_i(w_k + \epsilon_i)\|}
                     {\mathrm{mean}_{i\,\mathrm{noisy}} \|\nabla\ell_i(w_k + \epsilon_i)\|}
              = \frac{\mathrm{mean}_{\mathrm{clean}}\,\sigma(-z_i + \rho\|x_i\|)\|x_i\|}
                     {\mathrm{mean}_{\mathrm{noisy}}\,\sigma(-z_i + \rho\|x_i\|)\|x_i\|}

(``sam_grad_norm_ratio`` of :func:`linsam.simulate.record_metrics`; :math:`\rho = 0` is GD).
Clean points are fit first, their gradients shrink, so :math:`R_k` decays; Lemma 3.1
keeps the fitted (mostly clean) points' weights up, so the decay should be slower for
larger rho: :math:`R_k(\rho)` increasing in rho at fixed k.

Measured at the configured checkpoint steps (the early, decaying phase), over seeds: the
per-seed Spearman correlation between rho and :math:`R_k(\rho)` (mean, Student-t 95% CI) and
the seed-mean :math:`R_k` at every rho. Holds iff, at every checkpoint, the Spearman CI
lies above 0 and the seed means increase strictly with rho.
"""

from __future__ import annotations

import numpy as np

from linsam.stats import mean_ci, spearman
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec, fmt_ci
from reproduction._sweepstats import at_step, regime_text

SPEC = ClaimSpec(
    id="C3",
    claim="The clean/noisy ratio of per-example gradient norms decays more slowly for larger rho "
          "(linear model, 1-SAM).",
    where="Sec. 3 (after Lemma 3.1), linear-model gradient-norm figure",
    expected="at each checkpoint step the ratio increases with rho: Spearman(rho, ratio) > 0 over seeds "
             "(95% CI) and seed means strictly increasing",
    must_hold=True,
)


def measure(ctx, cfg: dict) -> dict:
    res = ctx.sweep(cfg["sweep"], keep_params=True)
    method = cfg.get("method", "one_sam")
    mi = res.index("rule", method)
    rhos = np.asarray(res.axes["rho"], float)
    per_step = {}
    for k in cfg["steps"]:
        R = at_step(res, "sam_grad_norm_ratio", int(k))[mi]  # (rho, seed)
        rs = [spearman(rhos, R[:, s]) for s in range(R.shape[1])]
        per_step[str(int(k))] = dict(spearman=rs, mean_ratio=np.nanmean(R, axis=1).tolist())
    return dict(rhos=rhos.tolist(), steps=[int(k) for k in cfg["steps"]], per_step=per_step,
                regime=regime_text(res, f"1-SAM over rho {rhos.tolist()} (rho = 0 is GD)"))


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    ok = True
    parts, lows = [], []
    for k in m["steps"]:
        d = m["per_step"][str(k)]
        ci = mean_ci(d["spearman"])
        lo = ci.lo
        means = np.asarray(d["mean_ratio"], float)
        mono = bool(np.all(np.diff(means) > 0)) and bool(np.all(np.isfinite(means)))
        step_ok = bool(np.isfinite(lo) and lo > 0 and mono)
        ok &= step_ok
        lows.append(lo)
        parts.append(f"step {k}: Spearman {fmt_ci(ci, 2)}, ratio {means[0]:.2f} (rho={m['rhos'][0]:g}) -> "
                     f"{means[-1]:.2f} (rho={m['rhos'][-1]:g}){'' if mono else ' (means NOT monotone)'}")
    if not m["steps"]:
        ok = False
    worst = int(np.nanargmin(lows)) if lows and np.any(np.isfinite(lows)) else 0
    headline = mean_ci(m["per_step"][str(m["steps"][worst])]["spearman"] if m["steps"] else [])
    return ClaimResult.from_spec(
        SPEC, regime=m["regime"], measured="; ".join(parts), estimate=headline[0],
        ci=(headline[1], headline[2]), verdict=HOLDS if ok else FAILS, details=m,
    )
