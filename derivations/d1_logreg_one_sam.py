r"""D1. Logistic regression, 1-SAM: the per-example perturbation and the exact reweighting.

Model :math:`f(w, x) = \langle w, x\rangle`, loss :math:`\ell(w) = -\log\sigma(t f(w, x))`,
:math:`t\in\{-1,+1\}`, margin :math:`z = t\langle w, x\rangle`. From these definitions alone:

.. math::

    \nabla\ell = -t\,\sigma(-z)\,x,\qquad \|\nabla\ell\| = \sigma(-z)\|x\|,\qquad
    \epsilon = \rho\frac{\nabla\ell}{\|\nabla\ell\|} = -\rho\, t\,\frac{x}{\|x\|},

.. math::

    z(w + \epsilon) = z - \rho\|x\|,\qquad
    \nabla\ell(w + \epsilon) = \frac{\sigma(-z + \rho\|x\|)}{\sigma(-z)}\,\nabla\ell(w).

Proved in coordinates for :math:`d = 3` with :math:`t = \pm 1` as two cases; every step uses
only :math:`\langle x, x\rangle = \|x\|^2` and linearity, so it holds for every :math:`d`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations._core import (
    Step, dot, label_cases, lambdify, latex, norm, prove_equal, render_claims, sigmoid,
    sigmoid_lemmas, symbols_vec, timed_result,
)

NAME = "D1"
SLUG = "logreg_one_sam"
TITLE = "Logistic regression, 1-SAM: per-example perturbation and exact reweighting"
DIM = 3


@functools.cache
def derive() -> SimpleNamespace:
    """Build every expression from f, the loss and eps = rho grad/||grad||."""
    w = symbols_vec("w", DIM)
    x = symbols_vec("x", DIM)
    t = sp.Symbol("t", real=True, nonzero=True)
    rho = sp.Symbol("rho", positive=True)
    f = dot(w, x)
    loss = -sp.log(sigmoid(t * f))
    grad = [sp.diff(loss, wj) for wj in w]
    grad_norm = norm(grad)
    eps = [rho * g / grad_norm for g in grad]
    at_eps = dict(zip(w, [wj + ej for wj, ej in zip(w, eps)]))  # simultaneous substitution w -> w + eps
    grad_at_eps = [sp.diff(loss, wj).xreplace(at_eps) for wj in w]
    margin_at_eps = (t * f).xreplace(at_eps)
    z = t * f
    xnorm = sp.sqrt(dot(x, x))
    weight = sigmoid(-z + rho * xnorm) / sigmoid(-z)
    zs, C = sp.Symbol("z", real=True), sp.Symbol("C", real=True)
    return SimpleNamespace(
        w=w, x=x, t=t, rho=rho, f=f, loss=loss, grad=grad, grad_norm=grad_norm, eps=eps,
        grad_at_eps=grad_at_eps, margin_at_eps=margin_at_eps, z=z, xnorm=xnorm, weight=weight,
        cases=label_cases(t), z_sym=zs, C_sym=C, weight_zC=sigmoid(-zs + C) / sigmoid(-zs),
    )


def steps() -> list[Step]:
    s = derive()
    t, rho, z, xn = s.t, s.rho, s.z, s.xnorm
    lem = sigmoid_lemmas()
    return [
        Step(r"Sigmoid facts used throughout: " + "; ".join(st for st, _ in lem) + ".",
             r"from $\sigma(u) = 1/(1+e^{-u})$: the differences, rewritten in $e^{u}$, simplify to 0",
             lambda: all(ok for _, ok in lem)),
        Step(r"$\nabla_w \ell = -t\,\sigma(-z)\,x$ with $z = t\langle w, x\rangle$.",
             r"`sympy.diff` of $-\log\sigma(t\langle w,x\rangle)$; difference simplifies to 0",
             lambda: prove_equal(s.grad, [-t * sigmoid(-z) * xj for xj in s.x])),
        Step(r"$\|\nabla_w \ell\| = \sigma(-z)\,\|x\|$.",
             r"difference simplifies to 0 for $t = +1$ and $t = -1$",
             lambda: prove_equal(s.grad_norm, sigmoid(-z) * xn, s.cases)),
        Step(r"$\epsilon = \rho\,\nabla\ell/\|\nabla\ell\| = -\rho\,t\,x/\|x\|$ (independent of $w$).",
             r"difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(s.eps, [-rho * t * xj / xn for xj in s.x], s.cases)),
        Step(r"Margin at the perturbed point: $t\,f(w+\epsilon, x) = z - \rho\|x\|$.",
             r"difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(s.margin_at_eps, z - rho * xn, s.cases)),
        Step(r"Exact reweighting: $\nabla\ell(w+\epsilon) = \dfrac{\sigma(-z+\rho\|x\|)}{\sigma(-z)}\,\nabla\ell(w)$.",
             r"$\nabla\ell$ differentiated, evaluated at $w + \epsilon$; difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(s.grad_at_eps, [s.weight * g for g in s.grad], s.cases)),
        Step(r"At $\rho = 0$ the weight is 1 (1-SAM reduces to SGD).",
             r"substitution, simplifies to 0",
             lambda: prove_equal(s.weight.subs(rho, 0), 1)),
    ]


def check():
    """Run every proof of D1; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    s = derive()
    g1 = sp.factor_terms(s.grad_at_eps[0].xreplace({s.t: 1}))
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** Linear logit $f(w,x) = \langle w, x\rangle$, label $t \in \{-1,+1\}$, loss "
        r"$\ell(w) = -\log\sigma(t f(w,x)) = \mathrm{softplus}(-z)$ with margin $z = t\langle w, x\rangle$, "
        r"1-SAM perturbation $\epsilon = \rho\,\nabla\ell/\|\nabla\ell\|$ (one per example).",
        "",
        "## Derivation",
        "",
        r"1. Chain rule with $\sigma'(u) = \sigma(u)\sigma(-u)$: "
        r"$\nabla\ell = -t\,\dfrac{\sigma(tf)\sigma(-tf)}{\sigma(tf)}\,x = -t\,\sigma(-z)\,x$.",
        r"2. $\sigma > 0$ and $|t| = 1$, so $\|\nabla\ell\| = \sigma(-z)\|x\|$ and "
        r"$\epsilon = -\rho\, t\, x/\|x\|$: the perturbation points against the label, with the same "
        r"length $\rho$ for every example, whatever its loss.",
        r"3. The margin moves by $t\langle\epsilon, x\rangle = -\rho\, t^2 \|x\|^2/\|x\| = -\rho\|x\|$.",
        r"4. The Jacobian $\nabla_w f = x$ does not depend on $w$, so only the logit scale changes:",
        "",
        "$$",
        r"\nabla\ell(w+\epsilon) = -t\,\sigma(-z + \rho\|x\|)\,x = "
        r"\underbrace{\frac{\sigma(-z+\rho\|x\|)}{\sigma(-z)}}_{\text{weight } g(z),\ C = \rho\|x\|}\,\nabla\ell(w).",
        "$$",
        "",
        r"1-SAM on logistic regression is SGD with the per-example weight of Lemma 3.1 (see D2): "
        r"$g > 1$ for every example, and larger for larger margin.",
        "",
        f"SymPy's own form of the first coordinate of $\\nabla\\ell(w+\\epsilon)$ at $t=1$, $d = {DIM}$:",
        "",
        "$$",
        latex(g1),
        "$$",
        "",
        render_claims(steps()),
        "",
        f"**Dimension.** Proved in coordinates with $d = {DIM}$. Every step uses only linearity of "
        r"$f$ in $w$ and $\langle x, x\rangle = \|x\|^2$, which hold for every $d$; the numeric "
        r"cross-check (`tests/test_derivations.py`) compares with `linsam.logreg.one_sam` at random points.",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    return (
        lambdify((s.z_sym, s.C_sym), s.weight_zC),
        lambdify((s.w, s.x, s.t, s.rho), s.grad_at_eps),
    )


def one_sam_weight(z, C):
    r"""Lemma 3.1 weight :math:`\sigma(-z + C)/\sigma(-z)`, lambdified from the SymPy expression."""
    return _numeric()[0](np.asarray(z, float), np.asarray(C, float))


def one_sam_direction(w, X, t, rho):
    r"""1-SAM direction :math:`\frac1n\sum_i\nabla\ell_i(w+\epsilon_i)`, lambdified from the
    derived per-example gradient (``d = 3`` only: the coordinates the proof used)."""
    fn = _numeric()[1]
    X = np.asarray(X, float)
    if X.shape[1] != DIM:
        raise ValueError(f"X must have {DIM} columns (the proof's dimension), got {X.shape[1]}")
    rows = [np.asarray(fn(np.asarray(w, float), xi, float(ti), float(rho)), float) for xi, ti in zip(X, t)]
    return np.mean(rows, axis=0)
