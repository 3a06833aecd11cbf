r"""C5: at 1-SAM's own radius, J-SAM keeps most of 1-SAM's gain over SGD, L-SAM less.

Setting: per model (``sweeps = {label = sweep}``; the DLN :math:`f = \langle v, Wx\rangle`,
and any other model a sweep config names, one row each) trained on noisy labels by SGD
(``gd``), 1-SAM, L-SAM (logit scale at the perturbed point, Jacobian at w) and J-SAM (logit
scale at w, Jacobian at the perturbed point), same data and initialisation per seed.

Radius: 1-SAM's :math:`\rho^\star`, chosen on *selection* seeds (the sweep's seeds shifted by
``select_offset``, disjoint: checked) as the grid value with the largest mean paired peak gain
of 1-SAM over SGD; J-SAM and L-SAM are evaluated at that same radius (matched radius: L-SAM's
gain keeps growing with rho where 1-SAM's collapses, see docs/regimes.md, so "L-SAM less" is
a statement at a common rho, and the common rho is 1-SAM's best one).

Statistic, on the report seeds, for the early-stopped peak *and* the end of training: per seed
the gain of each method over SGD; the fraction of 1-SAM's gain a method keeps is the ratio of
the seed means,

.. math::  F_m = \overline{\mathrm{acc}_m - \mathrm{acc}_{\mathrm{SGD}}} \big/
                 \overline{\mathrm{acc}_{\mathrm{1SAM}} - \mathrm{acc}_{\mathrm{SGD}}},

with a paired percentile-bootstrap 95% CI over seeds, also for :math:`F_J - F_L`. Holds iff,
for every model and the verdict's ``statistic`` (default the peak, as in the paper), 1-SAM's
gain is positive (t-CI above 0), :math:`F_J` > ``most`` (CI above it, default 1/2) and
:math:`F_J - F_L > 0` (CI above 0). The other statistic is measured and reported alongside.

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
    claim="In the DLN, at 1-SAM's rho*, J-SAM keeps most of 1-SAM's gain over SGD, and L-SAM less.",
    where="Sec. 4 (Jacobian vs logit-scale effect; paper's evidence: CIFAR-10, Table/Fig. of SAM variants)",
    expected="at 1-SAM's rho*, fraction of 1-SAM's best-test-accuracy gain: J-SAM > 1/2 and J-SAM > L-SAM "
             "(95% bootstrap CIs)",
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
    base = acc[res.index("rule", "gd"), j]
    out = {}
    for i, meth in enumerate(res.axes["rule"]):
        out[meth] = dict(acc=acc[i, j].tolist(), gain=(acc[i, j] - base).tolist(),
                         step=None if step is None else step[i, j].tolist())
    return out


def select_rho(sel, method: str = "one_sam", statistic: str = "peak") -> float:
    """The grid value with the largest mean paired gain of ``method`` over ``gd`` on ``sel``."""
    acc = peak(sel, "test_acc")[0] if statistic == "peak" else at_step(sel, "test_acc", "final")
    gain = np.nanmean(acc[sel.index("rule", method)] - acc[sel.index("rule", "gd")], axis=-1)
    return float(sel.axes["rho"][int(np.nanargmax(gain))])


def measure_model(ctx, ref: str, cfg: dict) -> dict:
    """One model's measurement: selection and report sweeps of ``ref``, gains at 1-SAM's rho*."""
    replace = {}
    if cfg.get("methods"):
        replace["methods"] = tuple(cfg["methods"])
    if cfg.get("rhos"):
        replace["rhos"] = tuple(float(r) for r in cfg["rhos"])
    res = ctx.sweep(ref, **replace)
    n_sel = int(cfg.get("select_seeds", res.config.num_seeds))
    offset = int(res.config.seed_offset) + int(cfg.get("select_offset", 500))
    base = ctx.sweep_config(ref, **replace)
    sel = ctx.sweep(base.replace(num_seeds=n_sel, seed_offset=offset, name=f"{base.name}_c5select"))
    overlap = set(np.asarray(sel.axes["seed"]).tolist()) & set(np.asarray(res.axes["seed"]).tolist())
    if overlap:
        raise ValueError(f"C5: selection seeds overlap the report seeds {sorted(overlap)[:5]}: raise select_offset")
    rho = select_rho(sel, "one_sam", cfg.get("statistic", "peak"))
    grid = [float(r) for r in res.axes["rho"]]
    edge = None if len(grid) < 2 else ("low" if rho == grid[0] else "high" if rho == grid[-1] else None)
    return dict(rho=rho, rho_grid=grid, rho_edge=edge, select_seeds=[int(s) for s in sel.axes["seed"]],
                peak=method_gains(res, rho, "peak"), final=method_gains(res, rho, "final"),
                regime=regime_text(res, f"1-SAM's rho* = {rho:g} selected on seeds {int(sel.axes['seed'][0])}-"
                                   f"{int(sel.axes['seed'][-1])} from {grid}"))


def measure(ctx, cfg: dict) -> dict:
    sweeps = cfg.get("sweeps")
    if sweeps is None and "sweep" in cfg:  # a user file with the single-sweep layout
        sweeps = {"dln": cfg["sweep"]}
    if not isinstance(sweeps, dict) or not sweeps:
        raise ValueError("C5 needs sweeps = {model label = sweep config}, e.g. {dln = \"reproduce_dln\"}")
    models = {label: measure_model(ctx, ref, cfg) for label, ref in sweeps.items()}
    stat = cfg.get("statistic", "peak")
    return dict(models=models, statistic=stat,
                regime="; ".join(f"{label}: {m['regime']}" for label, m in models.items()))


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


def _model_verdict(f: dict, most: float) -> list[str]:
    why = []
    if not f["one_sam_gain"].lo > 0:
        why.append("1-SAM's own gain is not established")
    if not f["jsam"].lo > most:
        why.append(f"J-SAM's fraction is not established above {most:g}")
    if not f["jsam_minus_lsam"].lo > 0:
        why.append("J-SAM > L-SAM is not established" + (" (point estimate agrees, CI too wide)"
                                                         if f["jsam_minus_lsam"].estimate > 0 else ""))
    return why


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    most = float(cfg.get("most", 0.5))
    stat = m["statistic"]
    other = "final" if stat == "peak" else "peak"
    label = {"peak": "early-stopped peak", "final": "end of training"}
    if "models" not in m:  # a single-model measurement (the layout before issue 11)
        m = dict(m, models={"dln": dict(m)})
    rows, parts, ok, first = {}, [], True, None
    for name, mm in m["models"].items():
        f, fo = fractions(mm[stat]), fractions(mm[other])
        rows[name] = {stat: f, other: fo}
        why = _model_verdict(f, most)
        ok = ok and not why
        first = first or f
        edge = f" (at grid edge: {mm['rho_edge']})" if mm.get("rho_edge") else ""
        if len(mm.get("rho_grid", [])) == 1:
            edge = " (a one-radius grid: rho* by construction)"
        text = (f"{name}, at 1-SAM's rho* = {mm['rho']:g}{edge}: {label[stat]}: {_text(f)}; "
                f"{label[other]}: {_text(fo)}")
        if why:
            text += " (not established: " + "; ".join(why) + ")"
        parts.append(text)
    return ClaimResult.from_spec(
        SPEC, regime=m["regime"], measured=". ".join(parts), estimate=first["jsam"].estimate,
        ci=(first["jsam"].lo, first["jsam"].hi), verdict=HOLDS if ok else FAILS,
        details=dict(m, fractions=rows),
        expected=f"at 1-SAM's rho*, fraction of 1-SAM's {label[stat]} gain: J-SAM > {most:g} and J-SAM > L-SAM "
                 "(95% bootstrap CIs), every model",
    )
