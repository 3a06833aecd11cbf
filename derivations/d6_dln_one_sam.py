r"""D6. Deep linear network, L-SAM and full 1-SAM: the exact perturbed logit and 1-SAM's decomposition.

With D5's notation (:math:`z = Wx`, :math:`J = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2}`,
:math:`\epsilon = -\rho t\,\nabla f/J`), the logit at the perturbed weights is, exactly,

.. math::

    f(w + \epsilon) = f - \rho\, t\, J + \rho^2\,\frac{\|x\|^2 f}{J^2},

the Jacobian moves by :math:`\nabla f(w+\epsilon) - \nabla f(w) = -\rho\, t\,\nabla J` (exactly:
:math:`f` is bilinear), and with :math:`s(\cdot) = \sigma(-t\,\cdot)`:

.. math::

    \text{1-SAM} = \text{L-SAM} + \text{J-SAM} - \text{SGD} + R,\qquad
    R = \rho\,\bigl[\sigma(-t f(w+\epsilon)) - \sigma(-t f)\bigr]\,\nabla J
      = \rho^2\,\sigma(tf)\sigma(-tf)\,J\,\nabla J + O(\rho^3),\qquad \|\nabla J\| = \|x\|.

L-SAM is a per-example reweighting as in D1 with :math:`C = \rho J - \rho^2\|x\|^2 m/J^2`
(:math:`m = tf` the margin): the logit-scale effect with :math:`\rho J` in the role of :math:`\rho\|x\|`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations import d5_dln_jsam as _d5
from derivations._core import (
    Step, gram_inner, lambdify, prove_equal, render_claims, sigmoid, timed_result,
)

NAME = "D6"
SLUG = "dln_one_sam"
TITLE = "Deep linear network, 1-SAM: exact perturbed logit and 1-SAM = L-SAM + J-SAM - SGD + R"


@functools.cache
def derive() -> SimpleNamespace:
    d = _d5.derive()
    t, rho, f, J = d.t, d.rho, d.f, d.J_closed
    at_eps = dict(zip(d.params, [p + e for p, e in zip(d.params, d.eps)]))
    f_eps = f.xreplace(at_eps)
    grad_f_eps = [g.xreplace(at_eps) for g in d.grad_f]
    one_sam = [sp.diff(d.loss, p).xreplace(at_eps) for p in d.params]
    lsam = [-t * sigmoid(-t * f_eps) * g for g in d.grad_f]  # logit scale at w + eps, Jacobian at w
    jsam, gd = d.jsam, d.grad_l
    R = [a - b - c + e for a, b, c, e in zip(one_sam, lsam, jsam, gd)]
    f_eps_closed = f - rho * t * J + rho**2 * d.xn2 * f / J**2
    R_closed = [rho * (sigmoid(-t * f_eps_closed) - sigmoid(-t * f)) * g for g in d.grad_J]
    R_struct = [rho * (sigmoid(-t * f_eps) - sigmoid(-t * f)) * g for g in d.grad_J]
    margin = t * f
    shift = rho * J - rho**2 * d.xn2 * margin / J**2  # C in the L-SAM weight
    lsam_weight = sigmoid(-margin + shift) / sigmoid(-margin)
    # Gram-level (dimension-free) version of f(w + eps): vectors in R^h spanned by v and z = Wx
    a, b, c = (sp.Symbol(n, positive=True) for n in ("a", "b", "c"))  # ||v||^2, ||x||^2, ||Wx||^2
    fg = sp.Symbol("f", real=True)                                     # <v, Wx>
    Jg = sp.sqrt(c + a * b)
    alpha = -rho * t / Jg
    gram = {("v", "v"): a, ("z", "z"): c, ("v", "z"): fg}
    v_new = {"v": 1, "z": alpha}            # v' = v + alpha z
    z_new = {"z": 1, "v": alpha * b}        # W'x = (W + alpha v x^T) x = z + alpha ||x||^2 v
    f_eps_gram = gram_inner(v_new, z_new, gram)
    # the scalar factor of R as a function of rho
    h = sigmoid(-t * f_eps_closed) - sigmoid(-t * f)
    return SimpleNamespace(
        d5=d, f_eps=f_eps, grad_f_eps=grad_f_eps, one_sam=one_sam, lsam=lsam, jsam=jsam, gd=gd, R=R,
        f_eps_closed=f_eps_closed, R_closed=R_closed, R_struct=R_struct, lsam_weight=lsam_weight,
        shift=shift, margin=margin, f_eps_gram=f_eps_gram,
        f_eps_gram_closed=fg - rho * t * Jg + rho**2 * b * fg / Jg**2, gram_syms=(a, b, c, fg), h=h,
        cases=d.cases,
    )


def steps() -> list[Step]:
    s = derive()
    d = s.d5
    t, rho, f, J = d.t, d.rho, d.f, d.J_closed
    return [
        Step(r"$f(w+\epsilon) = f - \rho\, t\, J + \rho^2\|x\|^2 f/J^2$ exactly (coordinates).",
             r"$\langle v', W'x\rangle$ with $\epsilon$ from D5's derivation; difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(s.f_eps, s.f_eps_closed, s.cases)),
        Step(r"The same identity in every dimension: with $a = \|v\|^2$, $b = \|x\|^2$, $c = \|Wx\|^2$, "
             r"$f = \langle v, Wx\rangle$, $v' = v - \frac{\rho t}{J}Wx$, $W'x = Wx - \frac{\rho t}{J}\,b\,v$, "
             r"bilinear expansion of $\langle v', W'x\rangle$ gives $f - \rho t J + \rho^2 b f/J^2$, $J^2 = c + ab$.",
             r"Gram-matrix computation (only bilinearity); difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal(s.f_eps_gram, s.f_eps_gram_closed, s.cases)),
        Step(r"The Jacobian moves exactly linearly in $\rho$: $\nabla f(w+\epsilon) - \nabla f(w) = -\rho\, t\,\nabla J$.",
             r"difference simplifies to 0 for $t = \pm 1$",
             lambda: prove_equal([a - b for a, b in zip(s.grad_f_eps, d.grad_f)],
                                 [-rho * t * g for g in d.grad_J], s.cases)),
        Step(r"$R := \text{1-SAM} - \text{L-SAM} - \text{J-SAM} + \text{SGD} = "
             r"\rho\,[\sigma(-tf(w+\epsilon)) - \sigma(-tf)]\,\nabla J$ exactly.",
             r"all four rules built from the definitions (logit scale / Jacobian at $w$ or $w+\epsilon$); "
             r"difference to $\rho[\sigma(-tf(w+\epsilon)) - \sigma(-tf)]\nabla J$ simplifies to 0 for "
             r"$t = \pm 1$, with $f(w+\epsilon)$ as derived (its closed form is claim 1)",
             lambda: prove_equal(s.R, s.R_struct, s.cases)),
        Step(r"$\|\nabla J\|^2 = \|x\|^2$.",
             r"$\nabla J$ by `sympy.diff`; difference simplifies to 0",
             lambda: prove_equal(sum(g**2 for g in d.grad_J), d.xn2)),
        Step(r"$R = O(\rho^2)$: the factor $h(\rho) = \sigma(-tf(w+\epsilon)) - \sigma(-tf)$ has "
             r"$h(0) = 0$, $h'(0) = \sigma(tf)\sigma(-tf)\,J$; so "
             r"$R = \rho^2\sigma(tf)\sigma(-tf)J\,\nabla J + O(\rho^3)$, $\|R\| \approx \rho^2\sigma(tf)\sigma(-tf)J\|x\|$.",
             r"`sympy.diff` in $\rho$ at $\rho = 0$; differences simplify to 0 for $t = \pm 1$",
             lambda: prove_equal(s.h.subs(rho, 0), 0)
             and prove_equal(sp.diff(s.h, rho).subs(rho, 0), sigmoid(t * f) * sigmoid(-t * f) * J, s.cases)),
        Step(r"L-SAM is a per-example reweighting: $\text{L-SAM} = \dfrac{\sigma(-m + \rho J - \rho^2\|x\|^2 m/J^2)}"
             r"{\sigma(-m)}\nabla\ell$ with the margin $m = tf$ (D1's weight with $C \approx \rho J$).",
             r"L-SAM $= \frac{\sigma(-tf(w+\epsilon))}{\sigma(-tf)}\nabla\ell$ (difference simplifies to 0), "
             r"and $-t\,(f - \rho tJ + \rho^2\|x\|^2f/J^2) = -m + \rho J - \rho^2\|x\|^2m/J^2$ for $t = \pm 1$ (claim 1)",
             lambda: prove_equal(s.lsam, [sigmoid(-t * s.f_eps) / sigmoid(-t * f) * g for g in s.gd], s.cases)
             and prove_equal(-t * s.f_eps_closed, -s.margin + s.shift, s.cases)),
    ]


def check():
    """Run every proof of D6; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** As D5: $f = \langle v, Wx\rangle$, $z = Wx$, $J = \sqrt{\|z\|^2 + \|x\|^2\|v\|^2}$, "
        r"1-SAM's per-example $\epsilon = -\rho t\,\nabla f/J$, i.e. $v' = v - \frac{\rho t}{J}z$, "
        r"$W' = W - \frac{\rho t}{J}vx^\top$.",
        "",
        "## Derivation",
        "",
        r"1. **Perturbed logit.** $W'x = z - \frac{\rho t}{J}\|x\|^2 v$, so by bilinearity",
        "",
        "$$",
        r"f(w+\epsilon) = \langle v - \tfrac{\rho t}{J}z,\ z - \tfrac{\rho t}{J}\|x\|^2 v\rangle"
        r" = f - \frac{\rho t}{J}\bigl(\|z\|^2 + \|x\|^2\|v\|^2\bigr) + \frac{\rho^2\|x\|^2}{J^2}\langle z, v\rangle"
        r" = f - \rho\, t\, J + \rho^2\frac{\|x\|^2 f}{J^2}.",
        "$$",
        "",
        r"   The margin drops by $\rho J$ to first order: the DLN analogue of D1's $\rho\|x\|$.",
        r"2. **Jacobian.** $\nabla_v f(w') - \nabla_v f = -\frac{\rho t}{J}\|x\|^2 v$ and "
        r"$\nabla_W f(w') - \nabla_W f = -\frac{\rho t}{J}zx^\top$: together $-\rho t\,\nabla J$ "
        r"(no higher-order terms: $\nabla f$ is linear in the weights).",
        r"3. **Decomposition.** Write $a = \sigma(-tf(w+\epsilon))$, $b = \sigma(-tf)$, "
        r"$G = \nabla f(w)$, $G' = \nabla f(w+\epsilon)$. Then 1-SAM $= -taG'$, L-SAM $= -taG$, "
        r"J-SAM $= -tbG'$, SGD $= -tbG$, and",
        "",
        "$$",
        r"R = \text{1-SAM} - \text{L-SAM} - \text{J-SAM} + \text{SGD} = -t(a-b)(G'-G)"
        r" = \rho\,\bigl[\sigma(-tf(w+\epsilon)) - \sigma(-tf)\bigr]\,\nabla J .",
        "$$",
        "",
        r"4. **Order.** Both factors of $R$ are $O(\rho)$: $\frac{d}{d\rho}\sigma(-tf(w+\epsilon))\big|_0 "
        r"= \sigma(tf)\sigma(-tf)J$, so $R = \rho^2\sigma(tf)\sigma(-tf)\,J\,\nabla J + O(\rho^3)$ with "
        r"$\|\nabla J\| = \|x\|$. To first order in $\rho$, 1-SAM is exactly L-SAM + J-SAM - SGD: the "
        r"logit-scale effect and the Jacobian effect add. A test fits the slope of "
        r"$\log\|R\|$ against $\log\rho$ with linsam's closed forms and finds 2.",
        r"5. **L-SAM.** L-SAM keeps $\nabla f(w)$ and moves only the logit scale, so it is D1's reweighting "
        r"with margin shift $C = \rho J - \rho^2\|x\|^2 m/J^2$ ($m = tf$ the margin): every example is up-weighted "
        r"(for small $\rho$), confident ones more (D2).",
        "",
        render_claims(steps()),
        "",
        rf"**Dimension.** Coordinates: $h = {_d5.H}$, $d = {_d5.DIM}$ (D5's symbols). Claim 2 proves "
        r"the perturbed logit for every $h, d$ from the Gram entries $\|v\|^2, \|x\|^2, \|Wx\|^2, "
        r"\langle v, Wx\rangle$ and bilinearity alone; the other claims use the same dimension-free "
        r"facts as D5 ($\partial_v f = Wx$, $\partial_W f = vx^\top$, $(vx^\top)x = \|x\|^2 v$).",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    d = s.d5
    args = (d.v, d.flatW, d.x, d.t, d.rho)
    return {
        "one_sam": lambdify(args, s.one_sam),
        "lsam": lambdify(args, s.lsam),
        "R": lambdify(args, s.R_closed),
        "f_eps": lambdify(args, s.f_eps),
        "f_eps_closed": lambdify(args, s.f_eps_closed),
    }


def per_example(name: str, v, W, X, t, rho):
    """Derived per-example ``one_sam``, ``lsam``, ``R`` (shape (n, h + h*d)) or ``f_eps``,
    ``f_eps_closed`` (shape (n,)) at the proof's shape (h=2, d=3)."""
    fn = _numeric()[name]
    v, W = np.asarray(v, float), np.asarray(W, float)
    if W.shape != (_d5.H, _d5.DIM):
        raise ValueError(f"W must have shape ({_d5.H}, {_d5.DIM}) (the proof's coordinates), got {W.shape}")
    return np.array([np.asarray(fn(v, W.ravel(), xi, float(ti), float(rho)), float)
                     for xi, ti in zip(np.asarray(X, float), t)])
