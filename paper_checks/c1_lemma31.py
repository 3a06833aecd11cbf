r"""C1: Lemma 3.1 -- the 1-SAM weight of logistic regression increases with the margin.

For :math:`f = \langle w, x\rangle`, 1-SAM multiplies example i's gradient by
:math:`g(z_i) = \sigma(-z_i + C)/\sigma(-z_i)`, :math:`C = \rho\|x_i\|` (derivation D1);
Lemma 3.1: for :math:`C > 0`, g is strictly increasing in z, from 1 to :math:`e^C`
(derivation D2).

Measured three ways:

1. symbolic: the SymPy proofs of D1 (the reweighting identity) and D2 (monotonicity, limits,
   bounds) all go through (:func:`derivations.check_all`);
2. numeric sweep (float64): :func:`linsam.logreg.one_sam_weight` on a grid of margins and
   shifts C is non-decreasing in z (no step down beyond rounding, ``mono_tol``), stays in
   :math:`[1, e^C]`, and reaches both limits;
3. autodiff: the weight measured by ``jax.grad`` at :math:`w` and at :math:`w + \epsilon_i`
   (:func:`reproduction.measure.one_sam_weights_autodiff`) equals the closed form
   :func:`linsam.logreg.per_example_weights` and the function lambdified from D2's proved
   expression (relative error <= ``tol``).
"""

from __future__ import annotations

import math

import numpy as np

from reproduction._result import FAILS, HOLDS, ClaimResult, ClaimSpec

SPEC = ClaimSpec(
    id="C1",
    claim="Lemma 3.1: the 1-SAM weight sigma(-z+C)/sigma(-z) is strictly increasing in the margin z "
          "(C = rho||x|| > 0), from 1 to e^C.",
    where="Sec. 3, Lemma 3.1 (derivations D1, D2)",
    expected="symbolic proofs hold; numeric weights monotone in z within [1, e^C]; autodiff = closed form",
    must_hold=True,
)


def numeric_sweep(cfg: dict) -> dict:
    """Lemma 3.1 on a grid, float64 (pure numbers out)."""
    import jax
    import jax.numpy as jnp

    from linsam import logreg

    z_min, z_max, num = float(cfg.get("z_min", -40.0)), float(cfg.get("z_max", 60.0)), int(cfg.get("num_z", 4001))
    Cs = [float(c) for c in cfg.get("C_values", [0.1, 0.5, 1.0, 2.0, 5.0, 10.0])]
    with jax.enable_x64(True):
        z = jnp.linspace(z_min, z_max, num, dtype=jnp.float64)
        worst_step, worst_low, worst_high, lim_lo, lim_hi = 0.0, 0.0, 0.0, 0.0, 0.0
        for C in Cs:
            g = np.asarray(logreg.one_sam_weight(z, jnp.float64(C)))
            steps = np.diff(g) / g[:-1]
            worst_step = min(worst_step, float(steps.min()))  # most negative relative step
            worst_low = min(worst_low, float(g.min() - 1.0))  # g >= 1
            worst_high = max(worst_high, float(g.max() / math.exp(C) - 1.0))  # g <= e^C
            lim_lo = max(lim_lo, abs(float(g[0]) - 1.0))
            lim_hi = max(lim_hi, abs(float(g[-1]) / math.exp(C) - 1.0))
    return dict(C_values=Cs, z_range=[z_min, z_max], num_z=num, worst_relative_step=worst_step,
                below_one=worst_low, above_eC=worst_high, limit_minus_inf_err=lim_lo, limit_plus_inf_err=lim_hi)


