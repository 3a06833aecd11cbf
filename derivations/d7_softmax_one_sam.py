r"""D7. Multi-class linear softmax, 1-SAM: the perturbation, the logit shift, and what survives of Lemma 3.1.

Model :math:`f(W, x) = Wx \in \mathbb R^K`, :math:`p = \mathrm{softmax}(Wx)`, label :math:`c`,
loss :math:`\ell = \log\sum_k e^{f_k} - f_c`, logit scale :math:`r = p - e_c`. Then

.. math::

    \nabla_W\ell = r\,x^\top,\quad \|\nabla_W\ell\| = \|r\|\,\|x\|,\quad
    \epsilon = \rho\,\frac{r\,x^\top}{\|r\|\,\|x\|},\quad
    f(W+\epsilon, x) = Wx + \rho\|x\|\,\frac{r}{\|r\|}.

The labelled logit drops by :math:`\rho\|x\|(1-p_c)/\|r\|`, every other logit rises by
:math:`\rho\|x\|p_k/\|r\|`; every margin :math:`m_k = f_c - f_k` drops by
:math:`\delta_k = \rho\|x\|(1 + q_k)/\sqrt{1 + \|q\|^2}` with :math:`q_k = p_k/(1-p_c)` the
off-target distribution. The shifts depend on the *shape* :math:`q` only, not on the loss level.
For any positive shifts :math:`\delta_k` the new logit scale is

.. math::

    p' - e_c = \underbrace{\frac{1-p'_c}{1-p_c}}_{g(\tilde m;\, C)}\,(1-p_c)\,(q' - e_c),\qquad
    g = \frac{1 + e^{\tilde m}}{1 + e^{\tilde m - C}},\quad \tilde m = \log\frac{p_c}{1-p_c},\quad
    C = \log\sum_{k\ne c} q_k e^{\delta_k} > 0,\quad q'_k = \frac{q_k e^{\delta_k}}{\sum_j q_j e^{\delta_j}}:

Lemma 3.1 survives exactly for the labelled-class weight (at fixed shape :math:`q`, increasing in
the one-vs-rest margin :math:`\tilde m`, from 1 to :math:`e^C`), and the off-target part is tilted
towards the most confusable classes. For :math:`K = 2`, :math:`C = \sqrt2\,\rho\|x\|`.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace

import numpy as np
import sympy as sp

from derivations._core import (
    Step, dot, lambdify, prove_equal, provably_positive, render_claims, symbols_vec, timed_result,
)

NAME = "D7"
SLUG = "softmax_one_sam"
TITLE = "Linear softmax, 1-SAM: logit shift and the surviving up-weighting"
K, DIM = 3, 2


def _label(c: int, W, flatW, x, rho) -> SimpleNamespace:
    F = [dot(Wk, x) for Wk in W]
    S = sp.Add(*[sp.exp(Fk) for Fk in F])
    loss = sp.log(S) - F[c]
    grad = [sp.diff(loss, p) for p in flatW]                       # row-major (k, j)
    p = [sp.exp(Fk) / S for Fk in F]
    r = [pk - (1 if k == c else 0) for k, pk in enumerate(p)]
    rxT = [r[k] * x[j] for k in range(K) for j in range(DIM)]
    rnorm = sp.sqrt(dot(r, r))
    xnorm = sp.sqrt(dot(x, x))
    eps = [rho * g / (rnorm * xnorm) for g in grad]               # uses ||grad|| = ||r|| ||x|| (claim 2)
    at_eps = dict(zip(flatW, [w + e for w, e in zip(flatW, eps)]))
    F_eps = [Fk.xreplace(at_eps) for Fk in F]
    grad_at_eps = [g.xreplace(at_eps) for g in grad]
    off = [k for k in range(K) if k != c]
    one_minus = sp.Add(*[p[k] for k in off])                      # = 1 - p_c (claim 5), visibly > 0
    q = {k: p[k] / one_minus for k in off}
    qn2 = sp.Add(*[q[k] ** 2 for k in off])
    return SimpleNamespace(
        c=c, F=F, S=S, loss=loss, grad=grad, p=p, r=r, rxT=rxT, rnorm=rnorm, xnorm=xnorm, eps=eps,
        F_eps=F_eps, grad_at_eps=grad_at_eps, off=off, one_minus=one_minus, q=q, qn2=qn2,
    )


@functools.cache
def derive() -> SimpleNamespace:
    W = [symbols_vec(f"W_{{{k + 1}}}", DIM) for k in range(K)]
    flatW = [w for row in W for w in row]
    x = symbols_vec("x", DIM)
    rho = sp.Symbol("rho", positive=True)
    labels = {c: _label(c, W, flatW, x, rho) for c in range(K)}
    # the weight structure for arbitrary logit shifts delta_k > 0 (label c = 0 w.l.o.g.)
    u = symbols_vec("u", K)                                       # logits
    delta = {k: sp.Symbol(f"delta_{{{k}}}", positive=True) for k in range(1, K)}
    S = sp.Add(*[sp.exp(uk) for uk in u])
    p = [sp.exp(uk) / S for uk in u]
    u_new = [u[0]] + [u[k] + delta[k] for k in range(1, K)]       # m_k = u_0 - u_k drops by delta_k
    S_new = sp.Add(*[sp.exp(uk) for uk in u_new])
    p_new = [sp.exp(uk) / S_new for uk in u_new]
    q = {k: p[k] / sp.Add(*[p[j] for j in range(1, K)]) for k in range(1, K)}  # p_k / (1 - p_0)
    A = sp.Add(*[q[k] * sp.exp(delta[k]) for k in range(1, K)])
    ratio = (1 - p_new[0]) / (1 - p[0])
    E = p[0] / (1 - p[0])                                         # e^{m~}, m~ = log(p_c / (1 - p_c))
    return SimpleNamespace(
        W=W, flatW=flatW, x=x, rho=rho, labels=labels, u=u, delta=delta, p=p, p_new=p_new, q=q, A=A,
        ratio=ratio, E=E, g_closed=(1 + E) / (1 + E / A),
    )


def steps() -> list[Step]:
    s = derive()
    rho, x = s.rho, s.x
    L = s.labels
    m = sp.Symbol("m", positive=True)  # K = 1 + m classes, m >= 1 off-target classes
    return [
        Step(rf"$\nabla_W\ell = (p - e_c)\,x^\top$ ($K = {K}$, $d = {DIM}$, every label $c$).",
             r"`sympy.diff` of $\log\sum_k e^{f_k} - f_c$; differences simplify to 0",
             lambda: all(prove_equal(l.grad, l.rxT) for l in L.values())),
        Step(r"$\|\nabla_W\ell\|_F^2 = \|p - e_c\|^2\,\|x\|^2$, hence "
             r"$\epsilon = \rho\,(p-e_c)x^\top/(\|p-e_c\|\|x\|)$.",
             r"difference of the squares simplifies to 0 (both norms are non-negative)",
             lambda: all(prove_equal(dot(l.grad, l.grad), dot(l.r, l.r) * dot(x, x)) for l in L.values())),
        Step(r"Logit shift: $f(W+\epsilon, x) - Wx = \rho\|x\|\,(p - e_c)/\|p - e_c\|$: the labelled logit "
             r"drops by $\rho\|x\|(1-p_c)/\|r\|$, each other logit rises by $\rho\|x\|p_k/\|r\|$.",
             r"logits at $W + \epsilon$ by substitution; differences simplify to 0 for every label",
             lambda: all(prove_equal([a - b for a, b in zip(l.F_eps, l.F)],
                                     [rho * l.xnorm * rk / l.rnorm for rk in l.r]) for l in L.values())),
        Step(r"1-SAM's gradient is $(\mathrm{softmax}(f(W+\epsilon)) - e_c)\,x^\top$: the Jacobian $x^\top$ "
             r"is unchanged, only the logit scale moves (cf. D4).",
             r"$\nabla\ell$ differentiated, evaluated at $W + \epsilon$; difference simplifies to 0",
             lambda: all(prove_equal(l.grad_at_eps,
                                     [(sp.exp(l.F_eps[k]) / sp.Add(*[sp.exp(Fe) for Fe in l.F_eps])
                                       - (1 if k == l.c else 0)) * x[j] for k in range(K) for j in range(DIM)])
                         for l in L.values())),
        Step(r"Shape form: $1 - p_c = \sum_{k\ne c}p_k > 0$ and $\|p - e_c\|^2 = (1-p_c)^2(1 + \|q\|^2)$, "
             r"$q_k = p_k/(1-p_c)$; so each margin $m_k = f_c - f_k$ drops by "
             r"$\delta_k = \rho\|x\|(1-p_c+p_k)/\|r\| = \rho\|x\|(1+q_k)/\sqrt{1+\|q\|^2} > 0$.",
             r"identities simplify to 0; $\sum_{k\ne c} e^{f_k}/\sum_k e^{f_k}$ and "
             r"$(1+q_k)/\sqrt{1+\|q\|^2}$ provably positive ($\rho\|x\| > 0$ for $x \ne 0$); "
             r"$\|r\| = (1-p_c)\sqrt{1+\|q\|^2}$ since $1 - p_c > 0$",
             lambda: all(prove_equal(1 - l.p[l.c], l.one_minus) and provably_positive(l.one_minus)
                         and prove_equal(dot(l.r, l.r), l.one_minus**2 * (1 + l.qn2))
                         and all(prove_equal((1 - l.p[l.c] + l.p[k]) / l.one_minus, 1 + l.q[k])
                                 and provably_positive((1 + l.q[k]) / sp.sqrt(1 + l.qn2)) for k in l.off)
                         for l in L.values())),
        Step(r"For any margin drops $\delta_k > 0$: $\dfrac{1-p'_c}{1-p_c} = \dfrac{A}{p_c + (1-p_c)A} = "
             r"\dfrac{1 + e^{\tilde m}}{1 + e^{\tilde m - C}}$ with $A = e^{C} = \sum_{k\ne c} q_k e^{\delta_k}$, "
             r"$e^{\tilde m} = p_c/(1-p_c)$: D2's $g(\tilde m; C)$.",
             r"softmax of the shifted logits; differences simplify to 0",
             lambda: prove_equal(s.ratio, s.A / (s.p[0] + (1 - s.p[0]) * s.A))
             and prove_equal(s.ratio, s.g_closed)),
        Step(r"$C > 0$: $A - 1 = \sum_{k\ne c} q_k(e^{\delta_k} - 1)$ with every term positive, so D2 applies: "
             r"the labelled-class weight is increasing in $\tilde m$ (at fixed $q$), from 1 to $A$.",
             r"identity ($\sum_k q_k = 1$) simplifies to 0; each $q_k(e^{\delta_k} - 1) > 0$ (monotone lemma)",
             lambda: prove_equal(s.A - 1, sp.Add(*[s.q[k] * (sp.exp(s.delta[k]) - 1) for k in s.delta]))
             and all(provably_positive(s.q[k] * (sp.exp(s.delta[k]) - 1)) for k in s.delta)),
        Step(r"Off-target tilt: $p'_k/(1-p'_c) = q_k e^{\delta_k}/A$ for $k \ne c$, so "
             r"$p' - e_c = g(\tilde m; C)\,(1-p_c)\,(q' - e_c)$.",
             r"differences simplify to 0",
             lambda: all(prove_equal(s.p_new[k] / (1 - s.p_new[0]), s.q[k] * sp.exp(s.delta[k]) / s.A)
                         for k in s.delta)),
        Step(r"Uniform off-target shape ($q_k = \frac{1}{K-1}$): every $\delta_k = \rho\|x\|\sqrt{K/(K-1)} = C$; "
             r"$K = 2$: $C = \sqrt2\,\rho\|x\|$ (binary D1 with the two-row parametrisation).",
             r"with $K = 1 + m$: $(1 + \frac1m)/\sqrt{1 + m\cdot\frac{1}{m^2}} = \sqrt{(m+1)/m}$ simplifies; $m = 1$ gives $\sqrt2$",
             lambda: prove_equal((1 + 1 / m) / sp.sqrt(1 + m / m**2), sp.sqrt((m + 1) / m))
             and prove_equal(sp.sqrt((m + 1) / m).subs(m, 1), sp.sqrt(2))),
        Step(r"Bounds on $C$: $\delta_k \le \sqrt2\,\rho\|x\|$ since $2(1+q_k^2) - (1+q_k)^2 = (1-q_k)^2$ "
             r"and $\|q\|^2 \ge q_k^2$; and $\|q\|^2 \ge \frac{1}{K-1}$ since "
             r"$(K-1)\sum_k q_k^2 - (\sum_k q_k)^2 = \sum_{j<k}(q_j - q_k)^2$. With Jensen "
             r"($\log\sum_k q_ke^{\delta_k} \ge \sum_k q_k\delta_k$): "
             r"$\rho\|x\|\sqrt{K/(K-1)} \le C \le \sqrt2\,\rho\|x\|$.",
             r"polynomial identities expand to 0 (the second for $K - 1 = 2, 3, 4$); Jensen's inequality "
             r"for the convex $\exp$ is used, not re-proved",
             lambda: prove_equal(2 * (1 + m**2) - (1 + m) ** 2, (1 - m) ** 2)
             and all(_sum_of_squares_identity(k) for k in (2, 3, 4))),
    ]


def _sum_of_squares_identity(k: int) -> bool:
    q = symbols_vec("q", k)
    lhs = k * dot(q, q) - sp.Add(*q) ** 2
    rhs = sp.Add(*[(q[i] - q[j]) ** 2 for i in range(k) for j in range(i + 1, k)])
    return prove_equal(lhs, rhs)


def check():
    """Run every proof of D7; returns a :class:`derivations._core.Result`."""
    return timed_result(NAME, TITLE, steps)


def render() -> str:
    return "\n".join([
        f"# {NAME}. {TITLE}",
        "",
        r"**Setting.** $f(W,x) = Wx \in \mathbb R^K$, $p = \mathrm{softmax}(Wx)$, label $c$, loss "
        r"$\ell = \log\sum_k e^{f_k} - f_c$, logit scale $r = p - e_c$, 1-SAM's per-example "
        r"$\epsilon = \rho\nabla_W\ell/\|\nabla_W\ell\|$.",
        "",
        "## Derivation",
        "",
        r"1. $\nabla_W\ell = r x^\top$ and $\|rx^\top\|_F = \|r\|\|x\|$, so "
        r"$\epsilon = \rho\, r x^\top/(\|r\|\|x\|)$ and the logits move by $\epsilon x = \rho\|x\|\,r/\|r\|$:",
        "",
        "$$",
        r"f_c \to f_c - \rho\|x\|\frac{1-p_c}{\|r\|},\qquad f_k \to f_k + \rho\|x\|\frac{p_k}{\|r\|}\ (k\ne c).",
        "$$",
        "",
        r"   The Jacobian $x^\top$ is unchanged (D4): 1-SAM's gradient is $(p' - e_c)x^\top$ with "
        r"$p' = \mathrm{softmax}(Wx + \rho\|x\| r/\|r\|)$. Unlike the binary case this is not a "
        r"scalar multiple of $rx^\top$ in general.",
        r"2. **Scale-free margin drops.** With the off-target shape $q_k = p_k/(1-p_c)$ "
        r"($\sum_{k\ne c} q_k = 1$), $\|r\| = (1-p_c)\sqrt{1+\|q\|^2}$, and every margin $m_k = f_c - f_k$ drops by",
        "",
        "$$",
        r"\delta_k = \rho\|x\|\,\frac{1 + q_k}{\sqrt{1 + \|q\|^2}} > 0,",
        "$$",
        "",
        r"   which depends on the shape $q$ but **not** on how well the example is fit ($p_c$): the "
        r"multi-class analogue of the binary shift $\rho\|x\|$ being loss-independent.",
        r"3. **What survives.** For fixed positive drops $\delta_k$, the labelled-class component "
        r"$-(1-p_c)$ of the logit scale is multiplied by",
        "",
        "$$",
        r"\frac{1-p'_c}{1-p_c} = \frac{1 + e^{\tilde m}}{1 + e^{\tilde m - C}} = g(\tilde m; C),\qquad "
        r"\tilde m = \log\frac{p_c}{1-p_c},\quad C = \log\sum_{k\ne c} q_k e^{\delta_k} > 0,",
        "$$",
        "",
        r"   exactly Lemma 3.1 (D2) in the one-vs-rest margin $\tilde m$: at a fixed shape $q$, "
        r"confident examples are up-weighted more, from 1 (high loss) to $e^{C}$ (low loss). The "
        r"off-target part becomes $(1-p'_c)\,q'$ with $q'_k \propto q_k e^{\delta_k}$: tilted towards "
        r"the most confusable classes (largest $q_k$ get the largest $\delta_k$). So",
        "",
        "$$",
        r"p' - e_c = g(\tilde m; C)\,(1 - p_c)\,(q' - e_c)\quad\text{vs.}\quad p - e_c = (1 - p_c)(q - e_c).",
        "$$",
        "",
        r"4. **Size of $C$.** Uniform shape $q_k = 1/(K-1)$: all $\delta_k = C = \rho\|x\|\sqrt{K/(K-1)}$. "
        r"$K = 2$ gives $\sqrt2\,\rho\|x\|$: D1's binary shift, enlarged by $\sqrt2$ because a "
        r"perturbation of norm $\rho$ of the two rows $(w_0, w_1)$ moves their difference "
        r"$w_1 - w_0$ (the binary weight) by up to $\sqrt2\rho$. In general, by Jensen "
        r"$C \ge \sum_k q_k\delta_k = \rho\|x\|\sqrt{1+\|q\|^2} \ge \rho\|x\|\sqrt{K/(K-1)}$ "
        r"(as $\|q\|^2 \ge 1/(K-1)$), and $C \le \max_k\delta_k \le \sqrt2\,\rho\|x\|$: the up-weighting "
        r"strength lies between the uniform-shape value and the two-class value, whatever the "
        r"loss level. When the shape $q$ changes with training (an example becomes confused with "
        r"one specific class), $C$ changes too; the monotonicity in $\tilde m$ holds at fixed $q$.",
        "",
        render_claims(steps()),
        "",
        rf"**Dimension.** Claims 1-5 in coordinates, $K = {K}$, $d = {DIM}$, every label; claims 6-8 "
        rf"for $K = {K}$ classes with label 0 (the others by relabelling); claims 9-10 are scalar "
        r"identities, the uniform-shape one for general $K = 1 + m$. Each identity is a "
        r"statement about softmax of shifted logits or about $rx^\top$, whose form does not "
        r"depend on $K$ or $d$. The numeric cross-check compares with `linsam.softmax` at random points.",
        "",
    ])


@functools.cache
def _numeric():
    s = derive()
    return {c: lambdify((s.flatW, s.x, s.rho), l.grad_at_eps) for c, l in s.labels.items()}


def one_sam_direction(W, X, t, rho):
    r"""1-SAM direction :math:`\frac1n\sum_i(p'_i - e_{t_i})x_i^\top`, lambdified from the derived
    per-example gradient at :math:`W + \epsilon_i`. Shapes as in the proof: W (3, 2)."""
    W = np.asarray(W, float)
    if W.shape != (K, DIM):
        raise ValueError(f"W must have shape ({K}, {DIM}) (the proof's coordinates), got {W.shape}")
    fns = _numeric()
    rows = [np.asarray(fns[int(ti)](W.ravel(), xi, float(rho)), float)
            for xi, ti in zip(np.asarray(X, float), t)]
    return np.mean(rows, axis=0).reshape(K, DIM)


def margin_drops(p, c, rho_xnorm):
    r""":math:`\delta_k = \rho\|x\|(1+q_k)/\sqrt{1+\|q\|^2}` for every class (0 at k = c); any K."""
    p = np.asarray(p, float)
    q = p / (1.0 - p[c])
    q[c] = 0.0
    return rho_xnorm * np.where(np.arange(p.size) == c, 0.0, 1.0 + q) / np.sqrt(1.0 + np.sum(q**2))


def labelled_weight(p, c, delta):
    r"""Predicted :math:`(1-p'_c)/(1-p_c) = g(\tilde m; C)`, :math:`C = \log\sum_{k\ne c}q_k e^{\delta_k}`; any K."""
    p = np.asarray(p, float)
    off = np.arange(p.size) != c
    q = p[off] / (1.0 - p[c])
    C = np.log(np.sum(q * np.exp(np.asarray(delta, float)[off])))
    m = np.log(p[c]) - np.log1p(-p[c])
    return (1.0 + np.exp(m)) / (1.0 + np.exp(m - C)), C
