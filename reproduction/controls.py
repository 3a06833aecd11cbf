r"""Does 1-SAM beat every simpler explanation? The control comparison of one regime.

Shared by the regime map (:mod:`reproduction.regimes`), claim C10
(:mod:`paper_checks.c10_controls`) and figure F8 (:mod:`figures.f8_controls`).

Protocol (a regime = a *selection* sweep and a *report* sweep of the same setting on disjoint
seeds, methods paired within a seed; every choice on the *validation* split, whose labels carry
the training noise: :mod:`linsam.selection`):

* every method's knob (1-SAM's radius, the shifted loss's C, the step multiplier, the weight
  decay, n-SAM's radius; it rides on the sweep's rho axis, see ``SimConfig.knob_scale``) is
  chosen on the selection seeds by the mean validation accuracy at each run's
  validation-selected step (:func:`linsam.selection.tune`). A setting with an unstable selection
  run (weight norm above the config's ``meta.blowup_norm``, or a non-finite value) is not
  selected. A selected value at an end of its grid extends the grid (x2 up, /2 down) with a
  sweep of that method alone on the selection seeds, and is re-selected, up to ``max_extend``
  extensions per method (:func:`compare_runs`); a value still at an edge then is reported with
  the cap named;
* the *best simple control* :math:`c^\star` (the baseline GD itself, the zero-knob member of every
  simple family, and the non-SAM methods: GD on the linear loss, i.e. the
  "unhinged" loss of van Rooyen, Menon and Williamson, NeurIPS 2015; GD on the shifted loss, a
  larger step, weight decay) is chosen on the selection seeds the same way; the SAM-family
  comparators (n-SAM, J-reg, J-reg-fixed) are compared separately;
* on the report seeds, every run stops at its validation-selected step and reports the test
  accuracy there (the headline), with the oracle peak and the final accuracy beside it;
  1-SAM minus :math:`c^\star` is a paired two one-sided test (:func:`linsam.stats.tost`) at a
  margin fixed in advance (``margin``, default :data:`DEFAULT_MARGIN`): better / equivalent /
  worse / inconclusive.
"""

from __future__ import annotations

import numpy as np

from linsam import selection
from linsam._src.engine.config import trains_with_rho
from linsam._src.rules import CONTROLS
from linsam.stats import mean_ci, tost

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

#: The simple controls: non-SAM explanations of 1-SAM's gain (the best of them is *the* control).
SIMPLE_CONTROLS = tuple(CONTROLS)
#: SAM-family comparators, reported beside the controls but never "the simpler explanation".
SAM_COMPARATORS = ("nsam", "jreg", "jreg_fixed")
#: Every method compared with 1-SAM. (L-SAM and J-SAM are 1-SAM's parts, not controls.)
CONTROL_METHODS = SAM_COMPARATORS + SIMPLE_CONTROLS
#: The equivalence margin of 1-SAM minus a control, fixed before any run (0.5 points of accuracy).
DEFAULT_MARGIN = 0.005
#: Grid extensions per method (each x2 up or /2 down) before a selected edge value is reported as capped.
DEFAULT_MAX_EXTEND = 3


def label(m: str) -> str:
    return LABELS.get(m, m)


def knob_text(config, m: str) -> str:
    """What rho means for method ``m`` of ``config`` (``"rho"`` for the SAM family)."""
    if m in KNOBS:
        return KNOBS[m].format(k=dict(config.knob_scale).get(m, 1.0))
    if m == "jreg_fixed":
        return "lam x rho" if config.lam_scale_by_rho else "-"
    return "-" if not trains_with_rho(config, m) else "rho"


def blowup_norm(config) -> float:
    """The weight-norm threshold above which a run counts as blown up (``meta.blowup_norm``; inf if unset)."""
    return float(config.meta_dict.get("blowup_norm", np.inf))


def tune_method(sel, m: str, extra=()) -> selection.Tuned:
    """``m``'s knob selected on the selection sweep ``sel`` (and its grid extensions ``extra``)
    by validation accuracy; a method whose training does not use rho has one value (no edge)."""
    if not trains_with_rho(sel.config, m):
        r = float(sel.axes["rho"][0])
        c, u = selection.curve_of(sel, m, blowup_norm(sel.config))
        return selection.Tuned(m, r, None, {r: c[r]}, {r: u[r]} if r in u else {}, len(sel.axes["seed"]))
    ext = [e for e in extra if m in list(e.axes["method"])]
    return selection.tune(sel, m, blowup_norm=blowup_norm(sel.config), extra=ext)