def autodiff_agreement(cfg: dict) -> dict:
    """Autodiff-measured weights vs the closed form and D2's lambdified expression (float64)."""
    import jax
    import jax.numpy as jnp

    from derivations import d2_lemma31
    from linsam import logreg
    from reproduction.measure import one_sam_weights_autodiff

    n, d = int(cfg.get("n", 64)), int(cfg.get("d", 5))
    rhos = [float(r) for r in cfg.get("rhos", [0.1, 1.0, 3.0])]
    worst_closed, worst_sym = 0.0, 0.0
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    with jax.enable_x64(True):
        X = jnp.asarray(rng.standard_normal((n, d)))  # norms vary: C = rho ||x_i|| differs per example
        t = jnp.asarray(np.where(rng.random(n) < 0.5, 1.0, -1.0))
        w = jnp.asarray(2.0 * rng.standard_normal(d))
        z = np.asarray(logreg.margins(w, X, t))
        C_base = np.asarray(jnp.linalg.norm(X, axis=1))
        for rho in rhos:
            meas = np.asarray(one_sam_weights_autodiff(logreg.MODEL, w, X, t, rho))
            closed = np.asarray(logreg.per_example_weights(w, X, t, rho))
            sym = np.asarray(d2_lemma31.weight(z, rho * C_base))
            worst_closed = max(worst_closed, float(np.max(np.abs(meas - closed) / np.abs(closed))))
            worst_sym = max(worst_sym, float(np.max(np.abs(sym - closed) / np.abs(closed))))
    return dict(n=n, d=d, rhos=rhos, autodiff_vs_closed=worst_closed, sympy_vs_closed=worst_sym)


def measure(ctx, cfg: dict) -> dict:
    ders = {r["name"]: r for r in ctx.derivations()}
    symbolic = {}
    for name in cfg.get("derivations", ["D1", "D2"]):
        r = ders.get(name)
        symbolic[name] = dict(holds=bool(r and r["holds"]), claims=len(r["claims"]) if r else 0,
                              proved=sum(c["holds"] for c in r["claims"]) if r else 0,
                              failed=[c["statement"] for c in r["claims"] if not c["holds"]] if r else ["missing"])
    return dict(symbolic=symbolic, numeric=numeric_sweep(cfg), autodiff=autodiff_agreement(cfg))


def evaluate(m: dict, cfg: dict) -> ClaimResult:
    """Pure: holds iff every proof went through and every numeric test passed."""
    tol = float(cfg.get("tol", 1e-10))
    mono_tol = float(cfg.get("mono_tol", 1e-13))
    sym, num, ad = m["symbolic"], m["numeric"], m["autodiff"]
    sym_ok = bool(sym) and all(v["holds"] for v in sym.values())
    num_ok = (num["worst_relative_step"] >= -mono_tol and num["below_one"] >= -mono_tol
              and num["above_eC"] <= mono_tol and num["limit_minus_inf_err"] <= 1e-8 and num["limit_plus_inf_err"] <= 1e-8)
    ad_ok = ad["autodiff_vs_closed"] <= tol and ad["sympy_vs_closed"] <= tol
    proofs = ", ".join(f"{k} {v['proved']}/{v['claims']} proved" for k, v in sym.items())
    measured = (f"{proofs}; numeric: worst relative step {num['worst_relative_step']:.1e} over "
                f"{num['num_z']} margins x {len(num['C_values'])} C, range [1, e^C] "
                f"{'kept' if num['below_one'] >= -mono_tol and num['above_eC'] <= mono_tol else 'VIOLATED'}; "
                f"autodiff vs closed form {ad['autodiff_vs_closed']:.1e}, SymPy vs closed form {ad['sympy_vs_closed']:.1e}")
    failed = [f"{k}: {s}" for k, v in sym.items() for s in v["failed"]]
    if failed:
        measured += "; NOT PROVED: " + "; ".join(failed[:3])
    regime = (f"z in [{num['z_range'][0]:g}, {num['z_range'][1]:g}], C in {num['C_values']}; autodiff on n={ad['n']}, "
              f"d={ad['d']}, rho {ad['rhos']}; float64, tol {tol:g}")
    return ClaimResult.from_spec(SPEC, regime=regime, measured=measured, estimate=num["worst_relative_step"], ci=None,
                                 verdict=HOLDS if (sym_ok and num_ok and ad_ok) else FAILS, details=m)
