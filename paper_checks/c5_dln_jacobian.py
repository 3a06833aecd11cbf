r"""C5: at 1-SAM's own radius, J-SAM keeps most of 1-SAM's gain over SGD, L-SAM less.

Setting: per model (``sweeps = {label = sweep}``; the DLN :math:`f = \langle v, Wx\rangle`,
and any other model a sweep config names, one row each) trained on noisy labels by SGD
(``gd``), 1-SAM, L-SAM (logit scale at the perturbed point, Jacobian at w) and J-SAM (logit
scale at w, Jacobian at the perturbed point), same data and initialisation per seed.

Radius: 1-SAM's :math:`\rho^\star`, chosen on *selection* seeds (the sweep's seeds shifted by
``select_offset``, disjoint: checked) by validation accuracy (:func:`linsam.selection.tune`: the
highest mean validation accuracy at each run's validation-selected step; a value at a grid edge
extends the grid, :func:`reproduction.controls.extend`); J-SAM and L-SAM are evaluated at that
same radius (matched radius: "L-SAM less" is a statement at a common rho, 1-SAM's best one).

Statistic, on the report seeds: the test accuracy at each run's validation-selected step (the
headline, ``statistic = "selected"``), also the oracle peak and the end of training. Per seed the
gain of each method over SGD; the fraction of 1-SAM's gain a method keeps is the ratio of the
seed means,

.. math::  F_m = \overline{\mathrm{acc}_m - \mathrm{acc}_{\mathrm{SGD}}} \big/
                 \overline{\mathrm{acc}_{\mathrm{1SAM}} - \mathrm{acc}_{\mathrm{SGD}}},

with a paired percentile-bootstrap 95% CI over seeds, also for :math:`F_J - F_L`.

Verdict *per model*: **undefined (no gain)** where 1-SAM's own gain has a t-CI containing 0 (the
fractions are then ratios over noise); otherwise **holds** iff :math:`F_J` > ``most`` (CI above
it, default 1/2) and :math:`F_J - F_L > 0` (CI above 0), else **fails**. The claim holds iff at
least one model has a defined verdict and every defined one holds; the measured line states
each model's verdict.

The paper's evidence for this claim is from deep networks (CIFAR-10 ResNet-18); the DLN is
the model of its Proposition 4.1, so this is a transfer to the DLN and is not must-hold.
"""

from __future__ import annotations

import numpy as np

from linsam.stats import bootstrap_ci, mean_ci, ratio_of_means, ratio_of_means_ci
from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec, fmt_ci, fmt_pct_ci
from linsam import selection
from reproduction import controls as ctl_cmp
from reproduction._sweepstats import regime_text

SPEC = ClaimSpec(
    id="C5",
    claim="In the DLN, at 1-SAM's rho*, J-SAM keeps most of 1-SAM's gain over SGD, and L-SAM less.",
    where="Sec. 4 (Jacobian vs logit-scale effect; paper's evidence: CIFAR-10, Table/Fig. of SAM variants)",
    expected="at 1-SAM's rho*, fraction of 1-SAM's validation-selected test-accuracy gain: J-SAM > 1/2 and "
             "J-SAM > L-SAM (95% bootstrap CIs), per model where 1-SAM gains",
    must_hold=False,
)


#: The statistics of a run: the validation-selected test accuracy (headline), the oracle peak, the final.
STATISTICS = ("selected", "oracle", "final")


def _statistic(stat: str) -> str:
    stat = {"peak": "oracle"}.get(stat, stat)  # the layout before issue 19 called the oracle peak "peak"
    if stat not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)}, got {stat!r}")
    return stat


def method_gains(res, rho: float, statistic: str) -> dict:
    """Per-seed accuracy of every method and its gain over ``gd`` at ``rho``: ``{method: {...}}``
    (``statistic``: ``"selected"``, ``"oracle"`` or ``"final"``)."""
    stat = _statistic(statistic)
    es = selection.early_stop(res)
    acc = getattr(es, stat)
    step = {"selected": es.step, "oracle": es.oracle_step, "final": None}[stat]
    j = res.index("rho", rho)
    base = acc[res.index("method", "gd"), j]
    out = {}
    for i, meth in enumerate(res.axes["method"]):
        out[meth] = dict(acc=acc[i, j].tolist(), gain=(acc[i, j] - base).tolist(),
                         step=None if step is None else step[i, j].tolist())
    return out