def extension_config(sel_config, m: str, rho: float):
    """The selection sweep of ``m`` alone at the grid extension ``rho`` (same seeds)."""
    meta = dict(sel_config.meta_dict, role="select_ext", extends=sel_config.name, method=m)
    return sel_config.replace(name=f"{sel_config.name}-x-{m}-{rho:g}", methods=(m,), rhos=(float(rho),),
                              meta=tuple(sorted(meta.items())))


def extend(run, sel, m: str, max_extend: int = DEFAULT_MAX_EXTEND) -> tuple[selection.Tuned, list, int]:
    """Tune ``m`` on ``sel``; while its value sits at a grid edge, run the extension sweep
    (:func:`extension_config`, through ``run(config) -> SweepResult``) and re-select, at most
    ``max_extend`` times. Returns ``(tuned, extension results, extensions run)``."""
    extra: list = []
    t = tune_method(sel, m)
    k = 0
    while t.edge is not None and k < max_extend:
        r = selection.next_rho(t.curve, t.edge)
        if r is None:
            break
        extra.append(run(extension_config(sel.config, m, r)))
        k += 1
        t = tune_method(sel, m, extra)
    return t, extra, k


def compare_runs(run, sel_config, rep_config, *, treatment: str = "one_sam", baseline: str = "gd", controls=None,
                 margin: float | None = None, max_extend: int = DEFAULT_MAX_EXTEND) -> dict:
    """The whole protocol through ``run(config) -> SweepResult`` (a cache or a runner): the
    selection sweep, the grid extensions, the report sweep on its grid plus every selected value,
    then :func:`compare`."""
    sel = run(sel_config)
    tuned, extra, extended = {}, [], {}
    for m in sel.axes["method"]:
        t, ext, k = extend(run, sel, m, max_extend)
        tuned[m], extended[m] = t, k
        extra += ext
    need = sorted(set(float(r) for r in rep_config.rhos) | {t.rho for t in tuned.values()})
    if need != sorted(float(r) for r in rep_config.rhos):
        rep_config = rep_config.replace(rhos=tuple(need))
    rep = run(rep_config)
    comp = compare(sel, rep, treatment=treatment, baseline=baseline, controls=controls, margin=margin, extra=extra,
                   extended=extended, max_extend=max_extend)
    comp["report_rhos"] = [float(r) for r in rep_config.rhos]  # the grid the report ran on (selected values added)
    return comp


def _stop(es, bad, mi, ri):
    """The three numbers (and unstable runs) of method ``mi`` at radius ``ri``, from the report
    sweep's :func:`linsam.selection.early_stop` ``es`` and :func:`~linsam.selection.unstable` ``bad``."""
    return dict(selected=es.selected[mi, ri].tolist(), oracle=es.oracle[mi, ri].tolist(),
                final=es.final[mi, ri].tolist(), step=float(np.median(es.step[mi, ri])),
                oracle_step=float(np.median(es.oracle_step[mi, ri])), unstable=int(bad[mi, ri].sum()))


def _tost_dict(diffs, margin) -> dict:
    e = tost(diffs, margin)
    return dict(verdict=e.verdict, mean=e.mean, lo=e.lo, hi=e.hi, lo90=e.lo90, hi90=e.hi90, p=e.p_tost,
                margin=e.margin, n=e.n)


