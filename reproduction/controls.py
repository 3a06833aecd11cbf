r"""Does 1-SAM beat every simpler explanation? The control comparison of one regime.

Shared by the regime map (:mod:`reproduction.regimes`), claim C10
(:mod:`paper_checks.c10_controls`) and figure F8 (:mod:`figures.f8_controls`).

Protocol (a regime = a *selection* sweep and a *report* sweep of the same setting on disjoint
seeds, methods paired within a seed):

* every method's knob (1-SAM's radius, the shifted loss's C, the step multiplier, the weight
  decay, n-SAM's radius; it rides on the sweep's rho axis, see ``SimConfig.knob_scale``) is
  chosen on the selection seeds: :math:`\rho^\star_m = \arg\max_\rho \overline{\mathrm{peak}_m(\rho)
  - \mathrm{peak}_{\rm GD}}` (a method without a knob has one value);
* the *best control* :math:`c^\star` is also chosen on the selection seeds: the control whose
  mean peak at its own :math:`\rho^\star` is highest there (so the report seeds are not used to
  pick it, and the comparison below is not biased towards the controls' lucky draws);
* on the report seeds: the paired gain :math:`\mathrm{peak}_{\rm 1SAM}(\rho^\star_{\rm 1SAM}) -
  \mathrm{peak}_{c^\star}(\rho^\star_{c^\star})` with a Student-t 95% interval. 1-SAM *beats the
  best control* iff that interval lies above 0.

A selected knob at the end of its grid is flagged (``edge``: ``"low"`` or ``"high"``).
"""

from __future__ import annotations

import numpy as np

from linsam._src.engine.config import trains_with_rho
from linsam._src.rules import CONTROLS
from linsam.stats import mean_ci
from reproduction._sweepstats import peak

#: Display names of the methods.
LABELS = {
    "gd": "GD",
    "one_sam": "1-SAM",
    "nsam": "n-SAM",
    "lsam": "L-SAM",
    "jsam": "J-SAM",
    "jreg": "J-reg",
    "jreg_fixed": "J-reg-fixed",
    "linear_loss": "GD, linear loss -z",
    "shifted_loss": "GD, shifted loss softplus(C - z)",
    "large_step": "GD, larger step",
    "weight_decay": "GD + weight decay",
}

#: What each control's knob is, at grid value rho (``knob_scale`` factor k).
KNOBS = {"shifted_loss": "C = {k:g} rho", "large_step": "lr x {k:g} rho", "weight_decay": "decay {k:g} rho"}

#: The controls of a regime: simpler explanations than 1-SAM's per-example perturbation.
#: (L-SAM and J-SAM are 1-SAM's parts, not controls.)
CONTROL_METHODS = ("nsam", "jreg", "jreg_fixed") + CONTROLS


def label(m: str) -> str:
    return LABELS.get(m, m)


def knob_text(config, m: str) -> str:
    """What rho means for method ``m`` of ``config`` (``"rho"`` for the SAM family)."""
    if m in KNOBS:
        return KNOBS[m].format(k=dict(config.knob_scale).get(m, 1.0))
    if m == "jreg_fixed":
        return "lam x rho" if config.lam_scale_by_rho else "-"
    return "-" if not trains_with_rho(config, m) else "rho"


def tuned_rho(sel, m: str, baseline: str = "gd") -> tuple[float, str | None]:
    """``(rho*, edge)``: the grid value with the largest mean paired peak gain of ``m`` over
    ``baseline`` on the selection sweep ``sel``; ``edge`` is ``"low"``/``"high"`` when it is an
    end of the grid (None inside, or for a method without a knob)."""
    rhos = np.asarray(sel.axes["rho"], float)
    if not trains_with_rho(sel.config, m):
        return float(rhos[0]), None
    pk, _ = peak(sel)
    mi, bi = sel.axes["rule"].index(m), sel.axes["rule"].index(baseline)
    gain = np.nanmean(pk[mi] - pk[bi], axis=-1)
    j = int(np.nanargmax(gain))
    edge = None if len(rhos) < 2 else ("low" if j == 0 else "high" if j == len(rhos) - 1 else None)
    return float(rhos[j]), edge