def measure_model(ctx, ref: str, cfg: dict, label: str | None = None) -> dict:
    """One model's measurement: selection and report sweeps of ``ref``, gains at 1-SAM's rho*.

    ``select_sweeps = {label = config}`` names a model's selection sweep explicitly (the configs
    are then used as they are, without the ``methods``/``rhos`` replacements, so that C10's rows
    of the same model read the very same sweeps); otherwise the selection sweep is the report
    config on ``select_seeds`` seeds shifted by ``select_offset``."""
    chosen = (cfg.get("select_sweeps") or {}).get(label)
    if chosen is not None:
        base = ctx.sweep_config(ref)
        sel = ctx.sweep(ctx.sweep_config(chosen))
    else:
        replace = {}
        if cfg.get("methods"):
            replace["methods"] = tuple(cfg["methods"])
        if cfg.get("rhos"):
            replace["rhos"] = tuple(float(r) for r in cfg["rhos"])
        base = ctx.sweep_config(ref, **replace)
        n_sel = int(cfg.get("select_seeds", base.num_seeds))
        offset = int(base.seed_offset) + int(cfg.get("select_offset", 500))
        sel = ctx.sweep(base.replace(num_seeds=n_sel, seed_offset=offset, name=f"{base.name}_c5select"))
    tuned, _, extended = ctl_cmp.extend(lambda c: ctx.sweep(c), sel, "one_sam",
                                        int(cfg.get("max_extend", ctl_cmp.DEFAULT_MAX_EXTEND)))
    rho = tuned.rho
    if rho not in [float(r) for r in base.rhos]:
        base = base.replace(rhos=tuple(sorted(set(base.rhos) | {rho})))
    res = ctx.sweep(base)
    overlap = set(np.asarray(sel.axes["seed"]).tolist()) & set(np.asarray(res.axes["seed"]).tolist())
    if overlap:
        raise ValueError(f"C5: selection seeds overlap the report seeds {sorted(overlap)[:5]}: raise select_offset")
    grid = sorted(float(r) for r in tuned.curve)
    return dict(rho=rho, rho_grid=grid, rho_edge=tuned.edge, extended=extended,
                select_seeds=[int(s) for s in sel.axes["seed"]],
                **{stat: method_gains(res, rho, stat) for stat in STATISTICS},
                regime=regime_text(res, f"1-SAM's rho* = {rho:g} selected on validation accuracy of seeds "
                                   f"{int(sel.axes['seed'][0])}-{int(sel.axes['seed'][-1])} from {grid}"))


def measure(ctx, cfg: dict) -> dict:
    sweeps = cfg.get("sweeps")
    if sweeps is None and "sweep" in cfg:  # a user file with the single-sweep layout
        sweeps = {"dln": cfg["sweep"]}
    if not isinstance(sweeps, dict) or not sweeps:
        raise ValueError("C5 needs sweeps = {model label = sweep config}, e.g. {dln = \"reproduce_dln\"}")
    models = {label: measure_model(ctx, ref, cfg, label) for label, ref in sweeps.items()}
    stat = _statistic(cfg.get("statistic", "selected"))
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


def _model_verdict(f: dict, most: float) -> tuple[str, list[str]]:
    """``(verdict, reasons)``: ``"undefined (no gain)"``, ``"holds"`` or ``"fails"`` for one model."""
    g = f["one_sam_gain"]
    if not (np.isfinite(g.lo) and (g.lo > 0 or g.hi < 0)):
        return "undefined (no gain)", ["1-SAM's own gain CI contains 0: the fractions are ratios over noise"]
    why = []
    if not g.lo > 0:
        why.append("1-SAM's own gain is negative")
    if not f["jsam"].lo > most:
        why.append(f"J-SAM's fraction is not established above {most:g}")
    if not f["jsam_minus_lsam"].lo > 0:
        why.append("J-SAM > L-SAM is not established" + (" (point estimate agrees, CI too wide)"
                                                         if f["jsam_minus_lsam"].estimate > 0 else ""))
    return ("fails" if why else "holds"), why


LABEL = {"selected": "validation-selected", "oracle": "oracle peak", "final": "end of training"}


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    most = float(cfg.get("most", 0.5))
    stat = _statistic(m["statistic"])
    others = [s for s in STATISTICS if s != stat]
    if "models" not in m:  # a single-model measurement (the layout before issue 11)
        m = dict(m, models={"dln": dict(m)})
    rows, parts, verdicts, first = {}, [], {}, None
    for name, mm in m["models"].items():
        mm = dict(mm)
        if "peak" in mm and "oracle" not in mm:  # the layout before issue 19
            mm["oracle"] = mm["peak"]
        f = fractions(mm[stat])
        rows[name] = {s: fractions(mm[s]) for s in [stat, *others] if s in mm}
        v, why = _model_verdict(f, most)
        verdicts[name] = v
        first = first or f
        edge = f" (at grid edge: {mm['rho_edge']})" if mm.get("rho_edge") else ""
        if len(mm.get("rho_grid", [])) == 1:
            edge = " (a one-radius grid: rho* by construction)"
        text = (f"{name}: **{v}**, at 1-SAM's rho* = {mm['rho']:g}{edge}: {LABEL[stat]}: {_text(f)}"
                + "".join(f"; {LABEL[s]}: {_text(rows[name][s])}" for s in others if s in rows[name]))
        if why:
            text += " (" + "; ".join(why) + ")"
        parts.append(text)
    defined = [v for v in verdicts.values() if v != "undefined (no gain)"]
    ok = bool(defined) and all(v == "holds" for v in defined)
    overall = ", ".join(f"{k} {v}" for k, v in verdicts.items())
    return ClaimResult.from_spec(
        SPEC, regime=m["regime"], measured=f"per model: {overall}. " + ". ".join(parts),
        estimate=first["jsam"].estimate, ci=(first["jsam"].lo, first["jsam"].hi), verdict=HOLDS if ok else FAILS,
        details=dict(m, fractions=rows, verdicts=verdicts),
        expected=f"at 1-SAM's rho*, fraction of 1-SAM's {LABEL[stat]} gain: J-SAM > {most:g} and J-SAM > L-SAM "
                 "(95% bootstrap CIs), in every model where 1-SAM's gain is established",
    )