def compare(sel, rep, *, treatment: str = "one_sam", baseline: str = "gd", controls=None, margin: float | None = None,
            extra=(), extended=None, max_extend: int = DEFAULT_MAX_EXTEND) -> dict:
    """The control comparison of one regime (module docstring) from the selection sweep ``sel``
    (with its grid extensions ``extra``) and the report sweep ``rep``; plain numbers out.

    Returns a dict: ``methods`` (name -> rho*, edge, capped, knob, selection curve, report-seed
    validation-selected / oracle / final accuracies at rho* and the validation-selected ones at
    the treatment's rho*, unstable runs), ``best_control`` (the best *simple* control, picked on
    the selection seeds), ``gain`` (the TOST of treatment minus it: verdict, mean, 95% and 90%
    intervals, margin, n), ``versus`` (the same against every other method), ``over_baseline``.
    """
    overlap = set(np.asarray(sel.axes["seed"]).tolist()) & set(np.asarray(rep.axes["seed"]).tolist())
    if overlap:
        raise ValueError(f"report sweep {rep.config.name} reuses selection seeds {sorted(overlap)[:5]}")
    methods = list(rep.axes["method"])
    for m in (treatment, baseline):
        if m not in methods or m not in sel.axes["method"]:
            raise ValueError(f"{rep.config.name}: the comparison needs method {m!r} in both sweeps")
    margin = float(rep.config.meta_dict.get("margin", DEFAULT_MARGIN) if margin is None else margin)
    extended = extended or {}
    if controls is None:  # GD itself is the zero-knob member of every simple family (decay 0, step x1, shift 0)
        controls = [baseline] + [m for m in methods if m in SIMPLE_CONTROLS]
    tuned = {m: tune_method(sel, m, extra) for m in methods}
    es = selection.early_stop(rep)  # once per report sweep, read by every method below
    bad = selection.unstable(rep, blowup_norm(rep.config))
    t_rho = tuned[treatment].rho
    out = {}
    for m in methods:
        t = tuned[m]
        try:
            ri = rep.index("rho", t.rho)
        except KeyError:
            raise ValueError(f"{rep.config.name}: {m}'s rho* = {t.rho:g} (selected on {sel.config.name}) is not on the "
                             f"report grid {list(rep.axes['rho'])}") from None
        mi = methods.index(m)
        rj = rep.index("rho", t_rho) if trains_with_rho(rep.config, m) else ri
        capped = t.edge is not None and extended.get(m, 0) >= max_extend
        out[m] = dict(rho=t.rho, edge=t.edge, capped=bool(capped), extended=int(extended.get(m, 0)),
                      knob=knob_text(rep.config, m), curve={f"{r:g}": v for r, v in t.curve.items()},
                      select_unstable={f"{r:g}": v for r, v in t.unstable.items()},
                      select_mean=float(t.curve[t.rho]), **_stop(es, bad, mi, ri),
                      selected_matched=es.selected[mi, rj].tolist())
    # a control whose selected setting blew up on a selection seed is a failure, not a candidate
    stable = [m for m in controls if not out[m]["select_unstable"].get(f"{out[m]['rho']:g}")]
    best = max(stable, key=lambda m: out[m]["select_mean"]) if stable else None
    tsel = np.asarray(out[treatment]["selected"])
    versus = {m: _tost_dict(tsel - np.asarray(out[m]["selected"]), margin) for m in methods if m != treatment}
    return dict(regime=rep.config.meta_dict.get("regime", rep.config.name),
                title=rep.config.meta_dict.get("title", rep.config.name), select=sel.config.name,
                report=rep.config.name, treatment=treatment, baseline=baseline, controls=list(controls),
                sam_comparators=[m for m in methods if m in SAM_COMPARATORS], methods=out, best_control=best,
                gain=versus.get(best) if best is not None else None, versus=versus,
                over_baseline=versus[baseline], treatment_rho=t_rho, margin=margin, max_extend=max_extend)


def verdict(comparison: dict) -> str:
    """The TOST verdict of the treatment minus the best simple control: ``"better"``,
    ``"equivalent"``, ``"worse"``, ``"inconclusive"`` (or ``"no control"``)."""
    g = comparison["gain"]
    return "no control" if g is None else g["verdict"]


def ci_text(values, pct: bool = True, signed: bool = False) -> str:
    """``mean [lo, hi]`` of a per-seed array (Student-t 95%), in percent(age points)."""
    c = mean_ci(np.asarray(values))
    f = 100.0 if pct else 1.0
    sign = "+" if signed else ""
    if not np.isfinite(c.lo):
        return f"{c.mean * f:{sign}.2f}"
    return f"{c.mean * f:{sign}.2f} [{c.lo * f:{sign}.2f}, {c.hi * f:{sign}.2f}]"


def gain_text(g: dict) -> str:
    """``+m [lo, hi] pp: verdict`` of a TOST dict (95% interval, points)."""
    return f"{100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}]"


def verdict_text(g: dict) -> str:
    """``verdict (margin 0.5 pp)``."""
    return f"{g['verdict']} (margin {100 * g['margin']:g} pp)"


def spread_text(values) -> str:
    """``mean ± sd`` over seeds, in percent."""
    v = 100 * np.asarray(values, float)
    v = v[np.isfinite(v)]
    return f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}" if v.size else "-"