def compare(sel, rep, *, treatment: str = "one_sam", baseline: str = "gd", controls=None) -> dict:
    """The control comparison of one regime (see the module docstring); plain numbers out.

    Returns a dict: ``methods`` (name -> rho*, edge, knob, report-seed peaks at rho* and at the
    treatment's rho*, selection-seed mean peak), ``best_control``, ``gain`` (paired
    treatment - best control on the report seeds: mean, lo, hi, n), ``treatment``, ``baseline``.
    """
    overlap = set(np.asarray(sel.axes["seed"]).tolist()) & set(np.asarray(rep.axes["seed"]).tolist())
    if overlap:
        raise ValueError(f"report sweep {rep.config.name} reuses selection seeds {sorted(overlap)[:5]}")
    methods = list(rep.axes["rule"])
    for m in (treatment, baseline):
        if m not in methods or m not in sel.axes["rule"]:
            raise ValueError(f"{rep.config.name}: the comparison needs method {m!r} in both sweeps")
    if controls is None:
        controls = [m for m in methods if m in CONTROL_METHODS]
    spk, _ = peak(sel)
    rpk, rstep = peak(rep)
    out = {}
    t_rho, _ = tuned_rho(sel, treatment, baseline)
    for m in methods:
        rho, edge = tuned_rho(sel, m, baseline)
        if float(rho) not in set(float(r) for r in rep.axes["rho"]):
            raise ValueError(f"{rep.config.name}: {m}'s rho* = {rho:g} (selected on {sel.config.name}) is not on "
                             f"the report grid {list(rep.axes['rho'])}")
        mi, ri = methods.index(m), rep.index("rho", rho)
        rj = rep.index("rho", t_rho) if trains_with_rho(rep.config, m) else ri
        si = sel.axes["rule"].index(m)
        out[m] = dict(rho=rho, edge=edge, knob=knob_text(rep.config, m), peak=rpk[mi, ri].tolist(),
                      peak_step=float(np.median(rstep[mi, ri])), peak_matched=rpk[mi, rj].tolist(),
                      select_mean=float(np.mean(spk[si, sel.index("rho", rho)])))
    best = max(controls, key=lambda m: out[m]["select_mean"]) if controls else None
    gain = None
    if best is not None:
        g = mean_ci(np.asarray(out[treatment]["peak"]) - np.asarray(out[best]["peak"]))
        gain = dict(mean=float(g.mean), lo=float(g.lo), hi=float(g.hi), n=int(g.n))
    return dict(regime=rep.config.meta_dict.get("regime", rep.config.name),
                title=rep.config.meta_dict.get("title", rep.config.name), select=sel.config.name,
                report=rep.config.name, treatment=treatment, baseline=baseline, controls=list(controls),
                methods=out, best_control=best, gain=gain, treatment_rho=t_rho)


def verdict(comparison: dict) -> str:
    """``"yes"`` (1-SAM's peak beats the best control's, 95% CI above 0), ``"no (worse)"``
    (CI below 0) or ``"no"`` (CI contains 0)."""
    g = comparison["gain"]
    if g is None:
        return "no control"
    return "yes" if g["lo"] > 0 else "no (worse)" if g["hi"] < 0 else "no"


def ci_text(values, pct: bool = True, signed: bool = False) -> str:
    """``mean [lo, hi]`` of a per-seed array (Student-t 95%), in percent(age points)."""
    c = mean_ci(np.asarray(values))
    f = 100.0 if pct else 1.0
    sign = "+" if signed else ""
    if not np.isfinite(c.lo):
        return f"{c.mean * f:{sign}.2f}"
    return f"{c.mean * f:{sign}.2f} [{c.lo * f:{sign}.2f}, {c.hi * f:{sign}.2f}]"


def gain_text(g: dict) -> str:
    return f"{100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}]"


