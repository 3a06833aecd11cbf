r"""D4. Linear models: L-SAM is exactly 1-SAM and J-SAM is exactly GD.

Write the per-example loss through the logits, :math:`\ell(w) = \lambda(f(w, x))`, so
:math:`\nabla\ell(w) = J(w)^\top \lambda'(f(w))` with the Jacobian :math:`J = \nabla_w f`. Then

.. math::

    \text{1-SAM} = J(w+\epsilon)^\top\lambda'(f(w+\epsilon)),\quad
    \text{L-SAM} = J(w)^\top\lambda'(f(w+\epsilon)),\quad
    \text{J-SAM} = J(w+\epsilon)^\top\lambda'(f(w)),\quad
    \text{GD} = J(w)^\top\lambda'(f(w)).

For a linear model the Jacobian does not depend on the weights (:math:`J = x^\top` for
:math:`f = \langle w, x\rangle`; :math:`\partial f_k/\partial W_{k'j} = \delta_{kk'}x_j` for
:math:`f = Wx`), so :math:`J(w+\epsilon) = J(w)` for *every* perturbation: L-SAM = 1-SAM and
J-SAM = GD, whatever :math:`\epsilon` is (1-SAM's, n-SAM's, or any other). The Jacobian-norm
penalty :math:`\rho\,\mathrm{sg}(\cdot)\|J\|` has zero gradient, so J-reg = GD as well.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations import d1_logreg_one_sam as _d1
from derivations._core import (
    Step, dot, label_cases, lambdify, prove_equal, render_claims, sigmoid, symbols_vec, timed_result,
)

NAME = "D4"
SLUG = "linear_variants"
TITLE = "Linear models: L-SAM equals 1-SAM, J-SAM equals GD"
K, DIM_SOFTMAX = 3, 2


def _variants(params, eps, logits, lam, U):
    """(one_sam, lsam, jsam, gd) as flat lists.

    ``logits``: list of logit expressions in ``params``; ``lam``: the loss as an expression of
    the logit symbols ``U``. Everything else is differentiation and substitution.
    """
    at = dict(zip(params, [p + e for p, e in zip(params, eps)]))
    on_logits = dict(zip(U, logits))
    jac = [[sp.diff(Fk, p) for p in params] for Fk in logits]            # J(w)
    jac_eps = [[j.xreplace(at) for j in row] for row in jac]             # J(w + eps)
    scale = [sp.diff(lam, Uk).xreplace(on_logits) for Uk in U]            # lambda'(f(w))
    scale_eps = [sc.xreplace(at) for sc in scale]                         # lambda'(f(w + eps))

    def combine(sc, jc):
        return [sp.Add(*[sc[k] * jc[k][j] for k in range(len(U))]) for j in range(len(params))]

    grad = [sp.diff(lam.xreplace(on_logits), p) for p in params]
    return SimpleNamespace(
        one_sam=[g.xreplace(at) for g in grad], one_sam_chain=combine(scale_eps, jac_eps),
        lsam=combine(scale_eps, jac), jsam=combine(scale, jac_eps), gd=grad, gd_chain=combine(scale, jac),
    )


@functools.cache
def derive() -> SimpleNamespace:
    # binary linear model (symbols shared with D1, so D1's 1-SAM eps can be substituted)
    s1 = _d1.derive()
    w, x, t, rho = s1.w, s1.x, s1.t, s1.rho
    e = symbols_vec("e", len(w))  # an arbitrary perturbation
    u = sp.Symbol("u", real=True)
    binary = _variants(w, e, [dot(w, x)], -sp.log(sigmoid(t * u)), [u])
    binary_one = {ej: epj for ej, epj in zip(e, s1.eps)}  # 1-SAM's eps from D1
    jnorm_bin = sp.sqrt(sp.Add(*[sp.diff(dot(w, x), wj) ** 2 for wj in w]))
    # multi-class linear softmax, K classes, every label index c
    W = [symbols_vec(f"W_{{{k + 1}}}", DIM_SOFTMAX) for k in range(K)]
    flatW = [wkj for row in W for wkj in row]
    xs = symbols_vec("x", DIM_SOFTMAX)
    E = symbols_vec("E", K * DIM_SOFTMAX)
    U = symbols_vec("u", K)
    logits = [dot(Wk, xs) for Wk in W]
    multi = {
        c: _variants(flatW, E, logits, sp.log(sp.Add(*[sp.exp(Uk) for Uk in U])) - U[c], U)
        for c in range(K)
    }
    jac_frob = sp.sqrt(sp.Add(*[sp.diff(Fk, p) ** 2 for Fk in logits for p in flatW]))
    return SimpleNamespace(
        w=w, x=x, t=t, rho=rho, e=e, binary=binary, binary_one=binary_one, cases=label_cases(t),
        jnorm_bin=jnorm_bin, W=W, flatW=flatW, xs=xs, E=E, multi=multi, jac_frob=jac_frob,
    )


def steps() -> list[Step]:
    s = derive()
    b = s.binary
    return [
        Step(r"Chain rule check: $\nabla\ell(w+\epsilon) = J(w+\epsilon)^\top\lambda'(f(w+\epsilon))$ "
             r"and $\nabla\ell(w) = J(w)^\top\lambda'(f(w))$ (binary and softmax).",
             r"`sympy.diff` of the loss vs. the product form; differences simplify to 0",
             lambda: prove_equal(b.one_sam, b.one_sam_chain) and prove_equal(b.gd, b.gd_chain)
             and all(prove_equal(m.one_sam, m.one_sam_chain) for m in s.multi.values())),
        Step(r"Binary linear model, any perturbation $\epsilon$: L-SAM $=$ 1-SAM.",
             rf"symbolic $\epsilon \in \mathbb R^{len(s.w)}$, $t$ symbolic; difference simplifies to 0",
             lambda: prove_equal(b.lsam, b.one_sam)),
        Step(r"Binary linear model, any perturbation $\epsilon$: J-SAM $=$ GD.",
             r"difference simplifies to 0", lambda: prove_equal(b.jsam, b.gd)),
        Step(r"Binary, with 1-SAM's own $\epsilon = \rho\nabla\ell/\|\nabla\ell\|$ (D1) substituted: "
             r"L-SAM $=$ 1-SAM and J-SAM $=$ GD.",
             r"substitution of D1's derived $\epsilon$; differences simplify to 0 for $t = \pm 1$",
             lambda: prove_equal([v.xreplace(s.binary_one) for v in b.lsam],
                                 [v.xreplace(s.binary_one) for v in b.one_sam], s.cases)
             and prove_equal([v.xreplace(s.binary_one) for v in b.jsam], b.gd, s.cases)),
        Step(rf"Linear softmax ($K = {K}$, $d = {DIM_SOFTMAX}$), any perturbation $E$, every label "
             r"$c$: L-SAM $=$ 1-SAM and J-SAM $=$ GD.",
             r"differences simplify to 0 for each label $c = 0, 1, 2$",
             lambda: all(prove_equal(m.lsam, m.one_sam) and prove_equal(m.jsam, m.gd)
                         for m in s.multi.values())),
        Step(r"The Jacobian norm does not depend on the weights ($\|\nabla_w f\| = \|x\|$; "
             r"$\|\partial(Wx)/\partial W\|_F = \sqrt{K}\|x\|$), so the J-reg penalty has zero gradient: J-reg $=$ GD.",
             r"`sympy.diff` of the Jacobian norm w.r.t. every weight is 0",
             lambda: prove_equal([sp.diff(s.jnorm_bin, wj) for wj in s.w], [0] * len(s.w))
             and prove_equal([sp.diff(s.jac_frob, p) for p in s.flatW], [0] * len(s.flatW))),
    ]


def check():
    """Run every proof of D4; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** Write the loss through the logits, $\ell(w) = \lambda(f(w,x))$ "
        r"($\lambda(u) = -\log\sigma(tu)$ binary, $\lambda(u) = \log\sum_k e^{u_k} - u_t$ softmax), so "
        r"$\nabla\ell = J^\top\lambda'$ with the Jacobian $J = \partial f/\partial w$ and the logit scale $\lambda'$.",
        "",
        "## Derivation",
        "",
        "| rule | logit scale at | Jacobian at |",
        "|---|---|---|",
        r"| GD | $w$ | $w$ |",
        r"| 1-SAM | $w+\epsilon$ | $w+\epsilon$ |",
        r"| L-SAM | $w+\epsilon$ | $w$ |",
        r"| J-SAM | $w$ | $w+\epsilon$ |",
        "",
        r"For $f = \langle w, x\rangle$ the Jacobian is $x^\top$; for $f = Wx$ it is "
        r"$\partial f_k/\partial W_{k'j} = \delta_{kk'}x_j$. Neither depends on the weights, so "
        r"$J(w+\epsilon) = J(w)$ for every $\epsilon$ and the table collapses: **L-SAM = 1-SAM** "
        r"(only the logit scale moves) and **J-SAM = GD** (the Jacobian part of the perturbation "
        r"does nothing). The same holds for n-SAM's shared perturbation. Consequently, in linear "
        r"models all of SAM's effect is the logit-scale reweighting of D1-D3 (binary) and D7 "
        r"(softmax); the Jacobian effect (D5, D6) needs depth.",
        "",
        render_claims(steps()),
        "",
        rf"**Dimension.** Binary: $d = {len(derive().w)}$; softmax: $K = {K}$, $d = {DIM_SOFTMAX}$, "
        r"every label. The only fact used is that $f$ is linear in the weights (its Jacobian is "
        r"constant), true in every dimension.",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    b = s.binary
    args = (s.w, s.x, s.t, s.e)
    return {name: lambdify(args, getattr(b, name)) for name in ("one_sam", "lsam", "jsam", "gd")}


def binary_rule(name: str, w, X, t, eps):
    r"""Mean over examples of the derived per-example rule ``name`` (``one_sam``, ``lsam``,
    ``jsam``, ``gd``) with per-example perturbations ``eps`` (n, 3); ``d = 3``."""
    fn = _numeric()[name]
    rows = [np.asarray(fn(np.asarray(w, float), xi, float(ti), ei), float)
            for xi, ti, ei in zip(np.asarray(X, float), t, np.asarray(eps, float))]
    return np.mean(rows, axis=0)