def rho_text(r: dict) -> str:
    """rho* with where it sits on its grid."""
    if r["knob"] == "-":
        return "-"
    where = ""
    if r["edge"] and r["capped"]:
        where = f" (at grid edge: {r['edge']}; cap of {r['extended']} extensions reached)"
    elif r["edge"]:
        where = f" (at grid edge: {r['edge']}; not extended)"
    elif r["extended"]:
        where = f" (interior after {r['extended']} grid extension(s))"
    return f"{r['rho']:g}{where}"


def table_lines(comp: dict) -> list[str]:
    """Markdown: every method at its own rho* (validation-selected, oracle, final) and 1-SAM minus it."""
    t = comp["treatment"]
    lines = [
        f"Every method at its own knob, tuned on the selection seeds by validation accuracy; on the report seeds "
        f"each run stops at its validation-selected step. Test accuracy (%) there (the headline), the oracle "
        f"peak (labelled: selected on the test curve, not available to a user) and the final accuracy (mean ± sd "
        f"over seeds); {label(t)} minus each method is a paired TOST at a margin of {100 * comp['margin']:g} points "
        f"fixed in advance. Best simple control (non-SAM, picked on the selection seeds): "
        f"{label(comp['best_control']) if comp['best_control'] else '-'}.",
        "",
        "| method | knob at rho | rho* | validation-selected (%) | oracle peak (%) | final (%) | unstable runs | "
        f"{label(t)} minus it (points) | verdict |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for m, r in comp["methods"].items():
        kind = " (best simple control)" if m == comp["best_control"] else (
            " (SAM family)" if m in comp.get("sam_comparators", ()) else "")
        v = comp["versus"].get(m)
        diff = "-" if v is None else gain_text(v)
        ver = "-" if v is None else v["verdict"]
        lines.append(f"| {label(m)}{kind} | {r['knob']} | {rho_text(r)} | {ci_text(r['selected'])} | "
                     f"{ci_text(r['oracle'])} | {spread_text(r['final'])} | {r['unstable']} | {diff} | {ver} |")
    lines.append("")
    return lines


def curve_lines(comp: dict) -> list[str]:
    """Markdown: the selection curves (mean validation accuracy at the validation-selected step, %)."""
    rhos = sorted({float(r) for r in (k for m in comp["methods"].values() for k in m["curve"])})
    lines = ["Selection curves (selection seeds; mean validation accuracy at each run's validation-selected step, "
             "%; * = selected, u = a setting with unstable runs, excluded):", "",
             "| method | " + " | ".join(f"{r:g}" for r in rhos) + " |", "|---|" + "---:|" * len(rhos)]
    for m, r in comp["methods"].items():
        if r["knob"] == "-":
            continue
        cells = []
        for x in rhos:
            v = r["curve"].get(f"{x:g}")
            cell = "" if v is None else f"{100 * v:.2f}"
            if v is not None and np.isclose(x, r["rho"]):
                cell += "*"
            if f"{x:g}" in r["select_unstable"]:
                cell += " u"
            cells.append(cell)
        lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    return lines + [""]


def measure_regimes(ctx, cfg: dict) -> list[dict]:
    """:func:`compare_runs` for every regime of a check/figure's settings (sweeps through ``ctx``'s cache).

    Settings: ``regimes = {name = [select config, report config]}``; optional ``methods`` (a
    subset of the regime's methods, both runs), ``select`` / ``report`` (field replacements of
    the selection / report run, e.g. fewer seeds or steps in the test suite's tiny mode),
    ``margin`` (the TOST margin, default :data:`DEFAULT_MARGIN`), ``max_extend``.
    """
    regimes = cfg.get("regimes")
    if not isinstance(regimes, dict) or not regimes:
        raise ValueError("regimes must map a regime name to [select config, report config]")
    common = {"methods": tuple(cfg["methods"])} if cfg.get("methods") else {}
    out = []
    for name, refs in regimes.items():
        if not (isinstance(refs, (list, tuple)) and len(refs) == 2):
            raise ValueError(f"regimes.{name} must be [select config, report config], got {refs!r}")
        sel = ctx.sweep_config(refs[0], **common, **dict(cfg.get("select", {})))
        rep = ctx.sweep_config(refs[1], **common, **dict(cfg.get("report", {})))
        comp = compare_runs(lambda c: ctx.sweep(c), sel, rep, margin=cfg.get("margin"),
                            max_extend=int(cfg.get("max_extend", DEFAULT_MAX_EXTEND)))
        comp["regime"] = name
        out.append(comp)
    return out
