r"""D2. Lemma 3.1: the 1-SAM weight is increasing in the margin (C > 0), decreasing (C < 0).

The weight of D1, written as a function of the margin :math:`z` and the shift :math:`C`
(:math:`C = \rho\|x\|` for 1-SAM):

.. math::

    g(z) = \frac{\sigma(-z + C)}{\sigma(-z)} = \frac{1 + e^{z}}{1 + e^{z - C}},\qquad
    g'(z) = g(z)\,\bigl[\sigma(z) - \sigma(z - C)\bigr]
          = \frac{e^{z}\,(1 - e^{-C})}{(1 + e^{z - C})^2}.

For :math:`C > 0` every factor of :math:`g'` is positive, so :math:`g` is strictly increasing,
from :math:`\lim_{z\to-\infty} g = 1` to :math:`\lim_{z\to+\infty} g = e^{C}`, and
:math:`1 < g(z) < e^{C}`. For :math:`C < 0` the factor :math:`1 - e^{-C}` is negative:
:math:`g` is strictly decreasing from 1 to :math:`e^{C} < 1`. :math:`C = 0` gives :math:`g \equiv 1`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations._core import (
    Step, lambdify, latex, prove_equal, prove_limit, prove_sign_by_factors, provably_positive,
    render_claims, sigmoid, timed_result,
)

NAME = "D2"
SLUG = "lemma31"
TITLE = "Lemma 3.1: the 1-SAM weight increases with the margin (C > 0)"


@functools.cache
def derive() -> SimpleNamespace:
    z = sp.Symbol("z", real=True)
    C = sp.Symbol("C", positive=True)  # C = rho ||x|| > 0 (rho > 0, x != 0)
    D = sp.Symbol("D", positive=True)  # C = -D < 0 for the decreasing case
    c = sp.Symbol("C", real=True)      # unsigned C, for the generic identities
    g_of = lambda C_: sigmoid(-z + C_) / sigmoid(-z)  # noqa: E731  the D1 weight as a function of (z, C)
    g = g_of(c)
    g_exp = g.rewrite(sp.exp)
    dg = sp.diff(g, z)
    dg_exp = sp.diff(g_exp, z)
    factors_pos = [sp.exp(z), 1 - sp.exp(-C), (1 + sp.exp(z - C)) ** -2]
    factors_neg = [sp.exp(z), 1 - sp.exp(D), (1 + sp.exp(z + D)) ** -2]
    return SimpleNamespace(
        z=z, C=C, D=D, c=c, g_of=g_of, g=g, g_exp=g_exp, dg=dg, dg_exp=dg_exp,
        g_closed=(1 + sp.exp(z)) / (1 + sp.exp(z - c)),
        dg_closed=sp.exp(z) * (1 - sp.exp(-c)) / (1 + sp.exp(z - c)) ** 2,
        dg_sigmoid=g * (sigmoid(z) - sigmoid(z - c)),
        factors_pos=factors_pos, factors_neg=factors_neg,
    )


def steps() -> list[Step]:
    s = derive()
    z, C, D, c = s.z, s.C, s.D, s.c
    gC = s.g_exp.xreplace({c: C})
    gD = s.g_exp.xreplace({c: -D})
    return [
        Step(r"$g(z) = \sigma(-z+C)/\sigma(-z) = \dfrac{1+e^{z}}{1+e^{z-C}}$.",
             r"rewrite $\sigma$ by its definition; difference simplifies to 0",
             lambda: prove_equal(s.g_exp, s.g_closed)),
        Step(r"$g'(z) = g(z)\,[\sigma(z) - \sigma(z - C)]$ (log-derivative form).",
             r"`sympy.diff` with $\sigma' = \sigma(u)\sigma(-u)$, difference rewritten in $e^{z}$ simplifies to 0",
             lambda: prove_equal(s.dg.rewrite(sp.exp), s.dg_sigmoid.rewrite(sp.exp))),
        Step(r"$g'(z) = \dfrac{e^{z}\,(1-e^{-C})}{(1+e^{z-C})^2}$ (closed form).",
             r"`sympy.diff` of the exponential form; difference simplifies to 0",
             lambda: prove_equal(s.dg_exp, s.dg_closed)),
        Step(r"For $C > 0$: $g'(z) = e^{z}\cdot(1-e^{-C})\cdot(1+e^{z-C})^{-2}$, a product of three "
             r"positive factors, so $g$ is strictly increasing in $z$.",
             r"sign argument: the product equals $g'$ (simplifies to 0); $e^{z} > 0$ and "
             r"$(1+e^{z-C})^{-2} > 0$ by SymPy's assumptions; $1 - e^{-C} > 0$ by the monotone lemma "
             r"(0 at $C = 0$, derivative $e^{-C} > 0$)",
             lambda: prove_sign_by_factors(sp.diff(gC, z), s.factors_pos, +1)),
        Step(r"$\lim_{z\to-\infty} g(z) = 1$ (high-loss points: no up-weighting).",
             r"`sympy.limit`", lambda: prove_limit(gC, z, -sp.oo, 1)),
        Step(r"$\lim_{z\to+\infty} g(z) = e^{C}$ (confident points: the largest weight).",
             r"`sympy.limit`", lambda: prove_limit(gC, z, sp.oo, sp.exp(C))),
        Step(r"For $C > 0$ and every $z$: $g(z) - 1 = \dfrac{e^{z}(1-e^{-C})}{1+e^{z-C}} > 0$ and "
             r"$e^{C} - g(z) = \dfrac{e^{C}-1}{1+e^{z-C}} > 0$, so $1 < g(z) < e^{C}$.",
             r"each difference equals the stated product (simplifies to 0), every factor provably positive",
             lambda: prove_sign_by_factors(gC - 1, [sp.exp(z), 1 - sp.exp(-C), 1 / (1 + sp.exp(z - C))])
             and prove_sign_by_factors(sp.exp(C) - gC, [sp.exp(C) - 1, 1 / (1 + sp.exp(z - C))])),
        Step(r"For $C = -D < 0$: $g'(z) = e^{z}\cdot(1-e^{D})\cdot(1+e^{z+D})^{-2}$ with exactly one "
             r"negative factor, so $g$ is strictly decreasing: a negative shift down-weights, most "
             r"strongly the confident (large-margin) points.",
             r"sign argument: product equals $g'$; $1 - e^{D} < 0$ by the monotone lemma, the rest positive",
             lambda: prove_sign_by_factors(sp.diff(gD, z), s.factors_neg, -1)),
        Step(r"For $C = -D < 0$: $\lim_{z\to-\infty} g = 1$, $\lim_{z\to+\infty} g = e^{-D} < 1$.",
             r"`sympy.limit`; $1 - e^{-D} > 0$ by the monotone lemma",
             lambda: prove_limit(gD, z, -sp.oo, 1) and prove_limit(gD, z, sp.oo, sp.exp(-D))
             and provably_positive(1 - sp.exp(-D))),
        Step(r"$C = 0$: $g \equiv 1$.", r"substitution, simplifies to 0",
             lambda: prove_equal(s.g_exp.xreplace({c: 0}), 1)),
    ]


def check():
    """Run every proof of D2; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    s = derive()
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** By D1, 1-SAM multiplies the SGD gradient of an example with margin $z$ by "
        r"$g(z) = \sigma(-z+C)/\sigma(-z)$ with $C = \rho\|x\| > 0$. Lemma 3.1 of the paper: for $C > 0$, "
        r"$g$ is strictly increasing in $z$, from 1 to $e^{C}$.",
        "",
        "## Derivation",
        "",
        r"1. With $\sigma(u) = 1/(1+e^{-u})$:",
        "",
        "$$",
        r"g(z) = \frac{1 + e^{z}}{1 + e^{z - C}}.",
        "$$",
        "",
        r"2. Differentiating ($\sigma' = \sigma(u)\sigma(-u)$, so $(\log\sigma(-u))' = -\sigma(u)$):",
        "",
        "$$",
        r"\frac{d}{dz}\log g = \sigma(z) - \sigma(z - C), \qquad "
        r"g'(z) = " + latex(s.dg_closed) + ".",
        "$$",
        "",
        r"3. **Sign.** For $C > 0$: $e^{z} > 0$, $(1+e^{z-C})^{-2} > 0$, and $1 - e^{-C} > 0$ "
        r"(it vanishes at $C = 0$ and its derivative $e^{-C}$ is positive). Hence $g' > 0$: "
        r"$g$ is strictly increasing.",
        r"4. **Limits.** Dividing numerator and denominator by $e^{z}$: $g \to 1$ as $z \to -\infty$ "
        r"and $g \to e^{C}$ as $z \to +\infty$; with monotonicity, $1 < g(z) < e^{C}$.",
        r"5. **Meaning.** A low-loss (large-margin) example is up-weighted more than a high-loss "
        r"one: $g(z_1)/g(z_2) > 1$ whenever $z_1 > z_2$. With label noise, clean points are fit "
        r"first and gain margin, so 1-SAM keeps their gradients larger relative to the noisy points "
        r"than SGD does. The gain is bounded by $e^{\rho\|x\|}$.",
        r"6. **$C < 0$.** Then $1 - e^{-C} < 0$: $g$ is strictly decreasing from 1 to $e^{C} < 1$, "
        r"every example is down-weighted, the confident ones most. (1-SAM itself always has "
        r"$C = \rho\|x\| \ge 0$; a negative shift arises for n-SAM, see D3, for examples whose "
        r"gradient opposes the batch gradient.)",
        "",
        render_claims(steps()),
        "",
        r"**Scope.** A statement about one real variable $z$ and a constant $C$: no dimension involved.",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    return lambdify((s.z, s.c), s.g), lambdify((s.z, s.c), s.dg_closed)


def weight(z, C):
    r""":math:`g(z) = \sigma(-z+C)/\sigma(-z)`, lambdified."""
    return _numeric()[0](np.asarray(z, float), np.asarray(C, float))


def weight_derivative(z, C):
    r""":math:`g'(z) = e^{z}(1 - e^{-C})/(1 + e^{z-C})^2`, lambdified from the proved closed form."""
    return _numeric()[1](np.asarray(z, float), np.asarray(C, float))