def table_lines(comp: dict) -> list[str]:
    """Markdown: every method at its own rho* and at 1-SAM's rho* (matched radius)."""
    t = comp["treatment"]
    lines = [
        f"Controls (each tuned on the selection seeds like rho*; the best control is picked there too). "
        f"Peak test accuracy (%) on the report seeds at each method's own rho* and at "
        f"{label(t)}'s rho* = {comp['treatment_rho']:g} (matched radius):",
        "",
        "| method | knob at rho | rho* | peak at own rho* (%) | peak step (median) | peak at 1-SAM's rho* (%) | "
        f"{label(t)} minus it (points) |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    tp = np.asarray(comp["methods"][t]["peak"])
    for m, r in comp["methods"].items():
        rr = "-" if r["knob"] == "-" else f"{r['rho']:g}" + (f" (at grid edge: {r['edge']})" if r["edge"] else "")
        diff = "-" if m == t else ci_text(tp - np.asarray(r["peak"]), signed=True)
        best = " (best control)" if m == comp["best_control"] else ""
        lines.append(f"| {label(m)}{best} | {r['knob']} | {rr} | {ci_text(r['peak'])} | {r['peak_step']:.0f} | "
                     f"{ci_text(r['peak_matched'])} | {diff} |")
    lines.append("")
    edges = [m for m, r in comp["methods"].items() if r["edge"]]
    if edges:
        lines += ["Grid edges: " + "; ".join(_edge_reason(comp, m) for m in edges) + ".", ""]
    return lines


def _edge_reason(comp: dict, m: str) -> str:
    r = comp["methods"][m]
    why = {
        ("weight_decay", "low"): "the smallest decay is best, i.e. the control tends to plain GD (decay 0)",
        ("large_step", "low"): "the smallest step is best (a larger step only hurts here)",
        ("large_step", "high"): "larger steps keep helping a little: the GD peak moves earlier with little change "
                                "in height (the gradient-flow path is the same)",
        ("shifted_loss", "high"): "larger C keeps helping: every weight sigma(C - z) -> 1, the linear-loss limit "
                                  "(its own row)",
        ("one_sam", "high"): "larger rho keeps helping: 1-SAM tends to the linear-loss limit (its own row)",
    }.get((m, r["edge"]), "the grid was not extended further within the time budget of the regime map")
    t = comp["treatment"]
    if m != t and (m, r["edge"]) not in (("weight_decay", "low"), ("large_step", "low")):
        ahead = np.mean(r["peak"]) >= np.mean(comp["methods"][t]["peak"])
        why += (f"; it is already ahead of {label(t)} at this value" if ahead
                else f"; it is behind {label(t)} here, so the table may understate this control")
    return f"{label(m)} at the {r['edge']} end (rho* = {r['rho']:g}): {why}"


def measure_regimes(ctx, cfg: dict) -> list[dict]:
    """:func:`compare` for every regime of a check/figure's settings (sweeps through ``ctx``'s cache).

    Settings: ``regimes = {name = [select config, report config]}``; optional ``methods`` (a
    subset of the regime's methods, both runs), ``select`` / ``report`` (field replacements of
    the selection / report run, e.g. fewer seeds or steps in the test suite's tiny mode).
    """
    regimes = cfg.get("regimes")
    if not isinstance(regimes, dict) or not regimes:
        raise ValueError("regimes must map a regime name to [select config, report config]")
    common = {"methods": tuple(cfg["methods"])} if cfg.get("methods") else {}
    out = []
    for name, refs in regimes.items():
        if not (isinstance(refs, (list, tuple)) and len(refs) == 2):
            raise ValueError(f"regimes.{name} must be [select config, report config], got {refs!r}")
        sel = ctx.sweep(refs[0], **common, **dict(cfg.get("select", {})))
        rep = ctx.sweep(refs[1], **common, **dict(cfg.get("report", {})))
        comp = compare(sel, rep)
        comp["regime"] = name
        out.append(comp)
    return out
